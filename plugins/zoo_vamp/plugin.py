"""Hook implementations of the ``vamp`` plugin (Tomczak & Welling 2018, "VAE with a VampPrior").

Factories are ``"module:attribute"`` strings, so listing models does not import torch.
"""

import zoo

_C = "zoo_vamp.components"


@zoo.hookimpl
def register_encoders(register):
    register(
        "gated-mlp",
        f"{_C}:GatedMLPEncoder",
        description="VampPrior paper's MLP: 2 gated dense layers of 300 units, diagonal Gaussian q(z|x) "
        "(log-variance clipped to [-6, 2])",
    )


@zoo.hookimpl
def register_decoders(register):
    register(
        "gated-mlp",
        f"{_C}:GatedMLPDecoder",
        description="VampPrior paper's MLP: 2 gated dense layers of 300 units to the likelihood's parameters",
    )


@zoo.hookimpl
def register_priors(register):
    register(
        "vamp",
        f"{_C}:VampPrior",
        description="VampPrior (Tomczak & Welling 2018): uniform mixture of q(z|u_k) at 500 learned "
        "pseudo-inputs; uses the model's encoder",
    )


# The paper's (and its code's) settings for the one-layer MLP models on dynamically binarized
# MNIST: 40 latents, Adam at 5e-4, batches of 100, at most 2000 epochs with early stopping after
# 50 epochs without improvement, and a KL warm-up over the first 100 epochs.
_PAPER_TRAINING = zoo.Training(epochs=2000, batch_size=100, lr=5e-4, optimizer="adam")
_PAPER_NOTE = (
    "Paper settings: Adam 5e-4, batch 100, up to 2000 epochs (the paper stops early after 50 "
    "epochs without improvement), KL warm-up over the first 100 epochs (60000 steps at batch 100)"
)
_GATED = dict(
    encoder="gated-mlp",
    decoder="gated-mlp",
    likelihood="bernoulli",
    dataset="binarized-mnist",
    latent_size=40,
    training=_PAPER_TRAINING,
    # the paper's linear KL warm-up over 100 epochs of 600 steps
    objective="elbo",
    objective_options={"warmup": 60000},
)
_PAPER = "Tomczak & Welling 2018, VAE with a VampPrior, table 2 (MNIST, one stochastic layer)"
_CITATION = """@inproceedings{tomczak2018vae,
  title = {{VAE} with a {VampPrior}},
  author = {Tomczak, Jakub M. and Welling, Max},
  booktitle = {Proceedings of the 21st International Conference on Artificial Intelligence and Statistics (AISTATS)},
  series = {Proceedings of Machine Learning Research},
  volume = {84},
  pages = {1214--1223},
  year = {2018}
}"""
_PROTOCOL = (
    "test NLL by importance sampling with 5000 samples; the zoo trains and scores on dynamically "
    "binarized MNIST, while the binarization behind this figure was not confirmed from the paper text "
    "(pythae pairs it with the static files)"
)


@zoo.hookimpl
def register_recipes(register):
    register(
        zoo.Recipe(
            id="vamp-mlp-binarized-mnist",
            description="VAE with a VampPrior (Tomczak & Welling 2018): gated MLP, 40 latents, 500 pseudo-inputs, "
            "Bernoulli likelihood, dynamically binarized MNIST. " + _PAPER_NOTE,
            prior="vamp",
            prior_options={"pseudo_inputs": 500},
            reference={
                "paper": _PAPER,
                "citation": _CITATION,
                "test_nll": 85.57,
                "protocol": _PROTOCOL,
                "pythae": "85.79 (its 'Binary MNIST': the static .amat files, RMSprop 1e-4); pythae lists 85.57 "
                "as the paper's figure for that protocol",
            },
            # The weights in weights/vamp-mlp-binarized-mnist (docs/sharing.md), made by bench/export_families.py.
            pretrained={
                "sha256": "70f17723a0bb5c7115e583163a370ccffe642f8cc196584b8f380207c5585d1e",
                "metrics": {
                    "test_nll_iw": 86.63,
                    "iw_samples": 1000,
                    "n_images": 2000,
                    "seed": 0,
                    "epochs": 81,
                    "quick": {"test_nll_iw": 85.0629, "iw_samples": 50, "n_images": 200, "seed": 0},
                },
            },
            **_GATED,
        )
    )
    register(
        zoo.Recipe(
            id="vae-gated-mlp-binarized-mnist",
            description="The VampPrior paper's baseline: the same gated MLP VAE with a N(0, I) prior. " + _PAPER_NOTE,
            prior="standard-normal",
            reference={"paper": _PAPER, "citation": _CITATION, "test_nll": 88.56, "protocol": _PROTOCOL},
            **_GATED,
        )
    )
