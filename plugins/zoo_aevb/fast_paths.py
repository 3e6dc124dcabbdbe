"""Faster CPU passes for the seed's model: its conv layers that touch a few-channel image, and the
Bernoulli log-likelihood of its logits.

oneDNN is slow on the convolutions next to a 1-channel image: the decoder's last transposed conv
(16 -> 1 channel) takes ~1.3-2.2 ms forward for a batch of 100 at 28x28, and the weight gradient of
the encoder's first conv (1 -> 16) ~0.8 ms. Computed as below they take ~0.6 ms and ~0.16 ms
(docs/benchmarks.md); every other pass stays oneDNN's. CPU, fp32, eager only: under autocast,
torch.compile or on a GPU the layers run as they are. Each pass states what it assumes
(:func:`transposed_fast_path_fits`, :func:`conv_fast_path_fits`); the networks call it only where
that holds, on any image size.

The Bernoulli log-likelihood (:class:`LogBernoulli`) avoids torch's ``log1p``, whose AVX-512 kernel
takes ~1 ms for a batch of 100 MNIST images, several times its ``exp`` and ``log`` together
(bench/PERF_NOTES.md); its value is within 1e-6 of torch's per pixel and its gradient is the same.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli


def cpu_fast_path(x: Tensor, layer: nn.Module | None = None) -> bool:
    """Whether the CPU passes apply: fp32 on the CPU, eager, no autocast."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and (layer is None or layer.weight.dtype == torch.float32)
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
    )


def stride2_transposed(h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
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


class StrideTwoTransposedConv(torch.autograd.Function):
    """Forward by :func:`stride2_transposed`; backward by the layer's own (oneDNN) gradient."""

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(h, weight)
        ctx.has_bias = bias is not None
        return stride2_transposed(h, weight, bias)

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


class SingleChannelConv(torch.autograd.Function):
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


def transposed_fast_path_fits(layer: nn.ConvTranspose2d) -> bool:
    """Whether :class:`StrideTwoTransposedConv` computes ``layer``: a 3x3, stride-2 transposed conv
    with padding 1 and output padding 1 in both dimensions (its output is exactly twice its input),
    at most 3 output channels (where it is faster), no groups or dilation."""
    return (
        layer.kernel_size == (3, 3)
        and layer.stride == (2, 2)
        and layer.padding == (1, 1)
        and layer.output_padding == (1, 1)
        and layer.dilation == (1, 1)
        and layer.groups == 1
        and layer.out_channels <= 3
    )


def conv_fast_path_fits(layer: nn.Conv2d) -> bool:
    """Whether :class:`SingleChannelConv` computes ``layer``: a conv from one input channel,
    without groups or dilation (any kernel, stride, padding and image size)."""
    return layer.in_channels == 1 and layer.groups == 1 and layer.dilation == (1, 1) and layer.padding_mode == "zeros"


class BernoulliLogProb(torch.autograd.Function):
    """log p(value | logits) of a Bernoulli, ``value * l - max(l, 0) - log(1 + exp(-|l|))``, by
    ``exp`` and ``log`` (``1 + exp(-|l|)`` lies in [1, 2], where ``log`` loses nothing that matters:
    at most ~1e-7 per pixel). Its gradient is ``value - sigmoid(l)`` for the logits and ``l`` for the
    value, computed with differentiable ops, so a second derivative (HVAE's) goes through too."""

    @staticmethod
    def forward(ctx, logits: Tensor, value: Tensor) -> Tensor:
        ctx.save_for_backward(logits, value)
        tail = torch.exp(-logits.abs()).add_(1).log_()
        return (value * logits).sub_(logits.clamp(min=0)).sub_(tail)

    @staticmethod
    def backward(ctx, grad: Tensor):
        logits, value = ctx.saved_tensors
        grad_logits = grad_value = None
        if ctx.needs_input_grad[0]:
            grad_logits = ((value - torch.sigmoid(logits)) * grad).sum_to_size(logits.shape)
        if ctx.needs_input_grad[1]:
            grad_value = (grad * logits).sum_to_size(value.shape)
        return grad_logits, grad_value


class LogBernoulli(Bernoulli):
    """torch's ``Bernoulli`` (made from logits) whose ``log_prob`` goes through
    :class:`BernoulliLogProb` for fp32 values on the CPU; everything else is torch's own."""

    def log_prob(self, value: Tensor) -> Tensor:
        if not (cpu_fast_path(value) and "logits" in self.__dict__ and self.logits.dtype == torch.float32):
            return super().log_prob(value)
        if self._validate_args:
            self._validate_sample(value)
        return BernoulliLogProb.apply(self.logits, value)
