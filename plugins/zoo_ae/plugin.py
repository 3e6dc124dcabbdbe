"""Hook implementations of the ``ae`` plugin: deterministic encoders, the RAE objectives (Ghosh et
al. 2020) and recipes for a plain autoencoder, RAE-L2 and RAE-GP on MNIST.

Factories are ``"module:attribute"`` strings, so listing models does not import torch.
"""

import zoo

_C = "zoo_ae.components"
_O = "zoo_ae.objectives"


@zoo.hookimpl
def register_encoders(register):
    register(
        "ae-conv",
        f"{_C}:AEConvEncoder",
        description="Deterministic conv encoder (the reference conv net, any image shape) with a code head, "
        "no variance: q(z|x) is a point",
    )
    register(
        "ae-mlp",
        f"{_C}:AEMLPEncoder",
        description="Deterministic MLP encoder (the AEVB MLP, any data shape) with a code head, no variance",
    )


@zoo.hookimpl
def register_objectives(register):
    register(
        "rae-l2",
        f"{_O}:RAEL2",
        description="RAE-L2 (Ghosh et al. 2020): -log p(x|z) + embedding_weight ||z||^2/2 "
        "+ reg_weight ||decoder weights||^2",
    )
    register(
        "rae-gp",
        f"{_O}:RAEGP",
        description="RAE-GP (Ghosh et al. 2020): -log p(x|z) + embedding_weight ||z||^2/2 "
        "+ reg_weight ||dD(z)/dz||^2 (double backprop)",
    )


_PAPER = "Ghosh et al. 2020, From Variational to Deterministic Autoencoders (ICLR), table 1 (MNIST)"
_CITATION = """@inproceedings{ghosh2020from,
  title = {From Variational to Deterministic Autoencoders},
  author = {Ghosh, Partha and Sajjadi, Mehdi S. M. and Vergari, Antonio and Black, Michael and Sch{\\"o}lkopf, Bernhard},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year = {2020},
  url = {https://openreview.net/forum?id=S1g7tpEYDS}
}"""
_PROTOCOL = (
    "FID (Inception features) of 10,000 samples against the test set, decoded from N(0, I) and from a "
    "10-component Gaussian mixture fitted to the training codes afterwards (ex-post density estimation); "
    "the paper's nets have 128 filters and batch norm, 16 latents, a summed squared error for the "
    "reconstruction (the zoo recipes: the reference conv nets and a Bernoulli likelihood), batch 100, 100 epochs. "
    "zoo eval's default FID features are its own MNIST classifier's, so compare with --fid-features inception"
)
_CONV = dict(
    encoder="ae-conv",
    decoder="conv-mnist",
    prior="standard-normal",
    dataset="mnist",
    latent_size=16,
    likelihood="bernoulli",
    training=zoo.Training(epochs=100, batch_size=100, lr=1e-3),
)
_NOTE = (
    "reference conv nets, 16 latents, Bernoulli likelihood on MNIST grey levels (pythae's bce); samples "
    "decode N(0, I) draws until a prior is fitted to the codes"
)


def _reference(pythae: str, authors_fid: str) -> dict:
    return {
        "paper": _PAPER,
        "citation": _CITATION,
        "protocol": _PROTOCOL,
        "authors_code": authors_fid,
        "pythae": pythae,
    }


@zoo.hookimpl
def register_recipes(register):
    register(
        zoo.Recipe(
            id="ae-conv-mnist",
            description="A plain deterministic autoencoder (the ae objective): " + _NOTE,
            objective="ae",
            reference=_reference(
                "pythae reports none (its reproducibility table has no AE entry)",
                "the authors' MNIST configuration notes FID 10.66 for their AE with a 10-component GMM",
            ),
            **_CONV,
        )
    )
    register(
        zoo.Recipe(
            id="rae-l2-conv-mnist",
            description="RAE-L2 (Ghosh et al. 2020), embedding_weight 1e-4, reg_weight 1e-7 (the authors' MNIST "
            "settings): " + _NOTE,
            objective="rae-l2",
            objective_options={"embedding_weight": 1e-4, "reg_weight": 1e-7},
            reference=_reference(
                "FID 9.1 (pythae's reproducibility table, MNIST, against 9.9 from the authors' code; its "
                "reproduction used embedding_weight 1e-6, reg_weight 1e-3)",
                "the authors' MNIST configuration notes FID 8.69 with a 10-component GMM",
            ),
            **_CONV,
        )
    )
    register(
        zoo.Recipe(
            id="rae-gp-conv-mnist",
            description="RAE-GP (Ghosh et al. 2020), embedding_weight 1e-4, gradient-penalty reg_weight 0.5e-7 "
            "(the authors' MNIST settings): " + _NOTE,
            objective="rae-gp",
            objective_options={"embedding_weight": 1e-4, "reg_weight": 0.5e-7},
            reference=_reference(
                "FID 9.7 (pythae's reproducibility table, MNIST, against 9.4 from the authors' code; its "
                "reproduction used embedding_weight 1e-3, reg_weight 1e-6)",
                "the authors' MNIST configuration notes FID 11.54 with a 10-component GMM",
            ),
            **_CONV,
        )
    )
