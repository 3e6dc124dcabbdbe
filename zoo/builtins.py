"""zoo's own objectives, registered through the same hook a third-party plugin uses.

Factories are lazy ``"module:attribute"`` strings, so listing them does not import torch.
"""

from zoo.hookspecs import hookimpl

_O = "zoo.objectives"


@hookimpl
def register_objectives(register):
    register(
        "elbo",
        f"{_O}:ELBO",
        description="Negative ELBO; options beta, warmup (linear KL warm-up, steps), free_bits (nats per dim)",
    )
    register(
        "iwae",
        f"{_O}:IWAE",
        description="Importance-weighted bound (Burda et al. 2015); options samples, dreg (Tucker et al. 2018)",
    )
    register(
        "miwae",
        f"{_O}:MIWAE",
        description="Mean of M IWAE bounds of K samples (Rainforth et al. 2018); options estimates, samples",
    )
    register(
        "piwae",
        f"{_O}:PIWAE",
        description="Encoder on MIWAE(M, K), decoder and prior on IWAE(M x K) (Rainforth et al. 2018)",
    )
    register(
        "ciwae",
        f"{_O}:CIWAE",
        description="beta x ELBO + (1 - beta) x IWAE on the same samples (Rainforth et al. 2018)",
    )
    register(
        "ae",
        f"{_O}:AE",
        description="Autoencoder: -log p(x|z) at the code z; for deterministic encoders (needs no density)",
    )
