"""Estimates over a data set: the importance-weighted estimate of log p(x) (Burda et al. 2015),
with its log importance weights, and the test-set ELBO the trainer reports each epoch.

:func:`iw_log_weights` is the one place zoo writes log w = log p(x|z) + log p(z) - log q(z|x):
the :class:`zoo.VAE` (:meth:`~zoo.VAE.iwae`, :meth:`~zoo.VAE.iw_terms`), the importance-weighted
objectives and :func:`importance_weighted` all use it. :func:`importance_weighted` encodes each batch of images once and decodes ``decode_batch``
(images x draws) decoded images at a time in inference mode (channels-last on CUDA), so memory
stays bounded whatever the number of draws K; the log-sum-exp of the weights is accumulated chunk
by chunk in float64. From the same draws it also returns the ELBO, its reconstruction and KL
terms, and the posterior means.

A deterministic encoder (:attr:`zoo.VAE.deterministic`) has no log q(z|x), so no importance weights:
:func:`reconstruction_scores` and :func:`test_reconstruction` score such a model by -log p(x|z) at
its code, and every model by the squared error of its reconstructions.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from zoo.allocator import keep_freed_memory
from zoo.errors import ZooError

# -- the log importance weights --------------------------------------------------------------


class LogWeights(NamedTuple):
    """The log importance weights of draws z_k ~ q(z|x), by their three terms, each [K, B]."""

    log_px_z: Tensor  # log p(x | z_k)
    log_pz: Tensor  # log p(z_k)
    log_qz: Tensor  # log q(z_k | x)

    @property
    def log_w(self) -> Tensor:
        """log w_k = log p(x | z_k) + log p(z_k) - log q(z_k | x)."""
        return self.log_px_z + self.log_pz - self.log_qz

    @property
    def log_ratio(self) -> Tensor:
        """log q(z_k | x) - log p(z_k), whose mean over the draws estimates the KL term."""
        return self.log_qz - self.log_pz


def detached_call(module: nn.Module, *args):
    """``module(*args)`` computed with the module's parameters detached (gradients still reach ``args``)."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    return torch.func.functional_call(module, params, args)


def iw_log_weights(model, x: Tensor, q, z: Tensor, *, prior=None, detach: str | None = None) -> LogWeights:
    """The log importance weights of draws ``z`` [K, B, L] from ``q`` = q(z|x), for a batch ``x`` [B, *D].

    ``prior`` is p(z) when the caller has built it already (``model.prior()`` otherwise).
    ``detach`` holds one side's parameters fixed while gradients still flow through ``z``:
    ``"encoder"`` evaluates log q with the encoder's parameters detached (DReG, Tucker et al.
    2018); ``"generative"`` runs the decoder, likelihood and prior with theirs detached (PIWAE's
    inference side).
    """
    if detach not in (None, "encoder", "generative"):
        raise ValueError(f"detach must be None, 'encoder' or 'generative' (got {detach!r})")
    if detach == "encoder":
        q = detached_call(model.encoder, x)
    xs = x.expand(len(z), *x.shape)
    if detach == "generative":
        log_px_z = detached_call(model.likelihood, detached_call(model.decoder, z)).log_prob(xs)
        prior = prior if prior is not None else detached_call(model.prior)
    else:
        log_px_z = model.likelihood(model.decoder(z)).log_prob(xs)
        prior = prior if prior is not None else model.prior()
    return LogWeights(log_px_z, prior.log_prob(z), q.log_prob(z))


def iw_draws(model, x: Tensor, samples: int, chunk_size: int) -> Iterator[LogWeights]:
    """Encode ``x`` once and yield the log weights of ``samples`` draws per example, ``chunk_size``
    draws at a time ([k, B] each), so memory stays bounded however large ``samples`` is."""
    q = model.encoder(x)
    prior = model.prior()
    for start in range(0, samples, chunk_size):
        z = q.rsample((min(chunk_size, samples - start),))  # [k, B, L]
        yield iw_log_weights(model, x, q, z, prior=prior)


# -- the importance-weighted estimate --------------------------------------------------------


@dataclass
class IWEstimate:
    """Per-image results of :func:`importance_weighted` (nats, shape [N]; means [N, L])."""

    log_px: Tensor  # IW estimate of log p(x): log mean_k w_k
    elbo: Tensor  # mean_k log w_k, from the same draws
    recon: Tensor  # mean_k log p(x | z_k)
    kl: Tensor  # mean_k [log q(z_k | x) - log p(z_k)]
    posterior_mean: Tensor  # E_q[z | x]
    samples: int
    seconds: float

    @property
    def samples_per_second(self) -> float:
        return self.log_px.numel() * self.samples / self.seconds if self.seconds > 0 else float("nan")


def prepare_for_inference(model: nn.Module) -> nn.Module:
    """Eval mode, and channels-last weights on CUDA (cuDNN prefers NHWC).

    On CPU channels-last was measured slower for the reference decoder on an idle machine
    (22-26k against 35-42k samples/s), so weights stay contiguous there.
    """
    model.eval()
    device = next((t.device for t in model.parameters()), torch.device("cpu"))
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


def inference_input(x: Tensor) -> Tensor:
    """``x`` channels-last when it is a batch of images on CUDA, to match :func:`prepare_for_inference`."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 and x.is_cuda else x


def default_decode_batch(device: torch.device) -> int:
    """Decoded images per forward pass: large enough to keep the device busy, small enough for its caches.

    On CPU about 1000 decoded images per pass was fastest (activations stay in cache); 8192 was
    a third slower.
    """
    return 65536 if device.type == "cuda" else 1024


@torch.inference_mode()
def iw_batch(model, x: Tensor, samples: int, decode_batch: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """IW terms for one batch ``x`` [B, *D]: (log_px, elbo, recon, kl, posterior mean), each per image.

    ``x`` is encoded once for its K draws (:func:`iw_draws`), which are decoded
    ``decode_batch // B`` draws (of every image) at a time; the log-sum-exp of the weights is
    accumulated chunk by chunk, in float64.
    """
    if samples < 1:
        raise ZooError(f"the number of importance samples must be at least 1 (got {samples})")
    x = inference_input(x)
    model.check_input(x)
    chunk = max(1, min(samples, decode_batch // max(1, x.shape[0])))
    running = None
    sum_recon = torch.zeros(x.shape[0], device=x.device, dtype=torch.float64)
    sum_ratio = torch.zeros_like(sum_recon)
    for w in iw_draws(model, x, samples, chunk):
        part = torch.logsumexp(w.log_w.double(), dim=0)
        running = part if running is None else torch.logaddexp(running, part)
        sum_recon += w.log_px_z.double().sum(0)
        sum_ratio += w.log_ratio.double().sum(0)
    posterior_mean = model.encoder(x).mean.double()
    recon, kl = sum_recon / samples, sum_ratio / samples
    return running - math.log(samples), recon - kl, recon, kl, posterior_mean


def importance_weighted(
    model,
    batches: Iterable[Tensor],
    samples: int,
    *,
    decode_batch: int | None = None,
    total: int | None = None,
    progress: bool | None = False,
) -> IWEstimate:
    """The importance-weighted estimate of log p(x) with ``samples`` draws, over ``batches`` of images.

    Also returns, from the same draws, the ELBO, its reconstruction and KL terms and the
    posterior means. ``total`` (number of images) sizes the progress bar (tqdm, on stderr), shown
    when ``progress`` is True, or when it is None and stderr is a terminal. On the CPU it raises
    glibc's mmap and trim thresholds for the process (:mod:`zoo.allocator`): 1.2-1.6x faster there.
    """
    from tqdm.auto import tqdm

    if samples < 1:
        raise ZooError(f"the number of importance samples must be at least 1 (got {samples})")
    device = next((t.device for t in model.parameters()), torch.device("cpu"))
    if device.type == "cpu":
        keep_freed_memory()
    decode_batch = decode_batch or default_decode_batch(device)
    parts: list[tuple[Tensor, ...]] = []
    # disable=None: tqdm shows the bar only when stderr is a terminal.
    disable = not total or (None if progress is None else not progress)
    start = time.perf_counter()
    with tqdm(
        total=total,
        desc=f"IW estimate, K={samples}",
        unit="images",
        unit_scale=True,
        leave=False,
        file=sys.stderr,
        disable=disable,
    ) as bar:
        for x in batches:
            parts.append(tuple(t.cpu() for t in iw_batch(model, x.to(device), samples, decode_batch)))
            bar.update(x.shape[0])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    if not parts:
        raise ZooError("no images to evaluate")
    log_px, elbo, recon, kl, means = (torch.cat(p) for p in zip(*parts))
    return IWEstimate(log_px, elbo, recon, kl, means, samples, seconds)


def _test_means(batches, autocast, dist, sums_of: Callable[[Tensor], Tensor]) -> list[float]:
    """The per-image means of the sums ``sums_of(x)`` returns for each batch (a 1-d tensor of float32
    sums, computed under ``autocast()`` on the channels-last batch), over ``batches``. Sums and the
    image count stay on the device and, under torchrun (``dist``), are summed over the processes
    before dividing (shards may differ by an image)."""
    sums, count = None, 0
    for x in batches:
        x = x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
        with autocast():
            part = sums_of(x)
        sums = part if sums is None else sums + part
        count += x.shape[0]
    if sums is None:
        raise ZooError("no test images to evaluate")
    totals = torch.cat([sums, sums.new_tensor([count])])
    if dist.enabled:
        torch.distributed.all_reduce(totals)
    *values, count = totals.tolist()
    return [value / count for value in values]


@torch.no_grad()
def test_elbo(model, batches, autocast, dist) -> dict[str, float]:
    """The negative ELBO and its reconstruction and KL terms, nats per image, over ``batches``:
    ``test_loss``, ``test_recon``, ``test_kl`` (exact under torchrun). Not torchmetrics' MeanMetric:
    importing torchmetrics costs 3-4 s of start-up, a third of a GPU run's first epoch."""

    def sums_of(x: Tensor) -> Tensor:
        terms = model(x)
        return torch.stack([-terms.elbo.float().sum(), -terms.recon.float().sum(), terms.kl.float().sum()])

    loss, recon, kl = _test_means(batches, autocast, dist, sums_of)
    return {"test_loss": loss, "test_recon": recon, "test_kl": kl}


@torch.no_grad()
def test_reconstruction(model, batches, autocast, dist) -> dict[str, float]:
    """:func:`test_elbo` for a model with a deterministic encoder: -log p(x|z) at the code, nats per
    image, as both ``test_loss`` (what picks the best checkpoint) and ``test_recon``; no ``test_kl``."""
    (recon,) = _test_means(batches, autocast, dist, lambda x: model.reconstruction_nll(x).float().sum().reshape(1))
    return {"test_loss": recon, "test_recon": recon}


@dataclass
class ReconstructionScores:
    """Per-image results of :func:`reconstruction_scores` (shape [N]; means [N, L])."""

    recon: Tensor  # -log p(x | z), z the code (or one posterior draw of a stochastic encoder)
    squared_error: Tensor  # sum over the image of (x - reconstruction mean)^2, at the posterior mean
    posterior_mean: Tensor  # E_q[z | x], the code of a deterministic encoder
    seconds: float


@torch.inference_mode()
def reconstruction_scores(model, batches: Iterable[Tensor]) -> ReconstructionScores:
    """Reconstruction error over ``batches``: -log p(x|z) at z = q.rsample() and the squared error
    between each image and the likelihood's mean at the posterior mean (summed over the image)."""
    device = next((t.device for t in model.parameters()), torch.device("cpu"))
    parts: list[tuple[Tensor, Tensor, Tensor]] = []
    start = time.perf_counter()
    for x in batches:
        x = inference_input(x.to(device))
        model.check_input(x)
        q = model.encoder(x)
        recon = -model.likelihood(model.decoder(q.rsample())).log_prob(x)
        mean = q.mean
        error = (model.likelihood(model.decoder(mean)).mean.double() - x.double()).square().flatten(1).sum(1)
        parts.append((recon.double().cpu(), error.cpu(), mean.double().cpu()))
    if not parts:
        raise ZooError("no images to evaluate")
    recon, error, means = (torch.cat(p) for p in zip(*parts))
    return ReconstructionScores(recon, error, means, time.perf_counter() - start)
