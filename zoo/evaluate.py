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
``test_mse``
    The squared error between each test image and its reconstruction (the likelihood's mean at the
    posterior mean), summed over the image and averaged over the test set.
``fid``
    The Frechet distance between generated images (the likelihood's mean at prior draws) and
    test images, computed by torchmetrics in the feature space of a small classifier trained on
    the training set and cached (:func:`zoo.fid.feature_network`), or Inception's when asked for.

A model whose encoder is deterministic (an autoencoder's, :attr:`zoo.VAE.deterministic`) has no
density q(z|x): ``test_neg_elbo``, ``test_nll_iw`` and ``bits_per_dim`` are ``None``, each with a
``..._note`` saying why, and ``test_recon`` is -log p(x|z) at its code; ``test_mse``, the FID of
images decoded from its prior's draws and the active units (of its codes) are reported as for any model.

This module runs the steps: load the checkpoint and the test images, estimate, summarise, FID,
write the images and ``metrics.json``. The parts are :mod:`zoo.estimators` (the IW estimate, the
expensive part: each test batch is encoded once and ``decode_batch`` images x draws are decoded
at a time, so memory stays bounded whatever K is), :mod:`zoo.metrics`, :mod:`zoo.fid` and
:func:`zoo.images.save_images`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from zoo.checkpoint import atomic_write, load_checkpoint, model_from_payload, resolve_checkpoint_path
from zoo.errors import ZooError, ZooValueError, first_line, is_count
from zoo.estimators import IWEstimate, importance_weighted, prepare_for_inference
from zoo.eval_results import (
    likelihood_results,
    no_density_results,
    reconstruction_results,
    squared_error,
)
from zoo.fid import (
    FID_FEATURES,
    _InceptionInput,
    feature_network,
    frechet_distance,
    inception_features,
    resolve_fid_features,
)
from zoo.images import save_images


def _batched(images: Tensor, size: int) -> Iterator[Tensor]:
    for i in range(0, len(images), size):
        yield images[i : i + size]


# -- the whole evaluation --------------------------------------------------------------------


def default_out_dir(path: str | os.PathLike) -> Path:
    """``RUN/eval`` for a run directory; ``<folder>/<name>-eval`` beside a checkpoint file; for an
    exported folder or a Hub model (which stay as they were published), ``<name>-eval`` in the
    working directory."""
    from zoo.exported import is_exported
    from zoo.hub import default_name, is_hub_name

    if is_hub_name(path):
        return Path(f"{default_name(str(path))}-eval")
    p = Path(path)
    if is_exported(p):
        return Path(f"{p.resolve().name}-eval")
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
    fid_features: str = "auto",
    out: str | os.PathLike | None = None,
    images: bool = True,
    dataset: str | None = None,
    seed: int = 0,
    decode_batch: int | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    threads: int | None = None,
    disentanglement: bool | None = None,
    disentanglement_points: int = 2000,
) -> dict[str, Any]:
    """Evaluate the model in ``path`` (a run directory or checkpoint) on its test set.

    On the CPU the estimate runs on ``threads`` threads (default: chosen by
    :func:`zoo.threads.choose_threads`, which leaves out cores other processes keep busy).

    Returns a dict with the metrics described in the module docstring plus ``n_images``,
    ``model``, ``checkpoint``, ``epoch``, ``dataset``, ``device``, ``seconds`` and more, and
    writes PNGs (and ``metrics.json``) into ``out`` (default :func:`default_out_dir`).
    """
    _check_arguments(iw_samples, batch_size, limit, fid_features, seed, threads)
    log = log or (lambda message: None)
    started = time.perf_counter()
    source = _load_source(path, dataset, data_dir)
    scores = _disentanglement_settings(source, disentanglement, disentanglement_points)
    out_dir = Path(out) if out is not None else default_out_dir(path)
    made = _check_out_dir(out_dir)  # before the hours an estimate may take, not after
    try:
        result = _run(source, out_dir, iw_samples, device, batch_size, limit, fid, fid_features, images, seed,
                      decode_batch, progress, log, threads, started, scores)  # fmt: skip
    except BaseException:
        if made:
            with contextlib.suppress(OSError):
                out_dir.rmdir()  # only while nothing was written into it
        raise
    return result


def _run(source, out_dir, iw_samples, device, batch_size, limit, fid, fid_features, images, seed,
         decode_batch, progress, log, threads, started, scores=None) -> dict[str, Any]:  # fmt: skip
    """:func:`evaluate`'s steps, once its arguments and output folder are checked."""
    from zoo.devices import resolve_device

    dev = resolve_device(device)
    if fid:
        fid_features, why = resolve_fid_features(fid_features)
        log(f"FID features: {fid_features} ({why})")
    inception = inception_features() if fid and fid_features == "inception" else None  # fail before the long part

    model = prepare_for_inference(model_from_payload(source.payload, source=source.checkpoint).to(dev))
    x, grey = _test_images(source.dataset, source.data_dir, limit, dev)
    model.likelihood.check_data(x)
    model.check_inputs = False
    torch.manual_seed(seed)
    how = "by reconstruction (deterministic encoder)" if model.deterministic else f"with K={iw_samples}"
    log(f"evaluating {source.recipe.get('id', source.checkpoint)} on {len(x)} test images of {source.dataset_id} "
        f"{how} on {dev}")  # fmt: skip
    if model.deterministic:
        result = reconstruction_results(model, x, source, dev, batch_size, threads)
    elif getattr(model.prior, "has_density", True):
        iw, used = _estimate(model, x, iw_samples, batch_size, decode_batch, progress, threads)
        result = likelihood_results(model, x, iw, source, dev, used)
        result["test_mse"] = squared_error(model, x, batch_size, used)
    else:
        result = no_density_results(model, x, source, dev)
        result["test_mse"] = squared_error(model, x, batch_size, None)
        log(f"warning: {result['test_nll_iw_note']}")
    if fid:
        result.update(_fid_results(model, x, grey, source, fid_features, inception, seed, progress, log))
    result.update(_disentanglement_results(model, source, scores, seed, log))
    _write(result, out_dir, model, x, images, seed, started)
    return result


# -- its steps -------------------------------------------------------------------------------


#: The most importance samples per image ``zoo eval`` takes: 20 times the literature's 5000. A
#: larger K takes days on a GPU for a whole test set, and its estimate is no longer any closer.
MAX_IW_SAMPLES = 100_000


def _check_arguments(
    iw_samples: int,
    batch_size: int,
    limit: int | None,
    fid_features: str,
    seed: int = 0,
    threads: int | None = None,
) -> None:
    from zoo.plan import check_seed
    from zoo.threads import check_thread_count

    if not is_count(iw_samples) or iw_samples > MAX_IW_SAMPLES:
        raise ZooValueError(
            f"--iw-samples must be a whole number from 1 to {MAX_IW_SAMPLES} (got {iw_samples!r}); "
            "the literature's standard is 5000"
        )
    if not is_count(batch_size):
        raise ZooValueError(f"--batch-size must be at least 1 (got {batch_size})")
    if limit is not None and not is_count(limit):
        raise ZooValueError(f"--limit must be at least 1 (got {limit})")
    check_seed(seed)
    check_thread_count(threads)
    if fid_features not in FID_FEATURES:
        raise ZooError(f"unknown --fid-features {fid_features!r}; use {' or '.join(FID_FEATURES)}")


@dataclass
class _Source:
    """The checkpoint under evaluation and the data set it is scored on."""

    checkpoint: Path
    payload: dict[str, Any]
    recipe: dict[str, Any]
    dataset_id: str
    dataset: Any  # its zoo.DatasetInfo
    data_dir: str | os.PathLike | None


def _load_source(path: str | os.PathLike, dataset: str | None, data_dir: str | os.PathLike | None) -> _Source:
    from zoo.plugins import get_registry

    checkpoint = resolve_checkpoint_path(path)
    payload = load_checkpoint(checkpoint)
    recipe = payload["spec"].get("recipe") or {}
    dataset_id = dataset or recipe.get("dataset")
    if not dataset_id:
        raise ZooError(
            f"{checkpoint} does not say which data set it was trained on; pass --dataset ID (zoo list --kind dataset)"
        )
    if data_dir is None:
        # The run's own data folder, when it still exists from here.
        run_dir = (payload.get("config") or {}).get("settings", {}).get("data_dir")
        if run_dir and Path(run_dir).is_dir():
            data_dir = run_dir
    if dataset is None and recipe.get("data"):
        from zoo.plan import dataset_of

        info = dataset_of(recipe)  # the run's own images, split as when it trained
    else:
        info = get_registry().get("dataset", dataset_id).load()
    return _Source(checkpoint, payload, recipe, dataset_id, info, data_dir)


def _estimate(
    model,
    x: Tensor,
    iw_samples: int,
    batch_size: int,
    decode_batch: int | None,
    progress: bool | None,
    threads: int | None,
) -> tuple[IWEstimate, int | None]:
    """The IW estimate on ``x``, on the CPU with the threads :func:`zoo.threads.choose_threads` picks;
    and that thread count (``None`` off the CPU)."""
    from zoo.threads import check_thread_count, choose_threads, cpu_threads

    check_thread_count(threads)
    used = choose_threads(threads)[0] if x.device.type == "cpu" else None
    with cpu_threads(used) if used else contextlib.nullcontext():
        iw = importance_weighted(
            model, _batched(x, batch_size), iw_samples, decode_batch=decode_batch, total=len(x), progress=progress
        )
    return iw, used


def _fid_results(
    model,
    x: Tensor,
    grey: Tensor,
    source: _Source,
    fid_features: str,
    inception: nn.Module | None,
    seed: int,
    progress: bool | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """FID of as many generated images as test images (seeded with ``seed + 1``), and how it was computed."""
    dev = x.device
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed + 1)
        generated = torch.cat([model.sample(min(500, len(x) - i)) for i in range(0, len(x), 500)])
    if inception is not None:
        extractor, made = _InceptionInput(inception), {"features": "inception-v3 pool3 (2048)"}
    else:
        extractor, made = feature_network(source.dataset, source.data_dir, progress=progress)
    result: dict[str, Any] = {"fid": None}
    if len(x) >= 2:
        result["fid"] = frechet_distance(_batched(grey, 500), _batched(generated.float(), 500), extractor, dev)
    result["fid_features"] = fid_features
    result["fid_images"] = len(x)
    if len(x) < FID_MIN_IMAGES:
        result["fid_warning"] = (
            f"FID from only {len(x)} images is dominated by estimation noise and bias "
            f"(use at least {FID_MIN_IMAGES}; the whole test set is best)"
            if len(x) >= 2
            else f"no FID: it needs at least 2 images (got {len(x)})"
        )
        log(f"warning: {result['fid_warning']}")
    if fid_features == "classifier":
        result["fid_classifier"] = {k: made.get(k) for k in ("data_sha256", "test_accuracy", "epochs", "seed", "task")}
    return result


def _disentanglement_settings(source: _Source, wanted: bool | None, points: int) -> dict[str, Any] | None:
    """``{"points": N}`` when the disentanglement metrics are to be computed (by default: when the data set
    has ground-truth factors), else None; a one-line error when they are asked for and it has none."""
    from zoo.disentanglement import check_requested

    return {"points": points} if check_requested(source.dataset, wanted, points) else None


def _disentanglement_results(model, source: _Source, scores: dict[str, Any] | None, seed: int, log) -> dict[str, Any]:
    """MIG, SAP, DCI, the FactorVAE and BetaVAE scores (:mod:`zoo.disentanglement`), or nothing."""
    if scores is None:
        return {}
    from zoo.disentanglement import model_scores

    log(f"disentanglement metrics on {scores['points']} points of {source.dataset_id}'s factors")
    return model_scores(model, source.dataset, source.data_dir, points=scores["points"], seed=seed)


def _check_out_dir(out_dir: Path) -> bool:
    """Make sure the results can be written into ``out_dir`` before any work is done: the folder
    exists or can be made, files can be created in it, and ``metrics.json`` is not a folder, a
    link or a device. Returns whether this call made the folder (it is removed if nothing lands in it)."""
    import tempfile

    from zoo.rundir import check_output_file

    made = False
    try:
        if not out_dir.is_dir():
            out_dir.mkdir(parents=True)
            made = True
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".zoo-eval-", suffix=".tmp"):
            pass
    except (OSError, UnicodeError) as exc:
        if made:
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else first_line(exc)
        raise ZooError(
            f"cannot write to --out {out_dir}: {detail}; choose a writable folder (nothing was evaluated)"
        ) from None
    for name in ("metrics.json", "reconstructions.png", "samples.png", "interpolation.png"):
        check_output_file(out_dir / name)
    return made


def _write(result: dict[str, Any], out_dir: Path, model, x: Tensor, images: bool, seed: int, started: float) -> None:
    """The image grids (when ``images``) and ``metrics.json`` into ``out_dir``; adds their paths and the total time to ``result``."""
    try:
        if images:
            result["images"] = save_images(model, x, out_dir, seed)
        result["seconds"] = round(time.perf_counter() - started, 3)
        out_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(json_safe(result), indent=2, allow_nan=False)
        atomic_write(out_dir / "metrics.json", lambda f: f.write(text.encode()))
    except OSError as exc:
        raise ZooError(f"cannot write to --out {out_dir}: {exc.strerror or exc}; choose a writable folder") from None
