"""Hook implementations of the ``manifold`` plugin: the hyperspherical VAE (Davidson et al. 2018)
and the Poincare VAE (Mathieu et al. 2019), VAEs whose latents live on a manifold.

Factories are ``"module:attribute"`` strings, so listing models does not import torch.
"""

import zoo

_C = "zoo_manifold.components"


@zoo.hookimpl
def register_encoders(register):
    register(
        "svae-conv",
        f"{_C}:SphereConvEncoder",
        description="conv layers to a von Mises-Fisher q(z|x) on the sphere S^(L-1): mean direction normalised, "
        "concentration softplus + 1 (Davidson et al. 2018); pairs with the uniform-sphere prior",
    )
    register(
        "pvae-conv",
        f"{_C}:PoincareConvEncoder",
        description="conv layers to a wrapped normal q(z|x) on the Poincare ball: mean exp_0(h), scale softplus "
        "(Mathieu et al. 2019); its curvature is the wrapped-normal prior's c",
    )


@zoo.hookimpl
def register_decoders(register):
    register(
        "pvae-conv",
        f"{_C}:PoincareConvDecoder",
        description="log_0(z) then the conv decoder: Mathieu et al.'s wrapped decoder for Poincare-ball latents",
    )


@zoo.hookimpl
def register_priors(register):
    register(
        "uniform-sphere",
        f"{_C}:UniformSpherePrior",
        description="the uniform distribution on the unit sphere S^(L-1) (Davidson et al. 2018); analytic KL to a vMF",
    )
    register(
        "wrapped-normal",
        f"{_C}:WrappedNormalPrior",
        description="wrapped normal N^W(0, scale^2 I) on the Poincare ball of curvature -c (Mathieu et al. 2019); "
        "options c (1), scale (1)",
    )


_SVAE = "Davidson, Falorsi, De Cao, Kipf & Tomczak 2018, Hyperspherical Variational Auto-Encoders, MNIST table"
_SVAE_CITATION = """@inproceedings{davidson2018hyperspherical,
  title = {Hyperspherical Variational Auto-Encoders},
  author = {Davidson, Tim R. and Falorsi, Luca and De Cao, Nicola and Kipf, Thomas and Tomczak, Jakub M.},
  booktitle = {Proceedings of the 34th Conference on Uncertainty in Artificial Intelligence (UAI)},
  pages = {856--865},
  year = {2018}
}"""
_PVAE = "Mathieu, Le Lan, Maddison, Tomioka & Teh 2019, Continuous Hierarchical Representations with Poincare VAEs"
_PVAE_CITATION = """@inproceedings{mathieu2019continuous,
  title = {Continuous Hierarchical Representations with {Poincar\\'e} Variational Auto-Encoders},
  author = {Mathieu, Emile and Le Lan, Charline and Maddison, Chris J. and Tomioka, Ryota and Teh, Yee Whye},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  volume = {32},
  year = {2019}
}"""
_TRAINING = zoo.Training(epochs=100, batch_size=64, lr=1e-3, optimizer="adam")


@zoo.hookimpl
def register_recipes(register):
    register(
        zoo.Recipe(
            id="svae-mnist",
            description="Hyperspherical VAE (Davidson et al. 2018): vMF posterior on S^9 (10 latents), uniform prior, "
            "conv networks, Bernoulli likelihood, dynamically binarized MNIST",
            encoder="svae-conv",
            decoder="conv",
            prior="uniform-sphere",
            likelihood="bernoulli",
            dataset="binarized-mnist",
            latent_size=10,
            training=_TRAINING,
            reference={
                "paper": _SVAE,
                "citation": _SVAE_CITATION,
                "protocol": "dynamically binarized MNIST, test log-likelihood by importance sampling, latent "
                "dimensions 2 to 40 in the paper (its MLP networks); zoo's conv networks here, so the figures do "
                "not compare one to one",
                "pythae": "93.27 +- 0.69 (its reproduction: dynamically binarized MNIST, NLL with 500 importance "
                "samples); pythae lists 93.16 +- 0.31 as the paper's table 1 figure",
            },
        )
    )
    register(
        zoo.Recipe(
            id="pvae-mnist",
            description="Poincare VAE (Mathieu et al. 2019): wrapped normal posterior and prior on the Poincare ball "
            "of curvature -0.7, 10 latents, wrapped conv decoder, Bernoulli likelihood, dynamically binarized MNIST",
            encoder="pvae-conv",
            decoder="pvae-conv",
            prior="wrapped-normal",
            prior_options={"c": 0.7, "scale": 1.0},
            likelihood="bernoulli",
            dataset="binarized-mnist",
            latent_size=10,
            training=_TRAINING,
            reference={
                "paper": _PVAE,
                "citation": _PVAE_CITATION,
                "protocol": "dynamically binarized MNIST, test marginal log-likelihood by importance sampling, "
                "c = 0.7 with 10 latents is pythae's reproduction setting (500 importance samples); the authors' "
                "README (emilemathieu/pvae) runs MNIST with c = 0.7, 2 latents, a gyroplane decoder layer, 5000 "
                "importance samples and a relaxed Bernoulli on grey levels; the paper's grid of c and latent sizes "
                "and its table were not checked here",
                "pythae": "101.66 (its reproduction of the authors' implementation: MNIST, NLL with 500 importance "
                "samples); pythae lists 101.47 as the official implementation's figure",
            },
        )
    )
