"""Hook implementations of the ``flows`` plugin: a RealNVP prior and an MLP pair (the IWAE paper's by default).

Factories are ``"module:attribute"`` strings, so listing models does not import torch.
"""

import zoo

_C = "zoo_flows.components"


@zoo.hookimpl
def register_encoders(register):
    register(
        "deep-mlp",
        f"{_C}:DeepMLPEncoder",
        description="MLP, options layers (2), hidden (200), activation (tanh): diagonal Gaussian q(z|x); "
        "the defaults are Burda et al. 2016's network (burda-mlp with one stochastic layer)",
    )


@zoo.hookimpl
def register_decoders(register):
    register(
        "deep-mlp",
        f"{_C}:DeepMLPDecoder",
        description="MLP, options layers (2), hidden (200), activation (tanh), to the likelihood's parameters; "
        "the defaults are Burda et al. 2016's network (as burda-mlp)",
    )


@zoo.hookimpl
def register_priors(register):
    register(
        "realnvp",
        f"{_C}:RealNVPPrior",
        description="Normalizing-flow prior: N(0, I) through RealNVP affine couplings (Dinh et al. 2017); "
        "options layers (4), hidden (128)",
    )


@zoo.hookimpl
def register_recipes(register):
    register(
        zoo.Recipe(
            id="vae-flow-mlp-binarized-mnist",
            description="Burda et al.'s one-stochastic-layer MLP VAE (2x200 tanh, 50 latents) with a learned "
            "4-coupling RealNVP prior, Bernoulli likelihood, dynamically binarized MNIST. The paper's "
            "N(0, I) baseline is the number to beat; its lr schedule (3280 epochs, batch 20) is "
            "shortened to a constant Adam lr",
            encoder="deep-mlp",
            decoder="deep-mlp",
            prior="realnvp",
            prior_options={"layers": 4, "hidden": 128},
            likelihood="bernoulli",
            dataset="binarized-mnist",
            latent_size=50,
            training=zoo.Training(epochs=1000, batch_size=100, lr=1e-3, optimizer="adam"),
        )
    )
