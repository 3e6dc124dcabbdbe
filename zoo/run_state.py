"""A run's state across checkpoints: what each epoch's checkpoint holds, writing it, putting it back
into a trainer's model, optimizer and generators, repairing ``best.pt``, and planning a resume
from what the run recorded."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.checkpoint import load_checkpoint, load_weights, save_checkpoint, training_problems
from zoo.errors import ZooError, is_count
from zoo.plan import RunPlan, plan_run
from zoo.recipe import Recipe
from zoo.rundir import RunDir, kept_checkpoint_name
from zoo.spec import require_plugins


def versions() -> dict[str, Any]:
    """The versions a run records: zoo, torch, torchvision, Python and each loaded plugin."""
    import sys

    import torch
    import torchvision

    import zoo
    from zoo.plugins import get_registry

    plugins = {
        p.name: {"distribution": p.distribution, "version": p.version}
        for p in get_registry().plugins.values()
        if not p.error
    }
    return {
        "zoo": zoo.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": sys.version.split()[0],
        "plugins": plugins,
    }


def run_config(trainer) -> dict[str, Any]:
    """What config.json records of a trainer's run: the recipe, the overrides, the settings given
    and those resolved when it started, the versions and the command."""
    import dataclasses
    import sys

    return {
        "model": trainer.recipe.id,
        "recipe": trainer.recipe.to_dict(),
        "overrides": trainer.overrides,
        "settings": dataclasses.asdict(trainer.settings),
        "resolved": {
            "device": str(trainer.device),
            "precision": trainer.precision,
            "world_size": trainer.dist.world_size,
            "cuda_graph": trainer._graph_on,
            "precision_trial": trainer.precision_trial,
            "threads": trainer.threads,
            "data_placement": trainer.data_placement,
        },
        "versions": versions(),
        "command": sys.argv,
    }


def checkpoint_payload(trainer, epoch: int, rng: list[dict[str, Any]]) -> dict[str, Any]:
    """What a checkpoint holds after ``epoch``: the model's spec and weights, the objective's,
    optimizer's, scheduler's and scaler's states, every process's generators (``rng``), the
    history, the best test loss and its epoch, and the run's config."""
    return {
        "spec": trainer.model.spec,
        "model": trainer.model.state_dict(),
        "objective": trainer.objective.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "scaler": trainer.scaler.state_dict() if trainer.scaler is not None else None,
        "updates": trainer.updates.state_dict(),
        "epoch": epoch,
        "rng": rng,
        "history": trainer.history,
        "best": trainer.best,
        "config": trainer.config,
        "best_epoch": trainer.best_epoch,
    }


def save_epoch(out: Path, payload: dict[str, Any], *, epoch: int, improved: bool, keep_every: int) -> None:
    """Write the epoch's checkpoints: ``last.pt`` always, ``best.pt`` when the test loss improved,
    ``epoch-NNNN.pt`` every ``keep_every`` epochs.

    last.pt first: a kill before best.pt is written leaves a last.pt that knows it is the best
    state, and the resume rewrites best.pt from it (:func:`repair_best`).
    """
    save_checkpoint(out / "checkpoints" / "last.pt", payload)
    if improved:
        save_checkpoint(out / "checkpoints" / "best.pt", payload)
    if keep_every and epoch % keep_every == 0:
        save_checkpoint(out / "checkpoints" / kept_checkpoint_name(epoch), payload)


@dataclass
class Restored:
    """Where a resumed run stands: the next epoch, its history and its best epoch so far."""

    start_epoch: int
    history: list[dict[str, Any]]
    best: float
    best_epoch: int | None


def restore(
    payload: dict[str, Any], *, last: Path, model, objective, optimizer, scheduler, scaler, capturable: bool
) -> Restored:
    """Load a checkpoint's weights and optimizer, scheduler and scaler states in place; every
    mismatch is one :class:`ZooError` naming ``last``."""
    from torch import Tensor

    load_weights(model, payload["model"], f"the weights in {last}")
    if payload.get("objective") is not None:
        load_weights(objective, payload["objective"], f"the objective's state in {last}")
    load_weights(optimizer, payload["optimizer"], f"the optimizer state in {last}")
    for group in optimizer.param_groups:  # as this process runs, not as the saved run did
        if "capturable" in group:
            group["capturable"] = capturable
    for group in optimizer.param_groups:
        for p in group["params"]:
            for value in optimizer.state.get(p, {}).values():
                if isinstance(value, Tensor) and value.dim() > 0 and value.shape != p.shape:
                    raise ZooError(
                        f"the optimizer state in {last} does not fit the model (a tensor shaped "
                        f"{tuple(value.shape)} for a parameter shaped {tuple(p.shape)})"
                    )
    if scaler is not None and payload.get("scaler"):
        scaler.load_state_dict(payload["scaler"])
    if payload.get("scheduler") is not None:
        scheduler.load_state_dict(payload["scheduler"])
    else:  # written before schedules existed: the run trained at a constant lr
        scheduler.last_epoch = int(payload["epoch"])
    return Restored(
        start_epoch=int(payload["epoch"]) + 1,
        history=list(payload.get("history", [])),
        best=float(payload.get("best", math.inf)),
        best_epoch=best_epoch_of(payload),
    )


def best_epoch_of(payload: dict[str, Any]) -> int | None:
    """The epoch best.pt should hold: stored since this version, else found in the history."""
    if isinstance(payload.get("best_epoch"), int):
        return payload["best_epoch"]
    best = payload.get("best")
    for row in payload.get("history", []):
        if isinstance(row, dict) and row.get("test_loss") == best:
            return row.get("epoch")
    return None


def repair_best(out: Path, payload: dict[str, Any], best_epoch: int | None) -> None:
    """A kill between writing last.pt and best.pt leaves an older best.pt. When last.pt is the best
    state (its epoch is the best epoch), best.pt is rewritten from it."""
    best = out / "checkpoints" / "best.pt"
    if best_epoch is None or best_epoch != int(payload["epoch"]):
        return
    try:
        current = load_checkpoint(best).get("epoch")
    except ZooError:
        current = None
    if current != best_epoch:
        save_checkpoint(best, payload)


def plan_resume(
    run: Path,
    rundir: RunDir | None,
    *,
    epochs: int | None = None,
    device: str | None = None,
    precision: str | None = None,
    data_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
    keep_every: int | None = None,
    cuda_graph: bool | None = None,
    threads: int | None = None,
    deterministic: bool | str | None = None,
    data_placement: str | None = None,
    data_workers: int | None = None,
) -> tuple[RunPlan, dict]:
    """The plan that continues ``run`` from its ``last.pt``, and that checkpoint.

    What may change on a resume (the rest comes from the run): ``epochs`` (a new total, more than
    the epochs done), ``device``, ``precision``, ``data_dir``, ``keep_every``, ``cuda_graph``,
    ``threads``, ``deterministic``, ``data_placement`` and ``data_workers`` (neither changes a number).
    Given as ``None`` they keep the run's own; a run that chose
    its precision or CPU thread count when it started keeps that choice, unless it moves to another
    kind of device.
    """
    from zoo.devices import resolve_device

    last = run / "checkpoints" / "last.pt"
    if run.exists() and not run.is_dir():
        raise ZooError(
            f"--resume takes a run directory, and {run} is not one; give the folder the run "
            "was trained into (the one holding checkpoints/last.pt)"
        )
    if not last.is_file():
        raise ZooError(
            f"{run} has no checkpoints/last.pt to resume from; start it again with 'zoo train MODEL --out {run}'"
        )
    if rundir is not None:
        rundir.claim_for_resume()
    payload = load_checkpoint(last)
    require_plugins(payload.get("spec", {}), f"run {run}")
    problems = training_problems(payload)
    if problems:
        raise ZooError(f"{last} cannot be resumed: {'; '.join(problems)}; give a run written by zoo train")
    config = payload["config"]
    settings = config["settings"]
    if settings.get("max_steps") is not None:
        raise ZooError(
            f"run {run} was a quick look (--max-steps {settings['max_steps']}), which is not "
            "resumed; train the model again without --max-steps"
        )
    try:
        recipe = Recipe.from_dict(config["recipe"])
    except ZooError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign config
        raise ZooError(f"{last} holds a recipe zoo cannot read ({type(exc).__name__}: {exc})") from None
    done = int(payload["epoch"])
    total = recipe.training.epochs if epochs is None else int(epochs)
    if epochs is None and done >= total:
        raise ZooError(
            f"run {run} already finished its {done} epochs; to train it further, give the new "
            f"total with --epochs (more than {done})"
        )
    if total <= done:
        raise ZooError(
            f"--epochs {total} is not more than the {done} epochs run {run} has done; give a total above {done}"
        )
    # The stored recipe already has the run's overrides applied; a new epoch count wins.
    overrides = dict(config.get("overrides", {}))
    if epochs is not None:
        overrides["epochs"] = int(epochs)
    device = device or settings.get("device", "auto")
    kind = resolve_device(device).type
    # What the run measured when it started (precision, CPU threads) is kept on the same kind
    # of device: a resume must not re-decide it.
    resolved = config.get("resolved", {})
    same_kind = str(resolved.get("device", "")).split(":")[0] == kind
    if precision is None:
        precision = settings.get("precision", "auto")
        if precision == "auto" and resolved.get("precision") in ("fp32", "bf16") and same_kind:
            precision = resolved["precision"]
        if precision == "fp16" and kind != "cuda":
            raise ZooError(
                f"run {run} trained with --precision fp16, which needs CUDA; to continue on "
                f"{device}, add --precision fp32 (or bf16)"
            )
    if threads is None and settings.get("threads") is None and kind == "cpu" and same_kind:
        kept = resolved.get("threads")
        from zoo.threads import max_threads

        # a count chosen on a larger machine is chosen again here rather than refused
        threads = kept if is_count(kept) and kept <= max_threads() else None
    plan = plan_run(
        recipe,
        overrides=overrides,
        out=run,
        device=device,
        precision=precision,
        compile=bool(settings.get("compile", False)),
        seed=settings.get("seed", 0),
        data_dir=settings.get("data_dir") if data_dir is None else data_dir,
        progress=progress,
        keep_every=settings.get("keep_every", 0) if keep_every is None else keep_every,
        cuda_graph=settings.get("cuda_graph", True) if cuda_graph is None else cuda_graph,
        threads=settings.get("threads") if threads is None else threads,
        deterministic=settings.get("deterministic", "auto") if deterministic is None else deterministic,
        data_placement=settings.get("data_placement", "auto") if data_placement is None else data_placement,
        data_workers=settings.get("data_workers") if data_workers is None else data_workers,
    )
    # Kept as the run's record, not looked up again: a resume's weights come from its checkpoint.
    plan.settings.init_from = settings.get("init_from")
    return plan, payload


def resume_into(trainer, payload: dict[str, Any]) -> None:
    """Put a resumed run's checkpoint back into a built ``trainer``: weights, optimizer, scheduler
    and scaler, this process's random generators, the history and the best epoch; rank 0 then
    rewrites metrics.jsonl from the checkpoint (an epoch logged after the last checkpoint, a crash
    in between, is not listed twice), config.json with the settings now used, and best.pt when a
    kill left it behind."""
    from zoo.devices import set_rng_state

    dist, last = trainer.dist, trainer.out / "checkpoints" / "last.pt"
    states = payload["rng"]
    if len(states) != dist.world_size:
        raise ZooError(
            f"this run was trained with {len(states)} process(es); resume it with the same number "
            f"(got {dist.world_size})"
        )
    loaded = dist.gather_objects(int(payload["epoch"]))
    if len(set(loaded)) != 1:  # each process reads last.pt itself: it changed under them
        raise ZooError(
            f"the processes read different checkpoints from {last} (epochs {sorted(set(loaded))}): "
            "something else is writing the run; stop it and resume again"
        )
    restored = restore(
        payload,
        last=last,
        model=trainer.model,
        objective=trainer.objective,
        optimizer=trainer.optimizer,
        scheduler=trainer.scheduler,
        scaler=trainer.scaler,
        capturable=trainer._graph_on,
    )
    trainer.updates.load_state_dict(payload.get("updates"), f"the checkpoint {last}")
    trainer.start_epoch, trainer.history = restored.start_epoch, restored.history
    trainer.best, trainer.best_epoch = restored.best, restored.best_epoch
    try:
        set_rng_state(states[dist.rank], trainer.device)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ZooError(
            f"the random number generator state in {last} is damaged ({exc}); give a checkpoint written by zoo"
        ) from None
    if dist.is_main:
        trainer.rundir.rewrite_metrics(trainer.history)
        trainer.rundir.write_config(trainer.config)
        repair_best(trainer.out, payload, trainer.best_epoch)
