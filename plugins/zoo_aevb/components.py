"""Components of the reference plugin, built on zoo's public interfaces and torch.distributions."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import (
    Bernoulli,
    Categorical,
    ContinuousBernoulli,
    Independent,
    MixtureSameFamily,
    Normal,
)

import zoo


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise zoo.ZooError(f"{name} must be a positive integer (got {value!r})")
    return value


def _downsampled(size: int) -> int:
    """Spatial size after two 3x3, stride-2, padding-1 convolutions."""
    for _ in range(2):
        size = (size - 1) // 2 + 1
    return size


class ConvEncoder(zoo.Encoder):
    """The seed's encoder: two stride-2 convs then one conv covering the remaining map.

    The output has ``2 * latent_size`` channels: the first half is the mean of q(z|x), the
    second half its log-variance.
    """

    def __init__(self, latent_size: int, data_shape: tuple[int, ...] = (1, 28, 28), channels: int = 16) -> None:
        super().__init__()
        _positive("channels", channels)
        self.latent_size = latent_size
        in_channels, height, width = data_shape
        h, w = _downsampled(height), _downsampled(width)
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * channels, 2 * latent_size, (h, w)),
        )

    def forward(self, x: Tensor) -> Independent:
        first = self.net[0]
        if first.in_channels == 1 and _cpu_fast_path(x, first):
            h = _SingleChannelConv.apply(x, first.weight, first.bias, first.stride, first.padding)
        else:
            h = first(x)
        h = self.net[1:-1](h)
        # The last conv covers the whole feature map, so it is a matrix product; computing it as
        # one (with the conv's own weights) is ~1.2x faster on CPU than the convolution path.
        # Both are flattened height, width, channel: for a channels-last map that is a view, and the
        # gradient flowing back is channels-last too, like the ReLU it meets (mixed layouts there
        # make the ReLU's backward ~10x slower).
        last = self.net[-1]
        weight = last.weight.permute(0, 2, 3, 1).reshape(last.out_channels, -1)
        out = nn.functional.linear(h.permute(0, 2, 3, 1).reshape(h.shape[0], -1), weight, last.bias)
        mean, log_var = out.chunk(2, dim=1)
        return zoo.diagonal_gaussian(mean, log_var)  # in fp32 under mixed precision: the KL term stays exact


class ConvDecoder(zoo.Decoder):
    """The seed's decoder: a transposed conv to a 7x7 map, then two stride-2 transposed convs.

    Produces ``output_shape`` (asked of the likelihood): one logit per pixel for a Bernoulli.
    """

    def __init__(self, latent_size: int, output_shape: tuple[int, ...] = (1, 28, 28), channels: int = 16) -> None:
        super().__init__()
        _positive("channels", channels)
        self.latent_size = latent_size
        self.output_shape = tuple(output_shape)
        out_channels, height, width = self.output_shape
        h, w = _downsampled(height), _downsampled(width)
        if (4 * h, 4 * w) != (height, width):
            raise zoo.ZooError(f"conv-mnist decoder needs height and width divisible by 4, got {height}x{width}")
        self.net = nn.Sequential(
            nn.ConvTranspose2d(latent_size, 2 * channels, (h, w)),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(2 * channels, channels, 3, stride=2, padding=1, output_padding=1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(channels, out_channels, 3, stride=2, padding=1, output_padding=1),
        )

    def decode(self, z: Tensor) -> Tensor:
        # The first transposed conv acts on a 1x1 map: a matrix product with its own weights,
        # produced directly in channels-last layout for the convolutions that follow.
        first = self.net[0]
        latent, channels, kh, kw = first.weight.shape
        weight = first.weight.permute(0, 2, 3, 1).reshape(latent, kh * kw * channels)
        h = (z.to(weight.dtype) @ weight).view(-1, kh, kw, channels).add(first.bias).permute(0, 3, 1, 2)
        # Not in place: an in-place ReLU on this permuted view sends its gradient back in the other
        # layout, and the ReLU's backward on mixed layouts is ~10x slower.
        h = nn.functional.relu(h)
        h = self.net[2:4](h)
        last = self.net[4]
        if last.out_channels <= 3 and _cpu_fast_path(h, last):
            return _StrideTwoTransposedConv.apply(h, last.weight, last.bias)
        return last(h)


# -- faster CPU paths for the seed's two single-channel layers ------------------------------------
# oneDNN is slow on the convolutions that touch the 1-channel image: the decoder's last transposed
# conv (16 -> 1 channel) takes ~1.3-2.2 ms forward for a batch of 100, and the weight gradient of
# the encoder's first conv (1 -> 16) ~0.8 ms. Computed as below they take ~0.6 ms and ~0.16 ms
# (docs/benchmarks.md); every other pass stays oneDNN's. CPU, fp32, eager only: under autocast,
# torch.compile or on a GPU the layers run as they are.


def _cpu_fast_path(x: Tensor, layer: nn.Module) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and layer.weight.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
    )


def _stride2_transposed(h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """A 3x3, stride-2 transposed conv with padding 1 and output padding 1, as one matrix product
    and the sums of its output's four phases.

    The product gives, for every input pixel, its contribution through each of the 9 kernel taps
    (one plane per output channel and tap). Output row 2m takes tap row 1 at input row m; row 2m+1
    takes tap row 2 at input row m and tap row 0 at input row m+1 (nothing past the edge); the same
    holds for columns. The result is laid out channel, batch, height, width (for one channel, that
    is the usual contiguous layout).
    """
    n, c_in, height, width = h.shape
    c_out = weight.shape[1]
    taps = weight.permute(1, 2, 3, 0).reshape(9 * c_out, c_in)
    k = (taps @ h.permute(0, 2, 3, 1).reshape(-1, c_in).t()).view(c_out, 3, 3, n, height, width)
    out = h.new_empty(c_out, n, height, 2, width, 2)
    even_even, even_odd = out[:, :, :, 0, :, 0], out[:, :, :, 0, :, 1]
    odd_even, odd_odd = out[:, :, :, 1, :, 0], out[:, :, :, 1, :, 1]
    even_even.copy_(k[:, 1, 1])
    even_odd.copy_(k[:, 1, 2])
    even_odd[..., :-1].add_(k[:, 1, 0, :, :, 1:])
    odd_even.copy_(k[:, 2, 1])
    odd_even[:, :, :-1].add_(k[:, 0, 1, :, 1:])
    odd_odd.copy_(k[:, 2, 2])
    odd_odd[..., :-1].add_(k[:, 2, 0, :, :, 1:])
    odd_odd[:, :, :-1].add_(k[:, 0, 2, :, 1:])
    odd_odd[:, :, :-1, :-1].add_(k[:, 0, 0, :, 1:, 1:])
    if bias is not None:
        out.add_(bias.view(-1, 1, 1, 1, 1, 1))
    return out.view(c_out, n, 2 * height, 2 * width).transpose(0, 1)


class _StrideTwoTransposedConv(torch.autograd.Function):
    """Forward by :func:`_stride2_transposed`; backward by the layer's own (oneDNN) gradient."""

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(h, weight)
        ctx.has_bias = bias is not None
        return _stride2_transposed(h, weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor):
        h, weight = ctx.saved_tensors
        wanted = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
        return torch.ops.aten.convolution_backward(
            grad,
            h,
            weight,
            [weight.shape[1]] if ctx.has_bias else None,
            [2, 2],
            [1, 1],
            [1, 1],
            True,
            [1, 1],
            1,
            wanted,
        )


class _SingleChannelConv(torch.autograd.Function):
    """A conv from a 1-channel input whose weight gradient is computed as the weight gradient of the
    transposed conv going the other way (the same sums, ~5x faster in oneDNN). The forward pass and
    the other gradients are the layer's own."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, stride, padding) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias, ctx.stride, ctx.padding = bias is not None, list(stride), list(padding)
        return nn.functional.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.stride, ctx.padding, [1, 1]
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, stride, padding, dilation, False, [0, 0], 1, [True, False, False]
            )[0]
        if ctx.needs_input_grad[1]:
            # The transposed conv from grad's shape to x's: which output padding gives x's size exactly.
            extra = [
                x.shape[d + 2] - ((grad.shape[d + 2] - 1) * stride[d] - 2 * padding[d] + weight.shape[d + 2])
                for d in range(2)
            ]
            grad_weight = torch.ops.aten.convolution_backward(
                x, grad, weight, None, stride, padding, dilation, True, extra, 1, [False, True, False]
            )[1]
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum((0, 2, 3))
        return grad_x, grad_weight, grad_bias, None, None


class StandardNormalPrior(zoo.Prior):
    """p(z) = N(0, I)."""

    def __init__(self, latent_size: int) -> None:
        super().__init__()
        self.latent_size = latent_size
        self.register_buffer("loc", torch.zeros(latent_size), persistent=False)
        self.register_buffer("scale", torch.ones(latent_size), persistent=False)

    def forward(self) -> Independent:
        return Independent(Normal(self.loc, self.scale, validate_args=False), 1, validate_args=False)


class MixtureOfGaussiansPrior(zoo.Prior):
    """A learnable mixture of ``components`` diagonal Gaussians. torch has no analytic KL for
    it, so the ELBO takes the Monte-Carlo path."""

    def __init__(self, latent_size: int, components: int = 10) -> None:
        super().__init__()
        _positive("components", components)
        self.latent_size = latent_size
        self.logits = nn.Parameter(torch.zeros(components))
        self.means = nn.Parameter(torch.randn(components, latent_size))
        self.log_scales = nn.Parameter(torch.zeros(components, latent_size))

    def forward(self) -> MixtureSameFamily:
        components = Independent(Normal(self.means, self.log_scales.exp(), validate_args=False), 1)
        return MixtureSameFamily(Categorical(logits=self.logits, validate_args=False), components, validate_args=False)


class BernoulliLikelihood(zoo.Likelihood):
    """Independent Bernoulli per pixel, parameterised by logits (stable under autocast)."""

    support = (0.0, 1.0)

    def __init__(self, data_shape: tuple[int, ...] = (1, 28, 28)) -> None:
        super().__init__()
        self.event_dims = len(data_shape)

    def forward(self, logits: Tensor) -> Independent:
        return Independent(Bernoulli(logits=logits.float(), validate_args=False), self.event_dims, validate_args=False)


class ContinuousBernoulliLikelihood(zoo.Likelihood):
    """Continuous Bernoulli per pixel: the normalised density for data in [0, 1]."""

    support = (0.0, 1.0)

    def __init__(self, data_shape: tuple[int, ...] = (1, 28, 28)) -> None:
        super().__init__()
        self.event_dims = len(data_shape)

    def forward(self, logits: Tensor) -> Independent:
        dist = ContinuousBernoulli(logits=logits.float(), validate_args=False)
        return Independent(dist, self.event_dims, validate_args=False)


class GaussianLikelihood(zoo.Likelihood):
    """Independent Gaussian per pixel. ``variance='fixed'`` uses ``scale`` for every pixel;
    ``variance='learned'`` has the decoder output a log-scale per pixel too (twice the channels)."""

    def __init__(self, data_shape: tuple[int, ...] = (1, 28, 28), variance: str = "fixed", scale: float = 0.1) -> None:
        super().__init__()
        if variance not in ("fixed", "learned"):
            raise zoo.ZooError(f"gaussian variance must be 'fixed' or 'learned' (got {variance!r})")
        if scale <= 0:
            raise zoo.ZooError(f"gaussian scale must be positive (got {scale})")
        self.event_dims = len(data_shape)
        self.learned = variance == "learned"
        self.scale = scale

    def param_shape(self, data_shape):
        channels, *rest = data_shape
        return (2 * channels, *rest) if self.learned else tuple(data_shape)

    def forward(self, params: Tensor) -> Independent:
        params = params.float()
        if self.learned:
            channel_dim = params.ndim - self.event_dims
            mean, log_scale = params.chunk(2, dim=channel_dim)
            scale = nn.functional.softplus(log_scale) + 1e-3
        else:
            mean, scale = params, torch.full_like(params, self.scale)
        return Independent(Normal(mean, scale, validate_args=False), self.event_dims, validate_args=False)
