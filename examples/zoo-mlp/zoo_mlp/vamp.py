"""A prior that uses another component: the VampPrior of Tomczak & Welling (2018)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, MixtureSameFamily

import zoo


class VampPrior(zoo.Prior):
    """p(z) = (1/K) sum_k q(z | u_k): the encoder's posteriors at K learned pseudo-inputs u_k.

    The parameter named ``encoder`` asks zoo for the model's encoder: zoo builds it first and
    passes it in. The prior keeps it as an attribute, and zoo stores its weights once, under the
    model's ``encoder.*``, so the encoder trained on the data is the one the prior mixes.
    """

    def __init__(
        self, encoder: zoo.Encoder, latent_size: int, data_shape: tuple[int, ...], pseudo_inputs: int = 500
    ) -> None:
        super().__init__()
        if pseudo_inputs < 1:
            raise zoo.ZooError(f"pseudo_inputs must be at least 1 (got {pseudo_inputs})")
        self.latent_size = latent_size
        self.encoder = encoder
        # Learned in an unconstrained space; a sigmoid keeps the pseudo-inputs in the data's [0, 1].
        self.pseudo_logits = nn.Parameter(0.01 * torch.randn(pseudo_inputs, *data_shape))

    def pseudo_inputs(self) -> Tensor:
        return torch.sigmoid(self.pseudo_logits)

    def forward(self) -> MixtureSameFamily:
        q = self.encoder(self.pseudo_inputs())  # batch shape [K], event shape [latent_size]
        uniform = Categorical(logits=torch.zeros(q.batch_shape, device=self.pseudo_logits.device))
        return MixtureSameFamily(uniform, q)
