"""Hook implementations of the ``flows`` plugin: a RealNVP prior and an MLP pair (the IWAE paper's by default);
and flow posteriors, encoders whose q(z|x) is a Gaussian through inverse autoregressive or planar flow steps.

Factories are ``"module:attribute"`` strings, so listing models does not import torch.
"""

import zoo

_C = "zoo_flows.components"
_P = "zoo_flows.posterior_flows"


@zoo.hookimpl
def register_encoders(register):
    register(
        "deep-mlp",
        f"{_C}:DeepMLPEncoder",
        description="MLP, options layers (2), hidden (200), activation (tanh): diagonal Gaussian q(z|x); "
        "the defaults are Burda et al. 2016's network (burda-mlp with one stochastic layer)",
    )
    register(
        "iaf-conv",
        f"{_P}:IAFConvEncoder",
        description="conv-mnist's network to a Gaussian and a context h, then inverse autoregressive flow steps "
        "(Kingma et al. 2016): options steps (2), hidden (128), depth (2), context (64), forget_bias (2.0), "
        "channels (16), downsamplings (2)",
    )
    register(
        "planar-conv",
        f"{_P}:PlanarConvEncoder",
        description="conv-mnist's network to a Gaussian and amortised (u, w, b) per step, then planar flow steps "
        "(Rezende & Mohamed 2015): options steps (10), channels (16), downsamplings (2)",
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
    _posterior_recipes(register)


_IAF_CITATION = """@inproceedings{kingma2016improved,
  title = {Improved Variational Inference with Inverse Autoregressive Flow},
  author = {Kingma, Durk P. and Salimans, Tim and Jozefowicz, Rafal and Chen, Xi and Sutskever, Ilya
            and Welling, Max},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  volume = {29},
  year = {2016}
}"""
_PLANAR_CITATION = """@inproceedings{rezende2015variational,
  title = {Variational Inference with Normalizing Flows},
  author = {Rezende, Danilo Jimenez and Mohamed, Shakir},
  booktitle = {Proceedings of the 32nd International Conference on Machine Learning (ICML)},
  series = {Proceedings of Machine Learning Research},
  volume = {37},
  pages = {1530--1538},
  year = {2015}
}"""
# pythae's MNIST benchmark setting: 16 latents; zoo's conv pair on grey-level MNIST (Bernoulli), as vae-conv-mnist.
_FLOW_POSTERIOR = dict(
    decoder="conv-mnist",
    prior="standard-normal",
    likelihood="bernoulli",
    dataset="mnist",
    latent_size=16,
    training=zoo.Training(epochs=100, batch_size=100, lr=1e-3, optimizer="adam"),
)


def _posterior_recipes(register):
    """The flow-posterior recipes (called by :func:`register_recipes`)."""
    register(
        zoo.Recipe(
            id="vae-iaf-conv-mnist",
            description="VAE whose q(z|x) is a Gaussian through 2 IAF steps (Kingma et al. 2016), MADE of 2x128 "
            "ELU units with a 64-number context h from the encoder; conv-mnist networks, 16 latents, Bernoulli "
            "likelihood on grey-level MNIST (as vae-conv-mnist), N(0, I) prior",
            encoder="iaf-conv",
            encoder_options={"steps": 2, "hidden": 128},
            reference={
                "paper": "Kingma et al. 2016, Improved Variational Inference with Inverse Autoregressive Flow, "
                "table 1 (MNIST, ResNet VAE with IAF)",
                "citation": _IAF_CITATION,
                "protocol": "the paper's MNIST figures are for ResNet networks on dynamically binarized MNIST "
                "(not checked here); zoo's recipe is a small conv pair on grey-level MNIST, so it compares with "
                "vae-conv-mnist and vae-planar-conv-mnist, scored by zoo eval's importance-weighted NLL",
                "pythae": "pythae reports none (VAE_IAF: 2 MADE blocks of 128 units, not conditioned on x)",
            },
            **_FLOW_POSTERIOR,
        )
    )
    register(
        zoo.Recipe(
            id="vae-planar-conv-mnist",
            description="VAE whose q(z|x) is a Gaussian through 10 planar flow steps (Rezende & Mohamed 2015) with "
            "amortised (u, w, b); conv-mnist networks, 16 latents, Bernoulli likelihood on grey-level MNIST "
            "(as vae-conv-mnist), N(0, I) prior",
            encoder="planar-conv",
            encoder_options={"steps": 10},
            reference={
                "paper": "Rezende & Mohamed 2015, Variational Inference with Normalizing Flows, table 2 (MNIST)",
                "citation": _PLANAR_CITATION,
                "protocol": "the paper's table is for MLP networks on binarized MNIST with flows of 10 to 80 steps "
                "(its N(0, I) VAE baseline: 89.9 nats, as pythae quotes it); zoo's recipe is a conv pair with 16 "
                "latents on grey-level MNIST, so it compares with vae-conv-mnist, scored by zoo eval's "
                "importance-weighted NLL",
                "pythae": "pythae reports none for planar flows (its 89.78 reproduces that table's N(0, I) VAE)",
            },
            **_FLOW_POSTERIOR,
        )
    )
