"""Hook implementations of the ``samplers`` plugin: post-hoc priors that ``zoo fit-prior`` fits to the
codes of a trained model's training set (pythae's samplers).

Factories are ``"module:attribute"`` strings, so listing them does not import torch or scikit-learn.
"""

import zoo


@zoo.hookimpl
def register_samplers(register):
    register(
        "gmm",
        "zoo_samplers.gmm:GaussianMixtureSampler",
        description="Gaussian mixture with full covariances fitted by EM (scikit-learn), 10 components "
        "(pythae's GaussianMixtureSampler)",
    )
    register(
        "maf",
        "zoo_samplers.flows:MAFSampler",
        description="Masked autoregressive flow (Papamakarios et al. 2017): 2 MADE blocks, fitted by maximum "
        "likelihood (pythae's MAFSampler)",
    )
    register(
        "iaf",
        "zoo_samplers.flows:IAFSampler",
        description="Inverse autoregressive flow (Kingma et al. 2016): 2 MADE blocks on the noise, fast draws, "
        "density one coordinate at a time (pythae's IAFSampler)",
    )
    register(
        "realnvp",
        "zoo_samplers.flows:RealNVPSampler",
        description="RealNVP (Dinh et al. 2017): 4 affine couplings on alternating halves, fitted by maximum "
        "likelihood",
    )
    register(
        "two-stage",
        "zoo_samplers.two_stage:TwoStageSampler",
        description="Two-stage VAE (Dai & Wipf 2019): a second VAE on the codes, draws are its decoder's means; "
        "no density (pythae's TwoStageVAESampler)",
    )
