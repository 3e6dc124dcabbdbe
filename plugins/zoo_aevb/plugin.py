"""Hook implementations of the reference plugin.

Factories are registered as ``"module:attribute"`` strings so that listing models does not
import torch; zoo imports them the first time one is built.
"""

import zoo

_C = "zoo_aevb.components"


@zoo.hookimpl
def register_encoders(register):
    register(
        "conv-mnist",
        f"{_C}:ConvEncoder",
        description="Conv 1->16->32 (3x3, stride 2) then a 7x7 conv to 2 x latent: diagonal Gaussian q(z|x)",
    )
    register(
        "conv",
        f"{_C}:ImageConvEncoder",
        description="conv-mnist for any image size and channels: option downsamplings (2) stride-2 convs, "
        "channels (16) doubling at each, then a conv over the remaining map",
    )
    register(
        "aevb-mlp",
        f"{_C}:MLPEncoder",
        description="Kingma & Welling's Gaussian MLP: one tanh layer (option hidden, 500), diagonal Gaussian q(z|x)",
    )


@zoo.hookimpl
def register_decoders(register):
    register(
        "conv-mnist",
        f"{_C}:ConvDecoder",
        description="Mirror of conv-mnist: 7x7 transposed conv to 32, then 32->16->out (3x3, stride 2)",
    )
    register(
        "conv",
        f"{_C}:ImageConvDecoder",
        description="Mirror of the conv encoder, ending at exactly the data's height and width",
    )
    register(
        "aevb-mlp",
        f"{_C}:MLPDecoder",
        description="Kingma & Welling's MLP decoder: one tanh layer (option hidden, 500) to the likelihood's "
        "parameters",
    )


@zoo.hookimpl
def register_priors(register):
    register("standard-normal", f"{_C}:StandardNormalPrior", description="N(0, I)")
    register(
        "mixture-of-gaussians",
        f"{_C}:MixtureOfGaussiansPrior",
        description="Learnable mixture of diagonal Gaussians (KL by Monte Carlo)",
    )


@zoo.hookimpl
def register_likelihoods(register):
    register("bernoulli", f"{_C}:BernoulliLikelihood", description="Independent Bernoulli per pixel, by logits")
    register(
        "continuous-bernoulli",
        f"{_C}:ContinuousBernoulliLikelihood",
        description="Continuous Bernoulli (Loaiza-Ganem & Cunningham 2019): a true density on [0, 1]",
    )
    register(
        "gaussian",
        f"{_C}:GaussianLikelihood",
        description="Independent Gaussian per pixel; variance fixed or learned per pixel by the decoder, "
        "mean as it is or squashed into (0, 1) (option mean)",
    )


_CONV = dict(encoder="conv-mnist", decoder="conv-mnist", latent_size=20)
_AEVB = "Kingma & Welling 2014, Auto-Encoding Variational Bayes (ICLR), arXiv:1312.6114"
# The seed article's settings: Adam at 1e-3, batch 100, 200 epochs.
_SEED_TRAINING = zoo.Training(epochs=200, batch_size=100, lr=1e-3)


@zoo.hookimpl
def register_recipes(register):
    register(
        zoo.Recipe(
            id="vae-conv-mnist",
            description="The seed's convolutional VAE on grey-level MNIST: N(0, I) prior, Bernoulli likelihood",
            prior="standard-normal",
            likelihood="bernoulli",
            dataset="mnist",
            training=_SEED_TRAINING,
            # The weights in weights/vae-conv-mnist (docs/sharing.md), made by bench/export_families.py.
            pretrained={
                "sha256": "9012ca03419eaac4067d4e7602f1a98a0f84ab7e92ac6bbace49fa7b6c9621ad",
                "metrics": {
                    "test_nll_iw": 94.96,
                    "iw_samples": 1000,
                    "n_images": 2000,
                    "seed": 0,
                    "epochs": 127,
                    "quick": {"test_nll_iw": 93.812, "iw_samples": 50, "n_images": 200, "seed": 0},
                },
            },
            **_CONV,
        )
    )
    register(
        zoo.Recipe(
            id="vae-conv-binarized-mnist",
            description="The reference architecture on dynamically binarized MNIST: a true likelihood, "
            "comparable with published numbers",
            prior="standard-normal",
            likelihood="bernoulli",
            dataset="binarized-mnist",
            training=_SEED_TRAINING,
            **_CONV,
        )
    )
    register(
        zoo.Recipe(
            id="vae-conv-cb-mnist",
            description="The reference architecture with a continuous Bernoulli likelihood on grey-level MNIST",
            prior="standard-normal",
            likelihood="continuous-bernoulli",
            dataset="mnist",
            training=_SEED_TRAINING,
            **_CONV,
        )
    )
    register(
        zoo.Recipe(
            id="vae-conv-mog-mnist",
            description="The reference architecture with a learnable 10-component mixture-of-Gaussians prior",
            prior="mixture-of-gaussians",
            prior_options={"components": 10},
            likelihood="bernoulli",
            dataset="mnist",
            training=_SEED_TRAINING,
            **_CONV,
        )
    )
    register(
        zoo.Recipe(
            id="vae-conv-fashion-mnist",
            description="The reference architecture on Fashion-MNIST",
            prior="standard-normal",
            likelihood="bernoulli",
            dataset="fashion-mnist",
            training=_SEED_TRAINING,
            **_CONV,
        )
    )
    register(
        zoo.Recipe(
            id="vae-conv",
            description="The seed's convolutional VAE for images of any size and channels (your own with --data); "
            "MNIST by default",
            encoder="conv",
            decoder="conv",
            prior="standard-normal",
            likelihood="bernoulli",
            dataset="mnist",
            latent_size=20,
            training=_SEED_TRAINING,
            reference={
                "paper": _AEVB,
                "notes": "the seed article's conv VAE (conv 16, 32, stride 2; latent 20; Adam 1e-3, batch 100), "
                "its decoder ending at exactly the data's height and width; encoder.downsamplings and "
                "decoder.downsamplings add stride-2 stages for larger images",
            },
        )
    )
    register(
        zoo.Recipe(
            id="vae-mlp-frey-faces",
            description="Kingma & Welling's Frey Face VAE: MLP (200 tanh units), Gaussian decoder with sigmoid means, "
            "10 latents, Adagrad",
            encoder="aevb-mlp",
            decoder="aevb-mlp",
            encoder_options={"hidden": 200},
            decoder_options={"hidden": 200},
            prior="standard-normal",
            likelihood="gaussian",
            likelihood_options={"variance": "learned", "mean": "sigmoid"},
            dataset="frey-faces",
            latent_size=10,
            # Adagrad with a global step size from the paper's {0.01, 0.02, 0.1}, chosen as the paper did, on
            # the training bound of the first epochs (0.1 diverges, 0.01 leads 0.02); a weight decay of 1/N
            # per datapoint is the paper's N(0, I) prior on the parameters (N = 1965 faces: 5.1e-4).
            training=zoo.Training(epochs=1000, batch_size=100, lr=0.01, optimizer="adagrad", weight_decay=5.1e-4),
            reference={
                "paper": _AEVB + ", section 5 and figure 2 (Frey Face panels)",
                "protocol": "average variational lower bound per datapoint (nats; a density on [0, 1]^560, so "
                "positive) against the number of training samples evaluated, train and test curves, for "
                "Nz = 2, 5, 10 and 20 latents (--set latent_size=N)",
                "figure_2": "Frey Face is reported as curves only, with no number in the text: the average lower "
                "bound per datapoint (train and test) against training samples evaluated (log scale) for Nz = 2, "
                "5, 10 and 20; AEVB rises faster and ends higher than wake-sleep for every Nz, the test bound "
                "follows the training bound, and more latents do not overfit. Compare by reading the plot",
                "notes": "the paper's 200 hidden units, tanh, sigmoid means, minibatch 100, L = 1 sample, Adagrad; "
                "it initialises weights from N(0, 0.01) (here torch's defaults) and parameterises the "
                "decoder's log-variance linearly (here scale = softplus + 0.001)",
            },
        )
    )
    register(
        zoo.Recipe(
            id="vae-conv-celeba64",
            description="Conv VAE on 64x64 CelebA with AntixK's PyTorch-VAE settings: 5 stride-2 convs (32 to 512 "
            "channels), 128 latents, Gaussian likelihood, Adam 5e-3, batch 64",
            encoder="conv",
            decoder="conv",
            encoder_options={"channels": 32, "downsamplings": 5},
            decoder_options={"channels": 32, "downsamplings": 5},
            prior="standard-normal",
            likelihood="gaussian",
            # AntixK's loss is mean-over-pixels MSE + 0.00025 KL. Times the 12288 values of an image that is
            # sum MSE + 3.072 KL: -log N(x; mean, 0.5) up to a constant, and beta = 0.00025 x 12288.
            likelihood_options={"variance": "fixed", "scale": 0.5**0.5},
            objective="elbo",
            objective_options={"beta": 3.072},
            dataset="celeba64",
            latent_size=128,
            training=zoo.Training(epochs=100, batch_size=64, lr=5e-3),
            reference={
                "paper": _AEVB + "; settings of AntixK/PyTorch-VAE (Subramanian 2020), configs/vae.yaml",
                "follows": "AntixK's VanillaVAE: latent 128, channels 32, 64, 128, 256, 512 (3x3 stride-2 convs), "
                "Adam 5e-3, batch 64, 100 epochs, kld_weight 0.00025; not its BatchNorm and LeakyReLU (the seed's "
                "plain ReLU here), nor its per-epoch learning-rate decay (gamma 0.95)",
                "pythae": "pythae's CelebA 64 VAE benchmark differs: latent 64, conv 128-1024 channels (4x4 kernels, "
                "BatchNorm), MSE x 0.5 (a unit Gaussian), beta 1, Adam 1e-4, batch 100, 50 epochs",
            },
        )
    )
