"""Hook implementations of the ``hamiltonian`` plugin: the ``hvae`` and ``rhvae`` objectives, the RHVAE's
``rhvae-conv`` encoder (a Gaussian and the metric's factors) and one recipe for each family.

Factories are ``"module:attribute"`` strings, so listing models does not import torch.
"""

import zoo

_O = "zoo_hamiltonian.objectives"
_C = "zoo_hamiltonian.components"


@zoo.hookimpl
def register_encoders(register):
    register(
        "rhvae-conv",
        f"{_C}:RHVAEConvEncoder",
        description="conv-mnist's network to a diagonal Gaussian q(z|x) and the RHVAE metric factor L(x), "
        "returned as q.metric_factors for the rhvae objective; options channels (16), downsamplings (2)",
    )


@zoo.hookimpl
def register_objectives(register):
    register(
        "hvae",
        f"{_O}:HVAE",
        description="Hamiltonian VAE bound (Caterini et al. 2018): K tempered leapfrog steps on log p(x, z) from "
        "z_0 ~ q(z|x); options steps (3), step_size (1e-3, learned), beta0 (0.3), learn_step_size, learn_beta0",
    )
    register(
        "rhvae",
        f"{_O}:RHVAE",
        description="Riemannian Hamiltonian VAE bound (Chadebec et al. 2020): generalised leapfrog with the metric "
        "G^-1(z) = sum_i L_i L_i^T exp(-|z - c_i|^2 / T^2) + lambda I; options steps (3), step_size (1e-3), "
        "beta0 (0.3), temperature (1.5), regularization (0.01), fixed_point (3)",
    )


_HVAE_CITATION = """@inproceedings{caterini2018hamiltonian,
  title = {Hamiltonian Variational Auto-Encoder},
  author = {Caterini, Anthony L. and Doucet, Arnaud and Sejdinovic, Dino},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  volume = {31},
  year = {2018}
}"""
_RHVAE_CITATION = """@article{chadebec2020geometry,
  title = {Geometry-Aware {Hamiltonian} Variational Auto-Encoder},
  author = {Chadebec, Cl{\\'e}ment and Mantoux, Cl{\\'e}ment and Allassonni{\\`e}re, St{\\'e}phanie},
  journal = {arXiv preprint arXiv:2010.11518},
  year = {2020}
}"""
# pythae 0.1.2's HVAEConfig / RHVAEConfig defaults (n_lf 3, eps_lf 1e-3, beta_zero 0.3; RHVAE: temperature
# 1.5, regularization 0.01), 16 latents as in pythae's MNIST benchmark, zoo's conv pair on grey-level MNIST.
_HAMILTONIAN = dict(
    decoder="conv-mnist",
    prior="standard-normal",
    likelihood="bernoulli",
    dataset="mnist",
    latent_size=16,
    training=zoo.Training(epochs=100, batch_size=100, lr=1e-3, optimizer="adam"),
)
_EVAL_NOTE = (
    "zoo eval's IW-NLL uses q(z_0|x) as the proposal, a valid estimate of log p(x) since p(x|z)p(z) is unchanged; "
    "the trainer's test metrics are the ELBO of q(z_0|x)"
)


@zoo.hookimpl
def register_recipes(register):
    register(
        zoo.Recipe(
            id="hvae-conv-mnist",
            description="Hamiltonian VAE (Caterini et al. 2018): conv-mnist networks, 16 latents, 3 tempered leapfrog "
            "steps (learned step size from 1e-3, beta0 0.3), Bernoulli likelihood on grey-level MNIST",
            encoder="conv-mnist",
            objective="hvae",
            objective_options={"steps": 3, "step_size": 1e-3, "beta0": 0.3, "learn_step_size": True},
            reference={
                "paper": "Caterini, Doucet & Sejdinovic 2018, Hamiltonian Variational Auto-Encoder (MNIST experiments)",
                "citation": _HVAE_CITATION,
                "protocol": "settings are pythae 0.1.2's HVAE defaults; " + _EVAL_NOTE,
                "pythae": "86.21 NLL (1000 IS) for HVAE with n_lf=4 on statically binarized MNIST, reproducing "
                "Salimans et al. 2015's 86.40 (pythae's reproducibility table); not this recipe's protocol",
            },
            **_HAMILTONIAN,
        )
    )
    register(
        zoo.Recipe(
            id="rhvae-conv-mnist",
            description="Riemannian Hamiltonian VAE (Chadebec et al. 2020): conv-mnist networks with a metric head, "
            "16 latents, 3 generalised leapfrog steps of 1e-3 (3 fixed-point iterations), beta0 0.3, "
            "temperature 1.5, lambda 0.01, Bernoulli likelihood on grey-level MNIST",
            encoder="rhvae-conv",
            objective="rhvae",
            objective_options={"steps": 3, "step_size": 1e-3, "beta0": 0.3, "temperature": 1.5, "regularization": 0.01},
            reference={
                "paper": "Chadebec, Mantoux & Allassonnière 2020, Geometry-Aware Hamiltonian Variational Auto-Encoder",
                "citation": _RHVAE_CITATION,
                "protocol": "settings are pythae 0.1.2's RHVAE defaults; " + _EVAL_NOTE,
                "pythae": "pythae reports none (no RHVAE NLL in its reproducibility table)",
            },
            **_HAMILTONIAN,
        )
    )
