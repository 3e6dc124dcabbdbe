"""The discriminators the adversarial objectives train against the model.

Both are the objective's own submodules, built before the objective has seen any data: their
first layer is lazy (``nn.LazyLinear`` / ``nn.LazyConv2d``) and takes its input size (the latent
size, the image's channels) from the first batch, so one objective serves a model of any latent
size and data shape. The parameter objects exist from the start, so the optimizer declared in
``Objective.updates()`` holds them, and a checkpoint loaded into a fresh objective fills them in.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

import zoo


def unsized_as_none(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    """A state-dict post-hook: a lazy layer's parameter not yet sized by a first batch is stored
    as ``None``, which has no shape to compare, instead of a tensor whose shape cannot be read. A
    checkpoint loaded into a fresh objective then sizes the layer from the stored tensor."""
    for name, value in state_dict.items():
        if isinstance(value, (nn.parameter.UninitializedParameter, nn.parameter.UninitializedBuffer)):
            state_dict[name] = None


def positive_int(owner: str, name: str, value: object) -> int:
    """``value`` as an int of at least 1, else a one-line ``ZooError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise zoo.ZooError(f"{owner}: {name} must be a whole number of at least 1 (got {value!r})")
    return value


def non_negative(owner: str, name: str, value: object, *, positive: bool = False) -> float:
    """``value`` as a finite float at least 0 (above 0 when ``positive``), else a one-line ``ZooError``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and float(value) == float(value)
    if ok:
        ok = float(value) > 0 if positive else float(value) >= 0
    if not ok or abs(float(value)) == float("inf"):
        least = "above 0" if positive else "at least 0"
        raise zoo.ZooError(f"{owner}: {name} must be a finite number {least} (got {value!r})")
    return float(value)


class CodeDiscriminator(nn.Module):
    """An MLP on latent codes, z -> one logit (prior sample vs encoder code): ``layers`` hidden
    layers of ``hidden`` ReLU units (pythae's default AAE discriminator is one layer of 256)."""

    def __init__(self, hidden: int = 256, layers: int = 1) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.LazyLinear(hidden), nn.ReLU()]
        for _ in range(layers - 1):
            blocks += [nn.Linear(hidden, hidden), nn.ReLU()]
        blocks.append(nn.Linear(hidden, 1))
        self.net = nn.Sequential(*blocks)

    def forward(self, z: Tensor) -> Tensor:
        """Logits ``[N]`` that ``z`` (``[N, L]``) was drawn from the prior."""
        return self.net(z).squeeze(-1)


class ImageDiscriminator(nn.Module):
    """A conv net on images of any shape, x -> (features of conv layer ``layer``, one logit).

    Three 3x3 stride-2 convs (``channels``, doubling at each; a side of n becomes ceil(n/2), so any
    side of at least 1 pixel works: 28 -> 14 -> 7 -> 4), LeakyReLU(0.2) after each, then a dense
    layer of 256 units and the logit. No batch normalisation: real and generated images go through
    it in separate batches. The features of conv layer ``layer`` (1 to 3) are the learned
    similarity of Larsen et al. (their Dis_l).
    """

    depth = 3

    def __init__(self, channels: int = 16, layer: int = 3, hidden: int = 256) -> None:
        super().__init__()
        self.layer = layer
        widths = [channels * 2**i for i in range(self.depth)]
        self.convs = nn.ModuleList(
            [nn.LazyConv2d(widths[0], 3, stride=2, padding=1)]
            + [nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(widths, widths[1:])]
        )
        self.head = nn.Sequential(nn.Flatten(), nn.LazyLinear(hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``[N, C, H, W]`` -> (features of layer ``layer``, flattened ``[N, F]``; logits ``[N]``)."""
        h = x
        features = None
        for i, conv in enumerate(self.convs, start=1):
            h = nn.functional.leaky_relu(conv(h), 0.2)
            if i == self.layer:
                features = h.flatten(1)
        return features, self.head(h).squeeze(-1)


def scale_gradient(t: Tensor, factor: float) -> Tensor:
    """``t`` unchanged in the forward pass, its gradient multiplied by ``factor`` on the way back."""
    return _ScaleGradient.apply(t, factor)


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t: Tensor, factor: float) -> Tensor:  # noqa: D102
        ctx.factor = factor
        return t.view_as(t)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # noqa: D102
        return grad * ctx.factor, None
