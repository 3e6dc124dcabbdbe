"""The regularized autoencoders of Ghosh et al. 2020 ("From Variational to Deterministic
Autoencoders", ICLR 2020): L = L_REC + beta * L_Z + lambda * L_REG, with the weights named as
pythae names them (``embedding_weight`` = beta, ``reg_weight`` = lambda), and

* ``L_REC`` = -log p(x|z) at the code z (nats per example; with a Gaussian likelihood of fixed
  variance 1/2 it is the paper's summed squared error plus a constant; the recipes use the
  Bernoulli, pythae's ``reconstruction_loss="bce"``),
* ``L_Z`` = ||z||^2 / 2, which keeps the codes' space small and smooth for an ex-post density,
* ``L_REG``, a regulariser of the decoder: the squared L2 norm of its weights (:class:`RAEL2`) or
  a gradient penalty on it (:class:`RAEGP`).

Neither asks q(z|x) for a density (``needs_density = False``): both train deterministic encoders.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

import zoo


def _weight(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise zoo.ZooError(f"{name} must be a finite number >= 0 (got {value!r})")
    return float(value)


def _reconstruction(model: nn.Module, x: Tensor):
    """The code z, p(x|z) and -log p(x|z) per example."""
    z = model.encoder(x).rsample()
    p_x = model.likelihood(model.decoder(z))
    return z, p_x, -p_x.log_prob(x)


def decoder_weights_l2(decoder: nn.Module) -> Tensor:
    """Sum of the squares of the decoder's weights: its parameters of two or more dimensions (the
    kernels and matrices; biases are left alone, as the authors' kernel regulariser does)."""
    weights = [p for p in decoder.parameters() if p.dim() > 1]
    if not weights:
        raise zoo.ZooError(f"decoder {type(decoder).__name__} has no weights to regularise; use the 'ae' objective")
    return torch.stack([p.float().square().sum() for p in weights]).sum()


class RAEL2(zoo.Objective):
    """RAE-L2 (Ghosh et al. 2020): -log p(x|z) + ``embedding_weight`` ||z||^2 / 2 + ``reg_weight``
    ||theta_decoder||^2.

    ``embedding_weight`` (the paper's beta) weighs the codes' squared norm and ``reg_weight`` (its
    lambda) the squared L2 norm of the decoder's weights (the only part of the model regularised
    this way; the encoder is not). The defaults are the authors' MNIST settings, which are pythae's
    RAE_L2 defaults too (1e-4 and 1e-7; pythae applies the second as the decoder optimizer's weight
    decay, whose gradient is the same up to the factor 2 of d||theta||^2/dtheta).
    Logs ``recon``, ``embedding`` (the mean ||z||^2 / 2) and ``decoder_l2``.
    """

    needs_density = False

    def __init__(self, embedding_weight: float = 1e-4, reg_weight: float = 1e-7) -> None:
        super().__init__()
        self.embedding_weight = _weight("embedding_weight", embedding_weight)
        self.reg_weight = _weight("reg_weight", reg_weight)

    def forward(self, model: nn.Module, x: Tensor) -> zoo.ObjectiveOutput:
        z, _, recon = _reconstruction(model, x)
        embedding = 0.5 * z.float().square().sum(-1).mean()
        l2 = decoder_weights_l2(model.decoder)
        loss = recon.mean() + self.embedding_weight * embedding + self.reg_weight * l2
        logs = {"recon": recon.mean().detach(), "embedding": embedding.detach(), "decoder_l2": l2.detach()}
        return zoo.ObjectiveOutput(loss, logs)

    def extra_repr(self) -> str:
        return f"embedding_weight={self.embedding_weight}, reg_weight={self.reg_weight}"


def decoder_gradient_penalty(model: nn.Module, z: Tensor, p_x, projections: int) -> Tensor:
    """||d mean(p(x|z)) / dz||_F^2 per example [B]: the squared Frobenius norm of the Jacobian of
    the decoded image (the likelihood's mean) with respect to the code.

    Estimated without bias from ``projections`` random directions v ~ N(0, I) in image space,
    E ||v^T J||^2 = ||J||_F^2, each one backward pass with ``create_graph`` (double backprop), so
    the penalty's own gradient reaches the decoder and the encoder.
    """
    if not z.requires_grad:  # outside training (no_grad): the value alone, computed on a fresh graph
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            p_x = model.likelihood(model.decoder(z))
            return decoder_gradient_penalty(model, z, p_x, projections).detach()
    mean = p_x.mean
    total = None
    for _ in range(projections):
        v = torch.randn_like(mean)
        (grad,) = torch.autograd.grad((mean * v).sum(), z, create_graph=True)
        part = grad.float().square().sum(-1)
        total = part if total is None else total + part
    return total / projections


class RAEGP(zoo.Objective):
    """RAE-GP (Ghosh et al. 2020): -log p(x|z) + ``embedding_weight`` ||z||^2 / 2 + ``reg_weight``
    ||dD(z)/dz||^2.

    The gradient penalty is the squared Frobenius norm of the Jacobian of the decoded image (the
    likelihood's mean) with respect to the code, estimated from ``projections`` random projections
    (:func:`decoder_gradient_penalty`; one extra backward pass each, double backprop). The authors'
    code penalises the gradient of ||D(z)||^2 instead and pythae's the gradient of the summed
    reconstruction with respect to x; all three smooth the decoder around the codes.
    Defaults: the authors' MNIST settings (embedding_weight 1e-4, reg_weight 0.5e-7, the
    gradient penalty's weight; pythae's RAE_GP defaults are 1e-4 and 1e-7). Logs ``recon``, ``embedding`` and ``gradient_penalty``.

    Not replayed from a CUDA graph (``cuda_graph_safe = False``): the double backward runs eagerly.
    """

    needs_density = False
    cuda_graph_safe = False

    def __init__(self, embedding_weight: float = 1e-4, reg_weight: float = 0.5e-7, projections: int = 1) -> None:
        super().__init__()
        self.embedding_weight = _weight("embedding_weight", embedding_weight)
        self.reg_weight = _weight("reg_weight", reg_weight)
        if isinstance(projections, bool) or not isinstance(projections, int) or projections < 1:
            raise zoo.ZooError(f"projections must be a positive integer (got {projections!r})")
        self.projections = projections

    def forward(self, model: nn.Module, x: Tensor) -> zoo.ObjectiveOutput:
        z, p_x, recon = _reconstruction(model, x)
        embedding = 0.5 * z.float().square().sum(-1).mean()
        penalty = decoder_gradient_penalty(model, z, p_x, self.projections).mean()
        loss = recon.mean() + self.embedding_weight * embedding + self.reg_weight * penalty
        logs = {"recon": recon.mean().detach(), "embedding": embedding.detach(), "gradient_penalty": penalty.detach()}
        return zoo.ObjectiveOutput(loss, logs)

    def extra_repr(self) -> str:
        return f"embedding_weight={self.embedding_weight}, reg_weight={self.reg_weight}, projections={self.projections}"
