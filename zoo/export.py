"""``zoo export``: a trained run written as a folder in the Hugging Face Hub's layout.

:func:`export_run` checks the destination, rebuilds the run's model (so only a loadable model is
exported), writes ``model.safetensors`` and ``config.json`` into a temporary folder beside the
destination, evaluates the written folder (so the card's figures are those of exactly these
weights, with the stated K, images and seed), draws the learning curve and a sample grid, writes
the model card (:mod:`zoo.model_card`) and only then moves the files into place. A failure leaves
the destination as it was; ``--overwrite`` replaces the export's own files and keeps any other.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.checkpoint import _umask
from zoo.errors import ZooError
from zoo.exported import CARD, CONFIG, CURVE, FILES, FORMAT, SAMPLES, WEIGHTS, is_exported, save_weights, sha256_of


@dataclass(frozen=True)
class Scoring:
    """How an export scores its model (``zoo eval``'s settings): K, images, seed, where the data is."""

    iw_samples: int = 1000
    limit: int | None = None
    seed: int = 0
    data_dir: str | os.PathLike | None = None
    threads: int | None = None
    batch_size: int = 100


def check_destination(out: Path, overwrite: bool, source: Path | None = None) -> None:
    """``out`` may receive an export: it does not exist or is empty, or ``overwrite`` is given and the
    export's own names in it are regular files; never a run directory or the source itself."""
    from zoo.rundir import check_output_file

    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_dir():
        raise ZooError(f"{out} exists and is not a folder; give a folder for the export")
    if source is not None:
        source = source.resolve()
        run_dir = source if source.is_dir() else source.parent.parent if source.parent.name == "checkpoints" else None
        if out.resolve() in (source, run_dir):
            raise ZooError(f"{out} is the run being exported; export it into another folder")
    if (out / "checkpoints").is_dir() or (out / "metrics.jsonl").exists():
        raise ZooError(f"{out} is a run directory; export into another folder")
    if any(out.iterdir()) and not overwrite:
        raise ZooError(
            f"{out} exists and is not empty; give --overwrite to replace the export's files in it "
            "(other files are kept), or choose another folder"
        )
    for name in FILES:
        check_output_file(out / name, "export file")


def dataset_record(dataset_id: str) -> dict[str, Any]:
    """The data set a model was trained on and its preprocessing, as config.json records it."""
    from zoo.plugins import get_registry

    info = get_registry().get("dataset", dataset_id).load()
    steps = "grey levels divided by 255, in [0, 1]"
    if info.binarized:
        steps += (
            "; each pixel drawn as Bernoulli(grey level) every time an image is used (dynamic binarization); "
            "the test set is scored on one fixed draw (seed 12345)"
        )
    return {
        "id": info.id,
        "description": info.description,
        "shape": list(info.shape),
        "binarized": bool(info.binarized),
        "preprocessing": steps,
        "split_sizes": dict(info.split_sizes),
    }


def training_command(
    model_id: str, overrides: dict[str, Any], epochs: int | None, seed: int, max_steps: int | None = None
) -> str:
    """The ``zoo train`` command that trains the run again (no machine's paths in it)."""
    import shlex

    words = ["zoo", "train", model_id]
    if max_steps:
        words += ["--max-steps", str(max_steps)]
    elif epochs is not None:
        words += ["--epochs", str(epochs)]
    flags = {"batch_size": "--batch-size", "lr": "--lr"}
    for key, value in overrides.items():
        if key == "epochs":
            continue
        words += [flags[key], str(value)] if key in flags else ["--set", f"{key}={value}"]
    if seed:
        words += ["--seed", str(seed)]
    return shlex.join(words)


def cpu_name() -> str:
    """The CPU's model name (``lscpu``'s), or the platform's processor string."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def export_config(payload: dict[str, Any]) -> dict[str, Any]:
    """config.json of a training checkpoint's model (without ``weights`` and ``metrics``)."""
    import zoo

    spec = payload["spec"]
    run = payload.get("config") or {}
    recipe = spec.get("recipe") or run.get("recipe") or {}
    history = [r for r in payload.get("history") or [] if isinstance(r, dict)]
    seconds = sum(r.get("epoch_seconds") or 0 for r in history)
    settings, resolved = run.get("settings") or {}, run.get("resolved") or {}
    epoch = payload.get("epoch")
    model_id = recipe.get("id") or "model"
    plugins = {}
    for record in (spec.get("components") or {}).values():
        if isinstance(record, dict) and record.get("plugin"):
            plugins[record["plugin"]] = {"distribution": record.get("distribution"), "version": record.get("version")}
    versions = dict(run.get("versions") or {})
    versions.pop("plugins", None)
    versions["zoo"] = versions.get("zoo", zoo.__version__)
    return {
        "format": FORMAT,
        "library_name": "zoo",
        "model": model_id,
        "description": recipe.get("description", ""),
        "spec": spec,
        "recipe": recipe,
        "objective": spec.get("objective"),
        "plugins": plugins,
        "versions": versions,
        "dataset": dataset_record(recipe["dataset"]) if recipe.get("dataset") else None,
        "training": {
            "epochs": epoch,
            "command": training_command(
                model_id,
                dict(run.get("overrides") or {}),
                epoch,
                int(settings.get("seed") or 0),
                settings.get("max_steps"),
            ),
            "seconds": round(seconds, 1),
            "device": resolved.get("device"),
            "precision": resolved.get("precision"),
            "threads": resolved.get("threads"),
            "world_size": resolved.get("world_size"),
            "schedule_epochs": _schedule_epochs(model_id),
            "best_epoch": payload.get("best_epoch"),
            "last": {k: history[-1].get(k) for k in ("test_loss", "test_recon", "test_kl")} if history else None,
        },
        "history": [{k: r.get(k) for k in ("epoch", "train_loss", "test_loss", "epoch_seconds")} for r in history],
    }


def _schedule_epochs(model_id: str) -> int | None:
    """The epochs the registered recipe ``model_id`` trains for (its paper's schedule), if registered."""
    from zoo.plugins import get_registry

    try:
        return get_registry().recipe(model_id).training.epochs
    except ZooError:
        return None


def _score(folder: Path, scoring: Scoring, log: Callable[[str], None]) -> dict[str, Any]:
    """``zoo eval``'s figures for the exported ``folder``, with the command that reproduces them."""
    from zoo.evaluate import evaluate

    scratch = Path(tempfile.mkdtemp(prefix=".zoo-export-eval-", dir=folder.parent))
    try:
        result = evaluate(
            folder,
            iw_samples=scoring.iw_samples,
            data_dir=scoring.data_dir,
            device="cpu",
            batch_size=scoring.batch_size,
            limit=scoring.limit,
            fid=False,
            out=scratch,
            images=False,
            seed=scoring.seed,
            progress=False,
            log=log,
            threads=scoring.threads,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    keys = (
        "test_nll_iw", "test_nll_iw_stderr", "test_neg_elbo", "test_neg_elbo_stderr", "test_recon", "test_kl",
        "iw_samples", "n_images", "bits_per_dim", "active_units", "latent_size", "dataset", "iw_seconds", "threads",
        "test_mse", "test_nll_iw_note",
    )  # fmt: skip
    metrics = {k: result.get(k) for k in keys}
    limit = f" --limit {scoring.limit}" if scoring.limit else ""
    metrics.update(
        seed=scoring.seed,
        command=f"zoo eval DIR --iw-samples {scoring.iw_samples}{limit} --seed {scoring.seed} --no-fid",
        machine=f"{cpu_name()}, {result.get('threads')} thread(s)",
        date=time.strftime("%Y-%m-%d", time.gmtime()),
    )
    return metrics


def _draw_curve(history: list[dict[str, Any]], path: Path, title: str) -> bool:
    """The test negative ELBO against epochs as a PNG (needs matplotlib); whether it was drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from zoo.checkpoint import atomic_write

    points = [(r["epoch"], r["test_loss"]) for r in history if isinstance(r.get("test_loss"), (int, float))]
    if not points:
        return False
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(*zip(*points), marker="o" if len(points) < 30 else None, markersize=3)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test negative ELBO (nats)")
    ax.set_title(title.replace("$", r"\$"))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
    return True


def _draw_samples(model, path: Path, seed: int) -> None:
    import torch

    from zoo.images import save_grid

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        with torch.no_grad():
            save_grid(model.sample(64), path)


def export_run(
    run: str | os.PathLike,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    scoring: Scoring | None = None,
    license: str = "mit",
    repo_id: str | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Export the trained model of ``run`` (a run directory or a training checkpoint) into the
    folder ``out``; ``scoring=None`` skips the evaluation (the card then has no figures); ``repo_id``
    (``owner/name``) is the Hub repository the card's examples load from. Returns ``out``."""
    from zoo.checkpoint import load_checkpoint, model_from_payload, resolve_checkpoint_path
    from zoo.hub import check_repo_id, is_hub_name, require_hub
    from zoo.model_card import render_card

    require_hub("zoo export (the model card)")  # before any work, not after the evaluation
    log = log or (lambda message: None)
    if repo_id is not None:
        check_repo_id(repo_id)
    if is_hub_name(run) or is_exported(run):
        raise ZooError(f"{run} is already an exported model; 'zoo export' takes a run directory or a checkpoint")
    out = Path(out)
    checkpoint = resolve_checkpoint_path(run)
    check_destination(out, overwrite, Path(run))
    payload = load_checkpoint(checkpoint)
    model = model_from_payload(payload, source=checkpoint)  # only a model that rebuilds is exported
    config = export_config(payload)
    parent = out.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.zoo-export-", dir=parent))
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's folder is private; the export is not
    except OSError as exc:
        raise ZooError(
            f"cannot write the export beside {out}: {exc.strerror or exc}; choose a writable folder"
        ) from None
    try:
        save_weights(payload["model"], staging / WEIGHTS)
        config["weights"] = {
            "file": WEIGHTS,
            "sha256": sha256_of(staging / WEIGHTS),
            "bytes": (staging / WEIGHTS).stat().st_size,
            "tensors": len(payload["model"]),
            "parameters": sum(int(t.numel()) for t in payload["model"].values()),
            "dtype": sorted({str(t.dtype).replace("torch.", "") for t in payload["model"].values()}),
        }
        config["metrics"] = None
        _write_json(staging / CONFIG, config)
        if scoring is not None:
            config["metrics"] = _score(staging, scoring, log)
        images = {}
        if _draw_curve(config["history"], staging / CURVE, f"{config['model']}: test negative ELBO"):
            images["curve"] = CURVE
        _draw_samples(model, staging / SAMPLES, seed=0)
        images["samples"] = SAMPLES
        config["images"] = images
        _write_json(staging / CONFIG, config)
        (staging / CARD).write_text(render_card(config, license=license, repo_id=repo_id), encoding="utf-8")
        _move_into_place(staging, out)
    except OSError as exc:
        raise ZooError(
            f"could not write the export {out}: {exc.strerror or exc}; nothing in {out} was changed"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _write_json(path: Path, data: dict[str, Any]) -> None:
    import json

    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _move_into_place(staging: Path, out: Path) -> None:
    """The staged files into ``out``: a rename of the whole folder when ``out`` does not exist;
    otherwise each export file replaced (and an export file this export did not write removed)."""
    if not out.exists():
        os.rename(staging, out)
        staging.mkdir()  # for the caller's cleanup
        return
    for name in FILES:
        if (staging / name).exists():
            os.replace(staging / name, out / name)
        elif (out / name).is_file():
            (out / name).unlink()
