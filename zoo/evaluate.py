"""Evaluation of a trained model on its test set, in the terms the literature uses.

:func:`evaluate` (the ``zoo eval`` command) reports, per test image and in nats:

``test_neg_elbo``
    The negative ELBO, estimated with the same K posterior draws as the IW estimate (the mean of
    the log importance weights), so ``test_nll_iw <= test_neg_elbo`` holds exactly.
``test_nll_iw``, ``test_nll_iw_stderr``
    The importance-weighted estimate of -log p(x) (Burda et al. 2015) with ``iw_samples`` draws
    from q(z|x) per image, and its standard error across the test images.
``bits_per_dim``
    ``test_nll_iw / (D ln 2)``, only where the likelihood is a distribution over a discrete set
    that the test data lie in (Bernoulli on binarized images); ``None`` otherwise, because a
    density value of grey levels is not a probability of them.
``active_units``
    Latent dimensions whose posterior mean varies across the test set: Cov_x(E_q[z_u]) > 0.01.
``fid``
    The Frechet distance between generated images (the likelihood's mean at prior draws) and
    test images, computed by torchmetrics in the feature space of a small classifier trained on
    the training set and cached (:func:`feature_network`), or Inception's when asked for.

The IW estimate is the expensive part: each test batch is encoded once, then ``decode_batch``
(images x draws) decoded images at a time are scored in inference mode, channels-last, so the
memory stays bounded whatever K is and the decoder runs on large batches.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from zoo.allocator import keep_freed_memory
from zoo.checkpoint import atomic_write, load_checkpoint, model_from_payload, resolve_checkpoint_path
from zoo.errors import ZooError

#: Burda et al.'s threshold on Cov_x(E_q[z_u]) for a latent unit to count as active.
ACTIVE_UNIT_THRESHOLD = 0.01
#: Bump when the feature classifier's architecture or training changes: old caches are retrained.
FEATURE_NET_VERSION = 1
FID_FEATURES = ("classifier", "inception")


# -- progress --------------------------------------------------------------------------------


class Progress:
    """A tqdm bar on a terminal, a plain line every 10% otherwise, nothing when disabled."""

    def __init__(self, total: int, desc: str, unit: str, enabled: bool | None = None) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.done = 0
        self.start = time.perf_counter()
        self.next_report = total / 10
        self.bar = None
        self.plain = False
        if enabled is False:
            return
        if sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, leave=False, file=sys.stderr)
        else:
            self.plain = True

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.plain and (self.done >= self.next_report or self.done >= self.total):
            elapsed = time.perf_counter() - self.start
            rate = self.done / elapsed if elapsed > 0 else float("nan")
            eta = (self.total - self.done) / rate if rate > 0 else float("nan")
            print(f"{self.desc}: {self.done}/{self.total} {self.unit} ({100 * self.done / self.total:.0f}%), "
                  f"{rate:,.0f} {self.unit}/s, {eta:.0f} s left", file=sys.stderr, flush=True)
            while self.next_report <= self.done:
                self.next_report += self.total / 10

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


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


def _as_input(x: Tensor) -> Tensor:
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

    ``x`` is encoded once for its K draws (:meth:`VAE.iw_terms`), which are decoded
    ``decode_batch // B`` draws (of every image) at a time; the log-sum-exp of the weights is
    accumulated chunk by chunk.
    """
    if samples < 1:
        raise ZooError(f"the number of importance samples must be at least 1 (got {samples})")
    x = _as_input(x)
    chunk = max(1, min(samples, decode_batch // max(1, x.shape[0])))
    running = None
    sum_recon = torch.zeros(x.shape[0], device=x.device, dtype=torch.float64)
    sum_ratio = torch.zeros_like(sum_recon)
    for log_px_z, log_ratio in model.iw_terms(x, samples, chunk):
        part = torch.logsumexp((log_px_z - log_ratio).double(), dim=0)
        running = part if running is None else torch.logaddexp(running, part)
        sum_recon += log_px_z.double().sum(0)
        sum_ratio += log_ratio.double().sum(0)
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
    posterior means. ``total`` (number of images) sizes the progress bar. On the CPU it raises
    glibc's mmap and trim thresholds for the process (:mod:`zoo.allocator`): 1.2-1.6x faster there.
    """
    if samples < 1:
        raise ZooError(f"the number of importance samples must be at least 1 (got {samples})")
    device = next((t.device for t in model.parameters()), torch.device("cpu"))
    if device.type == "cpu":
        keep_freed_memory()
    decode_batch = decode_batch or default_decode_batch(device)
    parts: list[tuple[Tensor, ...]] = []
    bar = Progress(total, f"IW estimate, K={samples}", "images", progress) if total else None
    start = time.perf_counter()
    try:
        for x in batches:
            parts.append(tuple(t.cpu() for t in iw_batch(model, x.to(device), samples, decode_batch)))
            if bar is not None:
                bar.update(x.shape[0])
    finally:
        if bar is not None:
            bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    if not parts:
        raise ZooError("no images to evaluate")
    log_px, elbo, recon, kl, means = (torch.cat(p) for p in zip(*parts))
    return IWEstimate(log_px, elbo, recon, kl, means, samples, seconds)


# -- the other metrics -------------------------------------------------------------------------


def bits_per_dim(nats: float, dims: int) -> float:
    """Nats per image -> bits per dimension: ``nats / (dims * ln 2)``."""
    return nats / (dims * math.log(2))


def standard_error(values: Tensor) -> float:
    """Standard error of the mean of ``values`` (sample standard deviation / sqrt(n)); 0 for one value."""
    n = values.numel()
    return float(values.double().std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0


def active_units(posterior_means: Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Latent dimensions u with Cov_x(E_q[z_u | x]) > ``threshold`` (Burda et al. 2015), over the rows of
    ``posterior_means`` [N, L]."""
    if posterior_means.shape[0] < 2:
        return 0
    return int((posterior_means.double().var(dim=0, unbiased=True) > threshold).sum())


@torch.inference_mode()
def likelihood_is_discrete(model, x: Tensor) -> bool:
    """Whether p(x|z) is a distribution over a discrete set that every image of ``x`` lies in.

    Only then is -log p(x) a code length and bits per dimension meaningful. The set is the
    likelihood's declared ``levels`` (evenly spaced over its ``support``, as the conformance kit
    reads them: the discretized logistics' 256 grey levels), else the ``support`` of the
    distribution it returns (a Bernoulli's ``boolean``).
    """
    values = model.likelihood.level_values()
    if values is not None:  # evenly spaced: x is on the grid when its step count is whole
        lo, hi = float(values[0]), float(values[-1])
        steps = (x.double() - lo) / (hi - lo) * (len(values) - 1)
        return bool(((x >= lo) & (x <= hi)).all() and ((steps - steps.round()).abs() < 1e-3).all())
    z = model.prior.sample(1).to(x.device)
    dist = model.likelihood(model.decoder(z))
    support = getattr(dist, "support", None)
    if support is None or not getattr(support, "is_discrete", False):
        return False
    try:
        return bool(support.check(x).all())
    except (RuntimeError, NotImplementedError):
        return False


# -- FID -------------------------------------------------------------------------------------


class FeatureClassifier(nn.Module):
    """A small convnet classifier; :meth:`features` (the penultimate layer) is FID's feature space."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16, num_features: int = 128) -> None:
        super().__init__()
        self.num_features = num_features
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(7),
            nn.Flatten(),
            nn.Linear(2 * width * 49, num_features),
            nn.ReLU(),
        )
        self.head = nn.Linear(num_features, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


class _Features(nn.Module):
    """What torchmetrics calls: images in [0, 1] -> the classifier's features."""

    def __init__(self, classifier: FeatureClassifier) -> None:
        super().__init__()
        self.classifier = classifier
        self.num_features = classifier.num_features

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier.features(x.float())


def _data_hash(images: Tensor, labels: Tensor) -> str:
    digest = hashlib.sha256()
    digest.update(str(tuple(images.shape)).encode())
    digest.update(images.contiguous().numpy().tobytes())
    digest.update(labels.contiguous().numpy().tobytes())
    return digest.hexdigest()


def train_feature_classifier(
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    *,
    num_classes: int,
    epochs: int = 1,
    seed: int = 0,
    batch_size: int = 128,
    lr: float = 2e-3,
) -> tuple[FeatureClassifier, dict[str, Any]]:
    """Train :class:`FeatureClassifier` on uint8 ``train`` images; returns it and how it was made."""
    images, labels = train
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FeatureClassifier(images.shape[1], num_classes)
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        order_gen = torch.Generator().manual_seed(seed)
        net.train()
        for _ in range(epochs):
            order = torch.randperm(len(images), generator=order_gen)
            for i in range(0, len(images), batch_size):
                idx = order[i : i + batch_size]
                loss = nn.functional.cross_entropy(net(images[idx].float() / 255), labels[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    net.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(test[0]), 1000):
            correct += int((net(test[0][i : i + 1000].float() / 255).argmax(1) == test[1][i : i + 1000]).sum())
    record = {
        "architecture": str(net),
        "num_features": net.num_features,
        "epochs": epochs,
        "seed": seed,
        "batch_size": batch_size,
        "optimizer": f"Adam(lr={lr})",
        "train_images": len(images),
        "test_images": len(test[0]),
        "test_accuracy": correct / max(1, len(test[0])),
        "train_seconds": round(time.perf_counter() - start, 2),
        "torch": torch.__version__,
    }
    return net, record


def feature_network(dataset, data_dir: str | os.PathLike | None = None, *, progress: bool | None = False,
                    cache: Path | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The FID feature extractor for ``dataset`` (a :class:`zoo.DatasetInfo`), and how it was made.

    A :class:`FeatureClassifier` trained for one epoch on the data set's training images (grey
    levels, whatever the model was trained on) and cached under the user cache dir, keyed by a
    hash of the training data, with a JSON record beside the weights. The first use trains it
    (seconds to a minute on a CPU); later uses load it.
    """
    from zoo.data import cache_dir

    train = dataset.load("train", data_dir)
    key = _data_hash(*train)
    folder = cache or cache_dir() / "fid"
    stem = f"classifier-v{FEATURE_NET_VERSION}-{key[:16]}"
    weights, info_path = folder / f"{stem}.pt", folder / f"{stem}.json"
    if weights.is_file() and info_path.is_file():
        try:
            record = json.loads(info_path.read_text())
            net = FeatureClassifier(train[0].shape[1], record["num_classes"], num_features=record["num_features"])
            net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            if record.get("data_sha256") == key:
                return _Features(net.eval()), record
        except Exception:  # noqa: BLE001 - any damaged or foreign cache entry is retrained below
            pass
    if progress is not False:
        print(f"training the FID feature classifier on {dataset.id} ({len(train[0])} images, 1 epoch); "
              f"cached in {folder}", file=sys.stderr, flush=True)
    net, record = train_feature_classifier(train, dataset.load("test", data_dir), num_classes=dataset.num_classes)
    record.update(dataset=dataset.id, num_classes=dataset.num_classes, data_sha256=key, version=FEATURE_NET_VERSION,
                  made_by="zoo.evaluate.train_feature_classifier")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(weights, lambda f: torch.save(net.state_dict(), f))
        atomic_write(info_path, lambda f: f.write(json.dumps(record, indent=2).encode()))
    except OSError as exc:
        print(f"warning: could not cache the FID classifier in {folder}: {exc}", file=sys.stderr)
    return _Features(net), record


def inception_features() -> nn.Module:
    """torchmetrics' Inception-v3 (2048 features); needs torch-fidelity and its weights."""
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        raise ZooError(
            "--fid-features inception needs torch-fidelity (pip install torch-fidelity); "
            "the default --fid-features classifier works offline"
        ) from None
    from torchmetrics.image.fid import NoTrainInceptionV3

    try:
        return NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"])
    except Exception as exc:  # noqa: BLE001 - typically: weights not downloadable offline
        raise ZooError(f"could not load the Inception weights ({type(exc).__name__}: {str(exc)[:200]}); "
                       "use --fid-features classifier offline") from None


class _InceptionInput(nn.Module):
    """Grey-level or colour images in [0, 1] -> the uint8 RGB Inception expects."""

    def __init__(self, inception: nn.Module) -> None:
        super().__init__()
        self.inception = inception
        self.num_features = 2048

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, *x.shape[2:])
        return self.inception((x.clamp(0, 1) * 255).to(torch.uint8))


@torch.no_grad()
def frechet_distance(real: Iterable[Tensor], fake: Iterable[Tensor], features: nn.Module,
                     device: torch.device | str = "cpu") -> float:
    """FID between two streams of image batches ([B, C, H, W] in [0, 1]) in the space of ``features``.

    Computed by :class:`torchmetrics.image.fid.FrechetInceptionDistance` with ``features`` as its
    feature extractor (a module with a ``num_features`` attribute).
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=features, normalize=True).to(device)
    for batch in real:
        metric.update(batch.to(device), real=True)
    for batch in fake:
        metric.update(batch.to(device), real=False)
    if int(metric.real_features_num_samples) < 2 or int(metric.fake_features_num_samples) < 2:
        raise ZooError("FID needs at least 2 real and 2 generated images")
    return float(metric.compute())


def _batched(images: Tensor, size: int) -> Iterator[Tensor]:
    for i in range(0, len(images), size):
        yield images[i : i + size]


# -- images ----------------------------------------------------------------------------------


@torch.inference_mode()
def save_images(model, x: Tensor, out: Path, seed: int = 0) -> dict[str, str]:
    """Reconstructions, prior samples and a latent interpolation grid as PNGs in ``out``."""
    from zoo.images import save_grid

    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    n = min(32, len(x))
    rows = max(1, n // 8)
    n = rows * 8 if len(x) >= 8 else n
    shown = _as_input(x[:n])
    recon = model.reconstruct(shown)
    if n % 8 == 0:
        grid = torch.stack([shown.reshape(rows, 8, *x.shape[1:]), recon.reshape(rows, 8, *x.shape[1:])], dim=1)
        grid = grid.reshape(-1, *x.shape[1:])
    else:
        grid = torch.cat([shown, recon])
    paths["reconstructions"] = str(save_grid(grid, out / "reconstructions.png", nrow=8 if n >= 8 else n))
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        paths["samples"] = str(save_grid(model.sample(64), out / "samples.png", nrow=8))
    # Interpolate between the posterior means of pairs of test images, 10 steps per row.
    pairs = min(8, len(x) // 2)
    if pairs >= 1:
        means = model.encoder(_as_input(x[: 2 * pairs])).mean
        a, b = means[:pairs], means[pairs : 2 * pairs]
        steps = torch.linspace(0, 1, 10, device=x.device)
        z = a[:, None, :] + steps[None, :, None] * (b - a)[:, None, :]  # [pairs, 10, L]
        images = model.likelihood(model.decoder(z)).mean.reshape(-1, *x.shape[1:])
        paths["interpolation"] = str(save_grid(images, out / "interpolation.png", nrow=10))
    return paths


# -- the whole evaluation --------------------------------------------------------------------


def default_out_dir(path: str | os.PathLike) -> Path:
    """``RUN/eval`` for a run directory; ``<folder>/<name>-eval`` beside a checkpoint file."""
    p = Path(path)
    if p.is_dir():
        return p / "eval"
    if p.parent.name == "checkpoints":
        return p.parent.parent / ("eval" if p.stem == "last" else f"eval-{p.stem}")
    return p.with_name(f"{p.stem}-eval")


def _test_images(dataset, data_dir, limit: int | None, device: torch.device) -> tuple[Tensor, Tensor]:
    """(model inputs, grey-level images) of the test split, both float in [0, 1] on ``device``.

    Binarized data sets use one fixed draw: the trainer's (seed 12345, drawn in order over the
    split), so the negative ELBO here matches the one the trainer logged.
    """
    from zoo.batches import DeviceData
    from zoo.distributed import Dist

    images, _ = dataset.load("test", data_dir)
    if limit is not None:
        images = images[:limit]
    grey = images.to(device).float().div_(255)
    if not dataset.binarized:
        return grey, grey
    data = DeviceData(images, device, True, Dist())
    return torch.cat(list(data.eval_batches(1000))), grey


#: Fewer generated and real images than this give an FID that is mostly noise: it is reported with a warning.
FID_MIN_IMAGES = 1000


def json_safe(value: Any) -> Any:
    """NaN and infinities as ``null``: strict JSON (and most JSON readers) has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def evaluate(
    path: str | os.PathLike,
    *,
    iw_samples: int = 1000,
    data_dir: str | os.PathLike | None = None,
    device: str = "auto",
    batch_size: int = 100,
    limit: int | None = None,
    fid: bool = True,
    fid_features: str = "classifier",
    out: str | os.PathLike | None = None,
    images: bool = True,
    dataset: str | None = None,
    seed: int = 0,
    decode_batch: int | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Evaluate the model in ``path`` (a run directory or checkpoint) on its test set.

    On the CPU the estimate runs on ``threads`` threads (default: chosen by
    :func:`zoo.threads.choose_threads`, which leaves out cores other processes keep busy).

    Returns a dict with the metrics described in the module docstring plus ``n_images``,
    ``model``, ``checkpoint``, ``epoch``, ``dataset``, ``device``, ``seconds`` and more, and
    writes PNGs (and ``metrics.json``) into ``out`` (default :func:`default_out_dir`).
    """
    from zoo.plugins import get_registry
    from zoo.devices import resolve_device

    if iw_samples < 1:
        raise ZooError(f"--iw-samples must be at least 1 (got {iw_samples})")
    if batch_size < 1:
        raise ZooError(f"--batch-size must be at least 1 (got {batch_size})")
    if limit is not None and limit < 1:
        raise ZooError(f"--limit must be at least 1 (got {limit})")
    if fid_features not in FID_FEATURES:
        raise ZooError(f"unknown --fid-features {fid_features!r}; use {' or '.join(FID_FEATURES)}")
    log = log or (lambda message: None)
    started = time.perf_counter()
    checkpoint = resolve_checkpoint_path(path)
    payload = load_checkpoint(checkpoint)
    spec = payload["spec"]
    recipe = spec.get("recipe") or {}
    dataset_id = dataset or recipe.get("dataset")
    if not dataset_id:
        raise ZooError(f"{checkpoint} does not say which data set it was trained on; pass --dataset ID (zoo list --kind dataset)")
    if data_dir is None:
        # The run's own data folder, when it still exists from here.
        run_dir = (payload.get("config") or {}).get("settings", {}).get("data_dir")
        if run_dir and Path(run_dir).is_dir():
            data_dir = run_dir
    info = get_registry().get("dataset", dataset_id).load()
    dev = resolve_device(device)
    if fid and fid_features == "inception":
        inception = inception_features()  # fail before the long part, not after it

    model = prepare_for_inference(model_from_payload(payload, source=checkpoint).to(dev))
    x, grey = _test_images(info, data_dir, limit, dev)
    model.likelihood.check_data(x)
    model.check_inputs = False
    torch.manual_seed(seed)
    log(f"evaluating {recipe.get('id', checkpoint)} on {len(x)} test images of {dataset_id} with K={iw_samples} on {dev}")

    from zoo.threads import check_thread_count, choose_threads, cpu_threads

    check_thread_count(threads)
    used = choose_threads(threads)[0] if dev.type == "cpu" else None
    with cpu_threads(used) if used else contextlib.nullcontext():
        iw = importance_weighted(model, _batched(x, batch_size), iw_samples, decode_batch=decode_batch,
                                 total=len(x), progress=progress)
    nll = -iw.log_px
    neg_elbo = -iw.elbo
    dims = math.prod(model.data_shape)
    discrete = likelihood_is_discrete(model, x)
    result: dict[str, Any] = {
        "test_neg_elbo": float(neg_elbo.mean()),
        "test_neg_elbo_stderr": standard_error(neg_elbo),
        "test_recon": float(-iw.recon.mean()),
        "test_kl": float(iw.kl.mean()),
        "test_nll_iw": float(nll.mean()),
        "test_nll_iw_stderr": standard_error(nll),
        "iw_samples": iw_samples,
        "bits_per_dim": bits_per_dim(float(nll.mean()), dims) if discrete else None,
        "active_units": active_units(iw.posterior_mean),
        "latent_size": model.latent_size,
        "fid": None,
        "fid_features": None,
        "n_images": len(x),
        "model": recipe.get("id"),
        "dataset": dataset_id,
        "checkpoint": str(checkpoint),
        "epoch": payload.get("epoch"),
        "device": str(dev),
        "iw_seconds": round(iw.seconds, 3),
        "iw_samples_per_second": round(iw.samples_per_second, 1),
        "threads": used,
    }
    if not discrete:
        result["bits_per_dim_note"] = (
            "not reported: the likelihood is a density over real values or the data are not in its discrete "
            "support (grey levels under a Bernoulli), so -log p(x) is not a code length"
        )

    if fid:
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed + 1)
            generated = torch.cat([model.sample(min(500, len(x) - i)) for i in range(0, len(x), 500)])
        if fid_features == "inception":
            extractor, made = _InceptionInput(inception), {"features": "inception-v3 pool3 (2048)"}
        else:
            extractor, made = feature_network(info, data_dir, progress=progress)
        if len(x) >= 2:
            result["fid"] = frechet_distance(_batched(grey, 500), _batched(generated.float(), 500), extractor, dev)
        result["fid_features"] = fid_features
        result["fid_images"] = len(x)
        if len(x) < FID_MIN_IMAGES:
            result["fid_warning"] = (
                f"FID from only {len(x)} images is dominated by estimation noise and bias "
                f"(use at least {FID_MIN_IMAGES}; the whole test set is best)"
                if len(x) >= 2 else f"no FID: it needs at least 2 images (got {len(x)})"
            )
            log(f"warning: {result['fid_warning']}")
        if fid_features == "classifier":
            result["fid_classifier"] = {k: made[k] for k in ("data_sha256", "test_accuracy", "epochs", "seed")}

    out_dir = Path(out) if out is not None else default_out_dir(path)
    try:
        if images:
            result["images"] = save_images(model, x, out_dir, seed)
        result["seconds"] = round(time.perf_counter() - started, 3)
        out_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(json_safe(result), indent=2, allow_nan=False)
        atomic_write(out_dir / "metrics.json", lambda f: f.write(text.encode()))
    except OSError as exc:
        raise ZooError(f"cannot write to --out {out_dir}: {exc.strerror or exc}; choose a writable folder") from None
    return result

