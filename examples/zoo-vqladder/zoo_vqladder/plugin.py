"""The hook implementations zoo calls when it loads the ``vqladder`` entry point."""

import zoo


@zoo.hookimpl
def register_encoders(register):
    register(
        "mini-vq",
        "zoo_vqladder.vq:QuantisedMLPEncoder",
        description="MLP to vectors quantised by a learned codebook (its losses added with add_loss): "
        "a Gaussian q(z|x) around the code",
    )
    register(
        "ladder",
        "zoo_vqladder.ladder:LadderEncoder",
        description="Ladder VAE encoder (Sønderby et al. 2016), two layers: bottom-up estimates combined with "
        "the top-down p(z1|z2); needs the ladder prior",
    )


@zoo.hookimpl
def register_priors(register):
    register(
        "ladder",
        "zoo_vqladder.ladder:LadderPrior",
        description="Ladder VAE prior: N(0, I) on z2 and the ladder encoder's top-down p(z1|z2)",
    )


_TRAINING = zoo.Training(epochs=100, batch_size=100, lr=1e-3, optimizer="adam")


@zoo.hookimpl
def register_recipes(register):
    register(
        zoo.Recipe(
            id="vq-mlp-mnist",
            description="A quantised MLP encoder (8 codes of 4 from a codebook of 64) with the reference MLP decoder",
            encoder="mini-vq",
            decoder="aevb-mlp",  # the reference plugin's networks, reused by id
            prior="standard-normal",
            likelihood="bernoulli",
            dataset="mnist",
            latent_size=32,
            training=_TRAINING,
        )
    )
    register(
        zoo.Recipe(
            id="ladder-vae-mnist",
            description="A two-layer ladder VAE: 32 latents in z1, 16 in z2, the reference MLP decoder on both",
            encoder="ladder",
            encoder_options={"top": 16},
            decoder="aevb-mlp",
            prior="ladder",  # the encoder's declared partner: any other prior is refused
            likelihood="bernoulli",
            dataset="mnist",
            latent_size=48,
            training=_TRAINING,
        )
    )
