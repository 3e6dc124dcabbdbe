"""Hook implementations of the ``adversarial`` plugin: the objectives ``aae`` and ``vae-gan`` and
their MNIST recipes, built from the reference plugin's conv networks by id.

Factories are ``"module:attribute"`` strings, so listing models does not import torch.
"""

import zoo

_O = "zoo_adversarial.objectives"


@zoo.hookimpl
def register_objectives(register):
    register(
        "aae",
        f"{_O}:AdversarialAutoencoder",
        description="Adversarial autoencoder (Makhzani et al. 2016): reconstruction + codes fooling an MLP "
        "discriminator on z trained by its own optimizer; options adversarial_scale (0.5), reconstruction_scale",
    )
    register(
        "vae-gan",
        f"{_O}:VAEGAN",
        description="VAE-GAN (Larsen et al. 2016): KL + reconstruction in a conv discriminator's layer features "
        "+ GAN terms, the discriminator trained by its own optimizer; options gamma, beta, layer",
    )


# pythae's MNIST benchmark setting: 16 latents, batches of 100, Adam at 1e-3 (the reference conv
# networks here, not pythae's larger ones).
_TRAINING = zoo.Training(epochs=100, batch_size=100, lr=1e-3)
_CONV = dict(
    encoder="conv-mnist",
    decoder="conv-mnist",
    prior="standard-normal",
    likelihood="bernoulli",
    dataset="mnist",
    latent_size=16,
    training=_TRAINING,
)
_PROTOCOL = (
    "zoo scores the model it trains with the test-set ELBO and IW-NLL of its Bernoulli likelihood "
    "(docs/families.md says what they mean for a model trained adversarially); the paper reports no "
    "comparable MNIST likelihood"
)
_PYTHAE = "pythae reports none (no published figure for this model was found in pythae's paper, README or docs)"


@zoo.hookimpl
def register_recipes(register):
    register(
        zoo.Recipe(
            id="aae-conv-mnist",
            description="Adversarial autoencoder on MNIST: the reference conv networks, 16 latents, Gaussian "
            "q(z|x), an MLP discriminator (256 units) on z, pythae's adversarial_scale 0.5",
            objective="aae",
            objective_options={"adversarial_scale": 0.5},
            reference={
                "paper": "Makhzani et al. 2016, Adversarial Autoencoders",
                "citation": """@inproceedings{makhzani2016adversarial,
  title = {Adversarial Autoencoders},
  author = {Makhzani, Alireza and Shlens, Jonathon and Jaitly, Navdeep and Goodfellow, Ian and Frey, Brendan},
  booktitle = {International Conference on Learning Representations (ICLR), workshop track},
  year = {2016}
}""",
                "protocol": _PROTOCOL + " (the paper's MNIST figure is a Parzen-window estimate on samples)",
                "pythae": _PYTHAE,
            },
            **_CONV,
        )
    )
    register(
        zoo.Recipe(
            id="vae-gan-conv-mnist",
            description="VAE-GAN on MNIST: the reference conv networks, 16 latents, reconstruction measured in the "
            "3rd conv layer of a conv discriminator (16-32-64 channels), gamma 1",
            objective="vae-gan",
            objective_options={"gamma": 1.0, "layer": 3},
            reference={
                "paper": "Larsen et al. 2016, Autoencoding beyond pixels using a learned similarity metric",
                "citation": """@inproceedings{larsen2016autoencoding,
  title = {Autoencoding beyond pixels using a learned similarity metric},
  author = {Larsen, Anders Boesen Lindbo and S{\\o}nderby, S{\\o}ren Kaae and Larochelle, Hugo and Winther, Ole},
  booktitle = {Proceedings of the 33rd International Conference on Machine Learning (ICML)},
  series = {Proceedings of Machine Learning Research},
  volume = {48},
  pages = {1558--1566},
  year = {2016}
}""",
                "protocol": _PROTOCOL + " (the paper trains on CelebA and LFW at 64x64)",
                "pythae": _PYTHAE,
            },
            **_CONV,
        )
    )
