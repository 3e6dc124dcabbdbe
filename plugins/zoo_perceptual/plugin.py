"""Hook implementations of the ``perceptual`` plugin: the objective ``msssim-vae`` and its MNIST
recipe, built from the reference plugin's conv networks by id.

Factories are ``"module:attribute"`` strings, so listing models does not import torch.
"""

import zoo


@zoo.hookimpl
def register_objectives(register):
    register(
        "msssim-vae",
        "zoo_perceptual.objectives:MSSSIMVAE",
        description="MSSSIM-VAE (Snell et al. 2017): beta x KL + scale x (1 - MS-SSIM) of the reconstruction "
        "(torchmetrics); options beta, scale, scales (3), kernel_size (7, fits 28x28)",
    )


@zoo.hookimpl
def register_recipes(register):
    register(
        zoo.Recipe(
            id="msssim-vae-conv-mnist",
            description="MSSSIM-VAE on MNIST: the reference conv networks, 16 latents, 1 - MS-SSIM over 3 scales "
            "(7-pixel windows) weighted by scale against the KL",
            encoder="conv-mnist",
            decoder="conv-mnist",
            prior="standard-normal",
            likelihood="bernoulli",
            dataset="mnist",
            latent_size=16,
            objective="msssim-vae",
            # pythae's form is scale 1: a term in [0, 1] beside a KL in nats, which lets the KL win (the
            # posterior collapses). 784, one nat per pixel of a 28x28 image, puts the term on the scale of
            # a Bernoulli reconstruction term.
            objective_options={"beta": 1.0, "scale": 784.0},
            # pythae's MNIST benchmark setting: 16 latents, batches of 100, Adam at 1e-3.
            training=zoo.Training(epochs=100, batch_size=100, lr=1e-3),
            reference={
                "paper": "Snell et al. 2017, Learning to Generate Images with Perceptual Similarity Metrics",
                "citation": """@inproceedings{snell2017learning,
  title = {Learning to Generate Images with Perceptual Similarity Metrics},
  author = {Snell, Jake and Ridgeway, Karl and Liao, Renjie and Roads, Brett D. and Mozer, Michael C. and
            Zemel, Richard S.},
  booktitle = {IEEE International Conference on Image Processing (ICIP)},
  year = {2017}
}""",
                "protocol": "zoo scores the model it trains with the test-set ELBO and IW-NLL of its Bernoulli "
                "likelihood, whose density the objective never trains (docs/families.md); the paper compares "
                "reconstructions by human judgement and MS-SSIM, not by likelihood",
                "pythae": "pythae reports none (no published figure for this model was found in pythae's paper, "
                "README or docs)",
            },
        )
    )
