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


@zoo.hookimpl
def register_decoders(register):
    register(
        "conv-mnist",
        f"{_C}:ConvDecoder",
        description="Mirror of conv-mnist: 7x7 transposed conv to 32, then 32->16->out (3x3, stride 2)",
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
        description="Independent Gaussian per pixel; variance fixed or learned per pixel by the decoder",
    )


_CONV = dict(encoder="conv-mnist", decoder="conv-mnist", latent_size=20)
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
