"""The hook implementations zoo calls when it loads the ``mlp`` entry point."""

import zoo


@zoo.hookimpl
def register_encoders(register):
    # A "module:attribute" string: zoo imports it (and torch) only when a model is built.
    register(
        "mlp",
        "zoo_mlp.components:MLPEncoder",
        description="MLP, one hidden layer (500 tanh units): diagonal Gaussian q(z|x)",
    )


@zoo.hookimpl
def register_decoders(register):
    register(
        "mlp",
        "zoo_mlp.components:MLPDecoder",
        description="MLP, one hidden layer (500 tanh units) to the likelihood's parameters",
    )


@zoo.hookimpl
def register_priors(register):
    register(
        "mini-vamp",
        "zoo_mlp.vamp:VampPrior",
        description="VampPrior (Tomczak & Welling 2018): the encoder's q(z|u_k) at K learned "
        "pseudo-inputs, mixed uniformly; uses the model's encoder",
    )


@zoo.hookimpl
def register_objectives(register):
    register(
        "cyclical-elbo",
        "zoo_mlp.objectives:CyclicalELBO",
        description="Negative ELBO with a cyclical KL weight (Fu et al. 2019); options period, ratio",
    )


_TRAINING = zoo.Training(epochs=100, batch_size=100, lr=1e-3, optimizer="adam")


@zoo.hookimpl
def register_recipes(register):
    register(
        zoo.Recipe(
            id="vae-mlp-mnist",
            description="Kingma & Welling's MLP VAE on MNIST: 500 hidden units, N(0, I) prior, Bernoulli likelihood",
            encoder="mlp",
            decoder="mlp",
            prior="standard-normal",  # provided by zoo's reference plugin
            likelihood="bernoulli",  # likewise: reused by id
            dataset="mnist",
            latent_size=20,
            training=_TRAINING,
        )
    )
    register(
        zoo.Recipe(
            id="vae-mlp-vamp-mnist",
            description="vae-mlp-mnist with a VampPrior (500 pseudo-inputs), trained with a cyclical KL weight",
            encoder="mlp",
            decoder="mlp",
            prior="mini-vamp",
            prior_options={"pseudo_inputs": 500},
            likelihood="bernoulli",
            dataset="mnist",
            latent_size=20,
            objective="cyclical-elbo",  # zoo's own objectives are elbo, iwae, ...: `zoo list --kind objective`
            objective_options={"period": 15000, "ratio": 0.5},  # 4 cycles in 100 epochs of 600 steps
            training=_TRAINING,
        )
    )
