"""Hook implementations of the ``vq`` plugin: the VQ-VAE's networks, its PixelCNN prior and recipes.

Factories are ``"module:attribute"`` strings, so listing models does not import torch.
"""

import zoo

_C = "zoo_vq.components"


@zoo.hookimpl
def register_encoders(register):
    register(
        "vq-conv",
        f"{_C}:VQEncoder",
        description="VQ-VAE encoder (van den Oord et al. 2017): stride-2 convs and residual blocks to a grid of "
        "D-vectors, each replaced by the nearest of K codebook vectors (straight-through); adds the codebook and "
        "commitment losses itself; deterministic code (latent_size = D x grid)",
    )


@zoo.hookimpl
def register_decoders(register):
    register(
        "vq-conv",
        f"{_C}:VQDecoder",
        description="VQ-VAE decoder mirroring vq-conv: residual blocks and stride-2 transposed convs from the "
        "[D, H', W'] code grid to the likelihood's parameters",
    )


@zoo.hookimpl
def register_samplers(register):
    register(
        "pixelcnn",
        "zoo_vq.pixelcnn:PixelCNNPrior",
        description="Gated PixelCNN (van den Oord et al. 2016) over a VQ encoder's grid of code indices, fitted "
        "after training; a pmf over codes, so no density (has_density False)",
    )


_PAPER = "van den Oord, Vinyals & Kavukcuoglu 2017, Neural Discrete Representation Learning"
_CITATION = """@inproceedings{vandenoord2017neural,
  title = {Neural Discrete Representation Learning},
  author = {van den Oord, Aaron and Vinyals, Oriol and Kavukcuoglu, Koray},
  booktitle = {Advances in Neural Information Processing Systems 30 (NeurIPS)},
  pages = {6306--6315},
  year = {2017}
}"""
# The paper: Adam at 2e-4, batches of 128, beta = 0.25, K = 512 codebook vectors, 4x4 stride-2 convs and
# two residual blocks; a PixelCNN prior over the code grid, fitted after the autoencoder.
_TRAINING = zoo.Training(epochs=100, batch_size=128, lr=2e-4, optimizer="adam")


@zoo.hookimpl
def register_recipes(register):
    register(
        zoo.Recipe(
            id="vq-vae-mnist",
            description="VQ-VAE on MNIST: pythae's benchmark network (convs 64-128-128 to a 4x4 grid, two residual "
            "blocks), K=512 codes of D=16 (EMA updates), beta 0.25, Bernoulli likelihood, trained as an autoencoder; then "
            "`zoo fit-prior RUN --prior pixelcnn`",
            encoder="vq-conv",
            decoder="vq-conv",
            # EMA codebook updates (the paper's appendix A.1): on MNIST, after 150 steps, 146 nats of
            # reconstruction error against 178 with the codebook trained by its loss.
            encoder_options={"codebook_size": 512, "channels": 128, "downsamplings": 3, "beta": 0.25, "ema": True},
            decoder_options={"channels": 128, "downsamplings": 3},
            prior="standard-normal",  # unused by the ae objective; replaced by the fitted pixelcnn
            likelihood="bernoulli",
            dataset="mnist",
            latent_size=16 * 4 * 4,
            objective="ae",
            training=_TRAINING,
            reference={
                "paper": _PAPER,
                "citation": _CITATION,
                "protocol": "reconstruction error on the test set and samples from the PixelCNN prior over the 4x4 "
                "code grid; the paper reports no MNIST figure. Codebook (K=512, D=16) and network as pythae's "
                "VQVAE MNIST benchmark (its Encoder_ResNet_VQVAE_MNIST), optimiser as the paper, EMA codebook updates "
                "as the paper's appendix A.1",
                "pythae": "pythae reports none that we could confirm for VQ-VAE",
            },
        )
    )
    register(
        zoo.Recipe(
            id="vq-vae-cifar10",
            description="VQ-VAE on CIFAR-10 as in the paper: two 4x4 stride-2 convs (128 then 256 channels, 32 -> 8), two "
            "residual blocks, K=512 codes of D=64 on an 8x8 grid, beta 0.25, Gaussian likelihood (squared error)",
            encoder="vq-conv",
            decoder="vq-conv",
            encoder_options={"codebook_size": 512, "channels": 256, "downsamplings": 2, "res_channels": 256},
            decoder_options={"channels": 256, "downsamplings": 2, "res_channels": 256},
            prior="standard-normal",  # unused by the ae objective; replaced by the fitted pixelcnn
            likelihood="gaussian",
            dataset="cifar10",
            latent_size=64 * 8 * 8,
            objective="ae",
            training=_TRAINING,
            reference={
                "paper": _PAPER,
                "citation": _CITATION,
                "protocol": "the paper reports 4.67 bits/dim on CIFAR-10 for a VQ-VAE trained for 250,000 "
                "steps at batch 128 (Adam 2e-4, beta 0.25), with 'a field of ... 8 x 8 x 10' latents for CIFAR10 and "
                "no K or D stated for it; this recipe's K=512 and D=64 follow DeepMind's Sonnet VQ-VAE example, and "
                "zoo reports reconstruction error and sample metrics for it, not bits/dim",
                "pythae": "pythae reports none that we could confirm for VQ-VAE",
            },
        )
    )
