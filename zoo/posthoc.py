"""Post-hoc priors, the module behind ``zoo.fit_prior`` and ``zoo fit-prior``: fit a registered
sampler to the codes of a trained run's training set and write a new run whose prior is that sampler.

:func:`fit_prior` loads the run's best checkpoint (its last when there is no best), encodes the
training split it was trained on (posterior means; a deterministic encoder's code), builds the
sampler (``zoo list --kind sampler``) with the model's latent size and the components its factory
names, calls its ``fit(codes)`` and writes ``OUT/checkpoints/last.pt``, ``OUT/config.json`` and
``OUT/fit.json``. The new model's spec names the sampler as its prior, so ``zoo.load``, ``zoo sample``
and ``zoo eval`` use it; the source run is never written to.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zoo.errors import ZooError, is_count

#: Files of a fitted run, beside the source run's own layout.
CHECKPOINT = Path("checkpoints") / "last.pt"
FIT_FILE = "fit.json"


def _source_checkpoint(run: str | os.PathLike) -> Path:
    """The run's ``checkpoints/best.pt``, else its ``checkpoints/last.pt``; a one-line error otherwise."""
    p = Path(run)
    if not p.is_dir():
        raise ZooError(f"{p} is not a run directory (give the folder 'zoo train' wrote, e.g. runs/vae-conv-mnist-...)")
    for name in ("best.pt", "last.pt"):
        if (p / "checkpoints" / name).is_file():
            return p / "checkpoints" / name
    raise ZooError(f"{p} is not a run directory: it has no checkpoints/best.pt or checkpoints/last.pt")


def _check_out(out: Path, run: Path, overwrite: bool) -> None:
    if out.resolve() == run.resolve() or run.resolve() in out.resolve().parents:
        raise ZooError(
            f"--out {out} is inside the source run {run}; choose another folder (the source is never changed)"
        )
    if out.exists() and not out.is_dir():
        raise ZooError(f"--out {out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ZooError(f"--out {out} exists and is not empty; choose another --out or pass --overwrite")


def _sampler_entry(prior: str, options: dict[str, Any]):
    from zoo.plain_data import first_unstorable
    from zoo.plugins import get_registry

    if not isinstance(prior, str) or not prior:
        raise ZooError(f"the prior to fit must be a sampler id such as 'gmm' (zoo list --kind sampler), got {prior!r}")
    if not isinstance(options, dict) or first_unstorable(options) is not None:
        raise ZooError(f"sampler options must be a dict of plain data (numbers, strings, lists), got {options!r}")
    return get_registry().get("sampler", prior)


def _codes(model, dataset, data_dir, batch_size: int, device) -> Any:
    """The encoder's mean code of every training image, [N, L], in the split's order."""
    import torch

    from zoo.batches import DeviceData
    from zoo.distributed import Dist

    images, _ = dataset.load("train", data_dir)
    data = DeviceData(images, device, dataset.binarized, Dist())  # binarized sets: the fixed evaluation draw
    parts = []
    with torch.no_grad():
        for x in data.eval_batches(batch_size):
            parts.append(model.encoder(x).mean.float())
    return torch.cat(parts)


def _fit_settings(sampler, epochs: int | None, seed: int, log: Callable[[str], None], prior: str) -> dict[str, Any]:
    """The keyword arguments of ``sampler.fit`` that it takes: ``seed``, ``log`` and ``epochs`` (an
    ``epochs`` the sampler does not take is an error, not silently ignored)."""
    params = inspect.signature(sampler.fit).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    settings: dict[str, Any] = {}
    for name, value in (("seed", seed), ("log", log)):
        if takes_any or name in params:
            settings[name] = value
    if epochs is not None:
        if not (takes_any or "epochs" in params):
            raise ZooError(f"sampler {prior!r} is not trained in epochs; leave out --epochs")
        settings["epochs"] = epochs
    return settings


def fit_prior(
    run: str | os.PathLike,
    prior: str = "gmm",
    options: dict[str, Any] | None = None,
    *,
    out: str | os.PathLike | None = None,
    epochs: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    data_dir: str | os.PathLike | None = None,
    batch_size: int = 500,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
) -> Path:
    """Fit sampler ``prior`` (with ``options``) to the codes of ``run``'s training set and write the
    model with it as prior to ``out`` (default ``RUN-PRIOR``); returns ``out``.

    ``epochs`` overrides the sampler's own (for samplers trained in epochs); ``seed`` seeds the fit.
    ``out`` must be empty or absent unless ``overwrite``.
    """
    import torch

    from zoo.checkpoint import load_weights, save_checkpoint
    from zoo.composition import from_spec
    from zoo.devices import resolve_device
    from zoo.evaluate import _load_source
    from zoo.plan import check_seed

    log = log or (lambda message: None)
    options = dict(options or {})
    check_seed(seed)
    if epochs is not None and not is_count(epochs):
        raise ZooError(f"--epochs must be a positive integer (got {epochs!r})")
    if not is_count(batch_size):
        raise ZooError(f"--batch-size must be a positive integer (got {batch_size!r})")
    entry = _sampler_entry(prior, options)
    checkpoint = _source_checkpoint(run)
    run_dir = Path(run)
    out_dir = Path(out) if out is not None else run_dir.resolve().parent / f"{run_dir.resolve().name}-{prior}"
    _check_out(out_dir, run_dir, overwrite)
    started = time.perf_counter()
    dev = resolve_device(device)

    source = _load_source(checkpoint, None, data_dir)
    payload = source.payload
    spec = copy.deepcopy(payload["spec"])
    spec["components"]["prior"] = {
        "id": entry.id,
        "options": options,
        "kind": "sampler",
    }  # even if a prior shares its id
    torch.manual_seed(seed)
    model = from_spec(spec, checkpoint)  # the sampler is built here, with any component it names
    trained = {k: v for k, v in payload["model"].items() if not k.startswith("prior.")}
    kept = {k: v for k, v in model.state_dict().items() if k.startswith("prior.")}
    load_weights(model, {**trained, **kept}, f"the weights in {checkpoint}")
    model = model.to(dev).eval()
    sampler = model.prior
    settings = _fit_settings(sampler, epochs, seed, log, prior)  # before the encoding: a mistake fails at once

    log(f"encoding the training images of {source.dataset_id} with {checkpoint}")
    codes = _codes(model, source.dataset, source.data_dir, batch_size, dev)
    log(f"fitting {prior} to {len(codes)} codes of size {codes.shape[1]}")
    figures = sampler.fit(codes, **settings)
    model.eval()

    fitted = {
        "source_run": str(run_dir),
        "source_checkpoint": str(checkpoint),
        "source_epoch": payload.get("epoch"),
        "source_prior": payload["spec"]["components"].get("prior"),
        "sampler": entry.id,
        "options": options,
        "settings": {"epochs": epochs, "seed": seed, "batch_size": batch_size},
        "codes": len(codes),
        "fit": {k: v for k, v in (figures or {}).items()},
        "seconds": round(time.perf_counter() - started, 3),
    }
    new_spec = dict(model.spec)
    recipe = dict(new_spec.get("recipe") or {})
    if recipe:
        recipe.update(prior=entry.id, prior_options=options)
        new_spec["recipe"] = recipe
    new_spec["fitted_prior"] = fitted
    config = dict(payload.get("config") or {})
    config.update(model=recipe.get("id"), recipe=recipe, fitted_prior=fitted)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "checkpoints").mkdir(exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_checkpoint(
        out_dir / CHECKPOINT, {"spec": new_spec, "model": state, "epoch": payload.get("epoch"), "config": config}
    )
    _write_json(out_dir / "config.json", config)
    _write_json(out_dir / FIT_FILE, fitted)
    log(f"wrote {out_dir}")
    return out_dir


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from zoo.checkpoint import atomic_write
    from zoo.evaluate import json_safe

    text = json.dumps(json_safe(data), indent=2, allow_nan=False, default=str) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))
