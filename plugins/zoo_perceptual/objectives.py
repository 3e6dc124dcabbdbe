"""MSSSIM-VAE (Snell et al. 2017): the VAE with its reconstruction term replaced by the multi-scale
structural dissimilarity 1 - MS-SSIM between an image and the likelihood's mean at z ~ q(z|x),
computed by torchmetrics."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import kl_divergence
from torch.overrides import TorchFunctionMode
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as ms_ssim

import zoo

# Wang, Simoncelli & Bovik's (2003) exponents of the five scales, finest first (torchmetrics' default).
WANG_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def smallest_side(scales: int, kernel_size: int) -> int:
    """The smallest image side MS-SSIM takes with ``scales`` scales and windows of ``kernel_size``.

    torchmetrics halves the image ``scales - 1`` times (average pooling, rounding down) and asks for
    a side of at least 2^scales and of at least ``kernel_size x (scales - 1)^2``; its reflection
    padding needs the coarsest image to be wider than half a window.
    """
    return max(2**scales, kernel_size * max(1, scales - 1) ** 2, (kernel_size + 1) // 2 * 2 ** (scales - 1))


def window_sigma(kernel_size: int) -> float:
    """The Gaussian's standard deviation whose window is ``kernel_size`` pixels: torchmetrics cuts its
    Gaussian at 3.5 sigma (a window of ``int(3.5 sigma + 0.5) * 2 + 1`` pixels, whatever its
    ``kernel_size``), so sigma is (kernel_size - 1) / 7 (1.43 for 11 pixels, near Wang et al.'s 1.5)."""
    return (kernel_size - 1) / 7


class MSSSIMVAE(zoo.Objective):
    """beta x KL(q(z|x) || p(z)) + scale x (1 - MS-SSIM(x, x~)), averaged over the batch, with x~
    the likelihood's mean at one z ~ q(z|x) (pythae's form: its MS-SSIM loss plus beta x KL).

    MS-SSIM compares local means, contrasts and structures in Gaussian windows of ``kernel_size``
    pixels (sigma (kernel_size - 1) / 7, :func:`window_sigma`) at ``scales`` scales, halving the
    image between them; the exponent of each scale is Wang et al.'s for the ``scales`` finest,
    renormalised to sum to 1. The defaults fit 28x28 images: 3 scales see 28, 14 and 7 pixels, and
    a 7-pixel window fits the coarsest (the standard 11-pixel window over 5 scales needs images of
    at least 176 pixels). Smaller images need fewer scales or a smaller window: the loss says
    which, in one line (:func:`smallest_side`). Each scale's
    similarity is mapped into [0, 1] as (s + 1) / 2 before the product (pythae's normalisation,
    torchmetrics' ``normalize="simple"``), so the term lies in [0, 1] and is 0 for identical images.

    ``scale`` weighs that term against the KL in nats (pythae's form is ``scale=1``); the
    likelihood's own density is not trained, only its mean, and ``data_range`` is the width of the
    likelihood's support (1 for images in [0, 1]).
    """

    def __init__(self, beta: float = 1.0, scale: float = 1.0, scales: int = 3, kernel_size: int = 7) -> None:
        super().__init__()
        what = "objective 'msssim-vae'"
        for name, value, positive in (("beta", beta, False), ("scale", scale, True)):
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or not (value > 0 if positive else value >= 0) or value == float("inf"):
                least = "above 0" if positive else "at least 0"
                raise zoo.ZooError(f"{what}: {name} must be a finite number {least} (got {value!r})")
        if isinstance(scales, bool) or not isinstance(scales, int) or not 1 <= scales <= len(WANG_BETAS):
            raise zoo.ZooError(f"{what}: scales must be a whole number from 1 to {len(WANG_BETAS)} (got {scales!r})")
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise zoo.ZooError(f"{what}: kernel_size must be an odd whole number of at least 1 (got {kernel_size!r})")
        self.beta, self.scale = float(beta), float(scale)
        self.scales, self.kernel_size = scales, kernel_size
        total = sum(WANG_BETAS[:scales])
        self.betas = tuple(b / total for b in WANG_BETAS[:scales])

    def dissimilarity(self, x: Tensor, reconstruction: Tensor, data_range: float = 1.0) -> Tensor:
        """1 - MS-SSIM(x, reconstruction) per image, ``[B]``, in [0, 1]."""
        if x.dim() != 4:
            raise zoo.ZooError(
                f"objective 'msssim-vae' compares images [B, C, H, W] (got a batch of shape {tuple(x.shape)})"
            )
        side = smallest_side(self.scales, self.kernel_size)
        height, width = x.shape[-2:]
        if min(height, width) < side:
            raise zoo.ZooError(
                f"objective 'msssim-vae' with scales={self.scales} and kernel_size={self.kernel_size} needs images of "
                f"at least {side}x{side} pixels, got {height}x{width}; lower objective.scales or objective.kernel_size"
            )

        def measure(preds: Tensor, target: Tensor) -> Tensor:
            return ms_ssim(
                preds,
                target,
                kernel_size=self.kernel_size,
                sigma=window_sigma(self.kernel_size),
                betas=self.betas,
                data_range=data_range,
                reduction="none",
                normalize="simple",
            )

        preds, target = reconstruction.float(), x.float()
        if preds.device.type == "cpu":
            with DepthwiseOverBatch():
                return 1.0 - measure(preds, target)
        return 1.0 - measure(preds, target)

    def forward(self, model: nn.Module, x: Tensor) -> zoo.ObjectiveOutput:
        """The loss and its two terms."""
        q = model.encoder(x)
        z = q.rsample()
        p = model.prior()
        try:
            kl = kl_divergence(q, p)
        except NotImplementedError:
            kl = q.log_prob(z) - p.log_prob(z)
        likelihood = model.likelihood(model.decoder(z))
        support = getattr(model.likelihood, "support", None)
        data_range = float(support[1] - support[0]) if support is not None else 1.0
        dissimilarity = self.dissimilarity(x, likelihood.mean, data_range)
        loss = (self.scale * dissimilarity + self.beta * kl).mean()
        logs = {"msssim_loss": dissimilarity.mean().detach(), "kl": kl.mean().detach()}
        return zoo.ObjectiveOutput(loss, logs)


_CONV2D_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")


class DepthwiseOverBatch(TorchFunctionMode):
    """Inside it, a depthwise ``conv2d`` (weight ``[C, 1, kh, kw]``, ``groups=C``: MS-SSIM's windows)
    runs as one grouped conv over the batch's images and channels, ``[1, N * C, H, W]`` with the
    weight repeated per image. The sums are the same; on the CPU, oneDNN's conv from a single
    channel takes ~75 ms for the forward and backward pass of 500 28x28 maps with a 7x7 window,
    the grouped form ~2 ms (bench/PERF_NOTES.md). Any other call runs as it is.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.conv2d:
            bound = dict(zip(_CONV2D_ARGS, args)) | kwargs
            x, weight, groups = bound.get("input"), bound.get("weight"), bound.get("groups", 1)
            if (
                isinstance(x, Tensor)
                and isinstance(weight, Tensor)
                and x.dim() == 4
                and weight.dim() == 4
                and weight.shape[1] == 1
                and groups == x.shape[1] == weight.shape[0]
            ):
                n, c, height, width = x.shape
                bias = bound.get("bias")
                out = func(
                    x.reshape(1, n * c, height, width),
                    weight.repeat(n, 1, 1, 1),
                    None if bias is None else bias.repeat(n),
                    bound.get("stride", 1),
                    bound.get("padding", 0),
                    bound.get("dilation", 1),
                    n * c,
                )
                return out.view(n, c, *out.shape[-2:])
        return func(*args, **kwargs)
