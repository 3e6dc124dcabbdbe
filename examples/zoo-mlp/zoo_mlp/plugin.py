"""The hook implementations zoo calls when it loads the ``mlp`` entry point."""

import zoo


@zoo.hookimpl
def register_encoders(register):
    # A "module:attribute" string: zoo imports it (and torch) only when a model is built.
    register("mlp", "zoo_mlp.components:MLPEncoder",
             description="MLP, one hidden layer (500 tanh units): diagonal Gaussian q(z|x)")


@zoo.hookimpl
def register_decoders(register):
    register("mlp", "zoo_mlp.components:MLPDecoder",
             description="MLP, one hidden layer (500 tanh units) to the likelihood's parameters")


@zoo.hookimpl
def register_recipes(register):
    register(zoo.Recipe(
        id="vae-mlp-mnist",
        description="Kingma & Welling's MLP VAE on MNIST: 500 hidden units, N(0, I) prior, Bernoulli likelihood",
        encoder="mlp",
        decoder="mlp",
        prior="standard-normal",  # provided by zoo's reference plugin
        likelihood="bernoulli",  # likewise: reused by id
        dataset="mnist",
        latent_size=20,
        training=zoo.Training(epochs=100, batch_size=100, lr=1e-3, optimizer="adam"),
    ))
