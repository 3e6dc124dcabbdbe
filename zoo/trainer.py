"""The generic trainer: any composed model, on CPU or GPU, one process or many (``torchrun``).

Nothing here knows about convolutions, Gaussians or MNIST. What is minimised comes from the
recipe's objective (``loss, logs = objective(model, x)``, a registered :class:`zoo.Objective`);
the trainer owns devices, precision, distribution, checkpoints and logging. Reading order: :class:`Trainer` (setup), :meth:`Trainer.fit`
(the loop), :meth:`Trainer._train_epoch` (the hot path), :meth:`Trainer.evaluate`.

The run directory it leaves::

    RUN/config.json                 resolved recipe, overrides, settings, versions
    RUN/metrics.jsonl               one JSON object per epoch
    RUN/checkpoints/last.pt         after every epoch (best.pt: lowest test loss), written atomically
    RUN/checkpoints/epoch-NNNN.pt   every N epochs with --keep-every N (for curves over training)
    RUN/samples/epoch-NNN.png       images decoded from prior samples
    RUN/reconstructions/epoch-NNN.png   test images (odd rows) above their reconstructions
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import zoo
from zoo.batches import DeviceData
from zoo.checkpoint import load_checkpoint, load_weights, save_checkpoint, training_problems
from zoo.devices import (
    MAX_SEED,
    check_deterministic,
    deterministic_algorithms,
    resolve_device,
    resolve_precision,
    rng_state,
    seed_everything,
    set_rng_state,
)
from zoo.distributed import Dist
from zoo.errors import ZooError, first_line, is_count
from zoo.model import VAE, build_objective, check_rebuildable, from_recipe, require_plugins
from zoo.objectives import TrainingStep
from zoo.recipe import COMPONENT_KINDS, Recipe, Training
from zoo.rundir import RunDir, kept_checkpoint_name, unique_run_dir
from zoo.tracking import TensorBoardLog

# -- settings --------------------------------------------------------------------------------


@dataclass
class RunSettings:
    """How to run (as opposed to what to train, which is the recipe)."""

    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    seed: int = 0
    data_dir: str | None = None
    eval_batch_size: int = 1000
    sample_count: int = 64
    progress: bool | None = None  # None: a bar on a terminal, plain lines otherwise
    keep_every: int = 0  # also keep checkpoints/epoch-NNNN.pt every this many epochs (0: only last and best)
    cuda_graph: bool = True  # on CUDA, replay the whole training step from a CUDA graph when it can be captured
    threads: int | None = None  # CPU threads; None: chosen when the run starts (zoo.threads.choose_threads)
    # "auto": on CUDA, cuDNN's deterministic algorithms and a fixed cuBLAS workspace (bit-exact reruns
    # and resumes of models whose only run-to-run variation is there); True: deterministic algorithms
    # only (torch.use_deterministic_algorithms too); False: the libraries' defaults.
    deterministic: bool | str = "auto"


def _versions() -> dict[str, Any]:
    import torchvision

    from zoo.plugins import get_registry

    plugins = {
        p.name: {"distribution": p.distribution, "version": p.version}
        for p in get_registry().plugins.values()
        if not p.error
    }
    return {"zoo": zoo.__version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": sys.version.split()[0], "plugins": plugins}


def default_run_dir(model_id: str) -> Path:
    """The default name of a run (rank 0 makes it unique with :func:`zoo.rundir.unique_run_dir`)."""
    return Path("runs") / f"{model_id}-{time.strftime('%Y%m%d-%H%M%S')}"


def _setting_problems(recipe: Recipe, seed: Any) -> list[str]:
    """The recipe's training settings (also when a Recipe is passed in without overrides) and the
    seed, which must lie in 0..MAX_SEED."""
    found = list(recipe.training.problems())
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        found.append(f"--seed must be a whole number from 0 to {MAX_SEED} (got {seed})")
    return found


class Trainer:
    """Train a registered model (or a :class:`Recipe`) and write a self-describing run directory.

    >>> trainer = zoo.Trainer("vae-conv-mnist", overrides={"epochs": 1}, device="cpu",
    ...                       data_dir="data", out="runs/first")
    >>> history = trainer.fit()          # one dict per epoch, as in metrics.jsonl

    ``overrides`` take the keys of ``zoo train --set`` (``epochs``, ``lr``, ``latent_size``,
    ``encoder.<option>``...). Under ``torchrun`` each process trains a shard of every epoch;
    ``batch_size`` is the global batch, split evenly across processes, so the optimisation
    matches a single process. ``deterministic=True`` trains with deterministic algorithms only, so
    that a rerun or a resumed run on a GPU is bit-identical whatever the model calls; the default,
    ``"auto"``, asks that of cuDNN and cuBLAS only, and ``False`` of nothing
    (:func:`deterministic_algorithms`).
    """

    def __init__(
        self,
        model: str | Recipe | VAE,
        *,
        overrides: dict[str, Any] | None = None,
        dataset: str | None = None,
        training: Training | dict[str, Any] | None = None,
        objective: str | zoo.Objective | None = None,
        objective_options: dict[str, Any] | None = None,
        name: str | None = None,
        out: str | os.PathLike | None = None,
        overwrite: bool = False,
        device: str = "auto",
        precision: str = "auto",
        compile: bool = False,
        seed: int = 0,
        data_dir: str | os.PathLike | None = None,
        progress: bool | None = None,
        keep_every: int = 0,
        cuda_graph: bool = True,
        threads: int | None = None,
        deterministic: bool | str = "auto",
        _resume: dict[str, Any] | None = None,
        _rundir: RunDir | None = None,
    ) -> None:
        try:
            self._setup(model, overrides, out, overwrite, device, precision, compile, seed, data_dir, progress,
                        _resume, _rundir, dataset=dataset, training=training, objective=objective,
                        objective_options=objective_options, name=name, keep_every=keep_every,
                        cuda_graph=cuda_graph, threads=threads, deterministic=deterministic)
        except BaseException:
            if getattr(self, "rundir", None) is not None:
                self.rundir.release()
            elif _rundir is not None:
                _rundir.release()
            raise

    def _setup(self, model, overrides, out, overwrite, device, precision, compile, seed, data_dir, progress,
               _resume, _rundir, *, dataset, training, objective, objective_options, name, keep_every,
               cuda_graph, threads, deterministic) -> None:
        from zoo.plugins import get_registry

        if isinstance(keep_every, bool) or not (keep_every == 0 or is_count(keep_every)):
            raise ZooError(f"--keep-every must be a whole number of epochs, 0 to keep only last.pt and best.pt "
                           f"(got {keep_every!r})")

        from zoo.threads import check_thread_count

        check_thread_count(threads)
        check_deterministic(deterministic)
        registry = get_registry()
        self.overrides = dict(overrides or {})
        composed = model if isinstance(model, VAE) else None
        if composed is not None:
            base = self._recipe_of(composed, dataset=dataset, training=training, objective=objective,
                                   objective_options=objective_options, name=name)
        else:
            if dataset is not None or training is not None or objective_options is not None or name is not None:
                raise ZooError("dataset, training, objective_options and name describe a model composed in Python; "
                               "for a registered model use overrides={'epochs': ..., 'objective': ...}")
            if isinstance(model, Recipe):
                base = model
            elif isinstance(model, str) and model:
                base = registry.recipe(model)
            else:
                raise ZooError(f"model must be a registered id, a zoo.Recipe or a zoo.VAE, got {type(model).__name__}")
            if objective is not None:
                if not isinstance(objective, str):
                    raise ZooError("pass an objective object only with a model composed in Python; "
                                   "for a registered model give its id (objective='iwae')")
                self.overrides.setdefault("objective", objective)
        if composed is not None:
            bad = [k for k in self.overrides if k.split(".", 1)[0] in (*COMPONENT_KINDS, "latent_size", "dataset")]
            if bad:
                raise ZooError(f"overrides {', '.join(bad)} change the model, which was composed in Python; "
                               "build it with the settings you want instead")
        self.recipe = base.with_overrides(self.overrides) if self.overrides else base
        problems = _setting_problems(self.recipe, seed)
        if problems:
            raise ZooError("; ".join(problems))
        if data_dir is not None:
            if not str(data_dir).strip():
                raise ZooError("--data-dir is empty; give the folder holding the data set files")
            # Stored absolute, so the run can be resumed from any working directory.
            data_dir = Path(data_dir).expanduser().absolute()
        self.settings = RunSettings(
            device=str(device), precision=precision, compile=compile, seed=int(seed),
            data_dir=str(data_dir) if data_dir is not None else None, progress=progress, keep_every=keep_every,
            cuda_graph=bool(cuda_graph), threads=threads, deterministic=deterministic,
        )
        self.dist = Dist.from_env()
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        if self.recipe.training.batch_size % self.dist.world_size:
            raise ZooError(
                f"batch size {self.recipe.training.batch_size} does not split evenly across "
                f"{self.dist.world_size} processes; use a multiple of {self.dist.world_size}"
            )
        self.dataset = registry.get("dataset", self.recipe.dataset).load()
        # Build the model and its objective before anything is written, so a bad option or a
        # component that does not fit is reported with no run directory left behind.
        seed_everything(self.settings.seed + self.dist.rank)
        if composed is not None and _resume is None:
            if tuple(composed.data_shape) != tuple(self.dataset.shape):
                raise ZooError(f"the model takes data shaped {tuple(composed.data_shape)} but data set "
                               f"{self.recipe.dataset!r} holds {tuple(self.dataset.shape)}")
            self.model: VAE = composed
            self.model.spec["recipe"] = self.recipe.to_dict()
        else:
            self.model = from_recipe(self.recipe)
        if isinstance(objective, zoo.Objective) and _resume is None:
            self.objective, record = build_objective(objective)
        else:
            self.objective, record = build_objective(self.recipe.objective, self.recipe.objective_options)
        self.model.spec["objective"] = record
        self._resume = _resume
        self._graph_on = False
        self.threads: int | None = None
        self.precision_trial: dict[str, float] | None = None
        self._tensorboard: TensorBoardLog | None = None
        self.best_epoch: int | None = None
        # Only rank 0 owns (locks and writes) the run directory; the other ranks never touch it.
        self.rundir: RunDir | None = _rundir
        if _resume is not None:
            self.out = Path(out)
        elif self.dist.is_main:
            self._claim_run_dir(out, overwrite)
        else:
            self.out = Path(out) if out is not None else default_run_dir(self.recipe.id)
        self.dist.init(self.device)

    @staticmethod
    def _recipe_of(model: VAE, *, dataset: str | None, training: Training | dict[str, Any] | None,
                   objective: str | zoo.Objective | None, objective_options: dict[str, Any] | None,
                   name: str | None) -> Recipe:
        """The recipe that rebuilds a model composed in Python (every component must be registered)."""
        if not dataset:
            raise ZooError("a model composed in Python needs dataset=<id> (see 'zoo list --kind dataset')")
        check_rebuildable(model)
        if training is None:
            training = Training()
        elif isinstance(training, dict):
            try:
                training = Training(**training)
            except TypeError as exc:
                raise ZooError(f"training: {exc} (fields: {', '.join(f.name for f in dataclasses.fields(Training))})") from None
        elif not isinstance(training, Training):
            raise ZooError(f"training must be a zoo.Training or a dict, got {type(training).__name__}")
        problems = training.problems()
        if problems:
            raise ZooError("; ".join(problems))
        if isinstance(objective, zoo.Objective):
            _, record = build_objective(objective)
            objective_id, options = record["id"], record["options"]
        else:
            objective_id, options = objective or "elbo", dict(objective_options or {})
        components = model.spec["components"]
        return Recipe(
            id=name or "composed",
            description="composed in Python",
            dataset=dataset,
            latent_size=model.latent_size,
            objective=objective_id,
            objective_options=options,
            training=training,
            **{kind: components[kind]["id"] for kind in COMPONENT_KINDS},
            **{f"{kind}_options": dict(components[kind]["options"]) for kind in COMPONENT_KINDS},
        )

    # -- setup ---------------------------------------------------------------------------------
    def _claim_run_dir(self, out: str | os.PathLike | None, overwrite: bool) -> None:
        """Lock the run directory and check it; the old run's files go only in ``fit`` (``RunDir.begin``),
        once the model is built and the data loaded."""
        created = out is None
        self.out = Path(out) if out is not None else unique_run_dir(self.recipe.id)
        self.rundir = RunDir(self.out)
        self.rundir.claim(overwrite=overwrite, created=created)

    def close(self) -> None:
        """Release the run directory's lock (``fit`` does this when it ends)."""
        if self.rundir is not None:
            self.rundir.release()

    def _config(self) -> dict[str, Any]:
        return {
            "model": self.recipe.id,
            "recipe": self.recipe.to_dict(),
            "overrides": self.overrides,
            "settings": dataclasses.asdict(self.settings),
            "resolved": {"device": str(self.device), "precision": self.precision, "world_size": self.dist.world_size,
                         "cuda_graph": self._graph_on, "precision_trial": self.precision_trial,
                         "threads": self.threads},
            "versions": _versions(),
            "command": sys.argv,
        }

    def _build(self) -> None:
        self.model = self.model.to(self.device)
        self.objective = self.objective.to(self.device)
        if self.device.type in ("cpu", "cuda"):
            # NHWC is faster for these convolutions with oneDNN and cuDNN; it is a no-op for other layers.
            self.model = self.model.to(memory_format=torch.channels_last)
        t = self.recipe.training
        self.step_module = TrainingStep(self.model, self.objective)
        images, _ = self.dataset.load("train", self.settings.data_dir)
        test_images, _ = self.dataset.load("test", self.settings.data_dir)
        self.train_data = DeviceData(images, self.device, self.dataset.binarized, self.dist)
        self.test_data = DeviceData(test_images, self.device, self.dataset.binarized, self.dist)
        # Check the data against the likelihood once, then keep the hot loop free of that check.
        self.model.likelihood.check_data(next(self.test_data.eval_batches(self.settings.eval_batch_size)))
        self.model.check_inputs = False
        self._graph_on = self._graph_problem() is None
        if self.precision == "auto":
            self.precision = self._measure_precision()
        params = [p for p in self.step_module.parameters() if p.requires_grad]
        fused: dict[str, Any] = {"fused": True} if self.device.type in ("cuda", "cpu") else {}
        if self._graph_on and self.device.type == "cuda":
            fused["capturable"] = True  # Adam's step count lives on the device, so a graph can replay it
        if t.optimizer == "adam":
            self.optimizer = torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay, **fused)
        elif t.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay, **fused)
        else:
            self.optimizer = torch.optim.SGD(params, lr=t.lr, weight_decay=t.weight_decay, momentum=0.9)
        # Stepped once per epoch: epoch e (1-based) trains at lr * lr_factor(e).
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda done: t.lr_factor(done + 1))
        self.forward_step: Any = self.step_module
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward_step = DistributedDataParallel(self.step_module, device_ids=ids)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        self._loss_fn = self._loss
        self._optimizer_step = self.optimizer.step
        if self.settings.compile:
            # Compile the forward pass with the loss (so its backward is compiled too) and, without a
            # CUDA graph, the optimizer step; compiling the model's forward alone was slower than eager on CPU.
            self._loss_fn = torch.compile(self._loss)
            if self.scaler is None and not self._graph_on:  # under a CUDA graph the fused step is one launch
                self._optimizer_step = torch.compile(self.optimizer.step)
        # Per-epoch sums, kept on the device and updated in place (a CUDA graph writes into them).
        self._sums: dict[str, Tensor] = {}
        self._loss_sum = torch.zeros((), device=self.device)
        self._step_no = torch.zeros((), dtype=torch.long, device=self.device)
        self._first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        self._graph: Any = None
        self._graph_key: Any = None
        self._static_x: Tensor | None = None
        self.start_epoch = 1
        self.history: list[dict[str, Any]] = []
        self.best = math.inf

    def _graph_problem(self) -> str | None:
        """Why the training step is not replayed from a CUDA graph here (None: it is)."""
        if self.device.type != "cuda":
            return "not a CUDA device"
        if not self.settings.cuda_graph:
            return "--no-cuda-graph"
        if self.dist.enabled:
            return "torchrun (DistributedDataParallel steps are not captured)"
        if self.precision == "fp16":
            return "--precision fp16 (the gradient scaler checks for inf on the host)"
        unsafe = sorted({type(m).__name__ for m in self.step_module.modules() if getattr(m, "cuda_graph_safe", True)
                         is False})
        if unsafe:
            return f"{', '.join(unsafe)} set cuda_graph_safe = False (per-step state kept in Python)"
        return None

    def _measure_precision(self) -> str:
        """``auto`` on a CUDA device with bf16: time forward and backward passes of a training batch in
        fp32 and in bf16 autocast and keep bf16 only when it is clearly (1.25x) faster.

        The passes change nothing: the random generators are forked, buffers (a KL warm-up's step
        count, batch-norm statistics) restored and gradients dropped. Rank 0 decides for every process.
        """
        choice = "fp32"
        if self.dist.is_main:
            x = next(self.train_data.eval_batches(self.recipe.training.batch_size // self.dist.world_size))
            x = x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
            times: dict[str, float] = {}
            with self._leaving_no_trace():
                for candidate in ("fp32", "bf16", "fp32", "bf16"):  # alternated: the second round is kept
                    self.precision = candidate
                    for i in range(13):
                        if i == 3:
                            torch.cuda.synchronize(self.device)
                            start = time.perf_counter()
                        loss, _ = self._loss(x, module=self.step_module)
                        loss.backward()
                        self.step_module.zero_grad(set_to_none=True)
                    torch.cuda.synchronize(self.device)
                    times[candidate] = (time.perf_counter() - start) / 10 * 1000
            choice = "bf16" if times["bf16"] * 1.25 < times["fp32"] else "fp32"
            self.precision_trial = {f"{name}_ms_per_step": round(ms, 3) for name, ms in times.items()}
            print(f"precision auto: {choice} (forward+backward {times['fp32']:.2f} ms in fp32, "
                  f"{times['bf16']:.2f} ms in bf16, measured on this model)", file=sys.stderr)
        return self.dist.broadcast_object(choice)

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        # No cast cache under a CUDA graph: cached casts would be freed memory at the next replay.
        return torch.autocast(device_type=self.device.type, dtype=dtype, cache_enabled=not self._graph_on)

    # -- the loop ------------------------------------------------------------------------------
    def fit(self) -> list[dict[str, Any]]:
        """Train for the recipe's epochs (continuing a resumed run); returns the per-epoch metrics.

        On the CPU the run uses the thread count chosen when it starts; the caller's is restored after.
        It also raises glibc's mmap and trim thresholds for the process (:mod:`zoo.allocator`).
        """
        with deterministic_algorithms(self.settings.deterministic, self.device):
            if self.device.type != "cpu":
                return self._fit()
            from zoo.allocator import keep_freed_memory
            from zoo.threads import choose_threads, cpu_threads

            keep_freed_memory()  # no page faults for each step's activations (zoo/allocator.py)
            self.threads, why = choose_threads(self.settings.threads)
            if self.threads != torch.get_num_threads() and self.dist.is_main:
                print(f"CPU threads: {self.threads} ({why})", file=sys.stderr)
            with cpu_threads(self.threads):
                return self._fit()

    def _fit(self) -> list[dict[str, Any]]:
        try:
            self._build()
            # Plain JSON data, computed once: written to config.json and stored in every checkpoint.
            self.config = json.loads(json.dumps(self._config(), default=str))
        except BaseException:
            self.close()
            self._end_distributed()
            raise
        epochs = self.recipe.training.epochs
        try:
            if self._resume is not None:
                self._restore(self._resume)
            elif self.dist.is_main:
                self.rundir.begin(self.config)
            if self.dist.is_main:
                self._tensorboard = TensorBoardLog.open(self.out, self.start_epoch)
            for epoch in range(self.start_epoch, epochs + 1):
                train_loss, seconds, images = self._train_epoch(epoch)
                test = self.evaluate()
                row = {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "test_loss": test["test_loss"],
                    "test_recon": test["test_recon"],
                    "test_kl": test["test_kl"],
                    "epoch_seconds": seconds,
                    "images_per_second": images / seconds if seconds > 0 else float("nan"),
                    "lr": self.optimizer.param_groups[0]["lr"],
                    **self.train_logs,
                }
                self.history.append(row)
                self.scheduler.step()
                self._end_of_epoch(epoch, row)
        finally:
            if self._tensorboard is not None:
                self._tensorboard.close()
                self._tensorboard = None
            self.close()
            self._end_distributed()
        return self.history

    def _end_distributed(self) -> None:
        """Leave the process group. gloo aborts the process ('terminate called without an active
        exception') if a peer closes its connections while this one still has work queued, so every
        process waits at a barrier first, when the run ended normally; after an error the peers may
        be gone, and the group is only dropped."""
        if not (self.dist.enabled and torch.distributed.is_initialized()):
            return
        if sys.exc_info()[0] is None:
            with contextlib.suppress(Exception):
                torch.distributed.barrier()
        torch.distributed.destroy_process_group()

    def _train_epoch(self, epoch: int) -> tuple[float, float, int]:
        self.step_module.train()
        batch_size = self.recipe.training.batch_size
        steps = len(self.train_data) // batch_size
        for value in self._sums.values():
            value.zero_()
        self._loss_sum.zero_()
        self._step_no.zero_()
        self._first_bad.fill_(-1)
        # Finiteness is checked at every step on the CPU; on accelerators once, at the end of the
        # epoch, so the host never waits on the device mid-epoch (the first bad step is still named,
        # and nothing is saved from a non-finite state).
        check_every = 1 if self.device.type == "cpu" else steps
        bar = self._progress(epoch, steps)
        start = time.perf_counter()
        for step, x in enumerate(self.train_data.train_batches(batch_size, self.settings.seed, epoch), 1):
            x = x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
            if self._graph_on:
                self._graph_step(x)
            else:
                self._step(x)
            if step % check_every == 0 or step == steps:
                bad = int(self._first_bad)
                if bad >= 0:
                    self._non_finite(epoch, bad)
            if bar is not None:
                bar.update(x.shape[0] * self.dist.world_size)
                if step % 50 == 0 or step == steps:
                    elapsed = time.perf_counter() - start
                    postfix = {"img_s": f"{step * batch_size / elapsed:.0f}"}
                    if self.device.type == "cpu":  # reading the loss would make an accelerator wait
                        postfix["loss"] = f"{float(self._loss_sum) / step:.2f}"
                    bar.set_postfix(postfix)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
        loss_sum = self._loss_sum.clone()
        log_sums = {key: value.clone() for key, value in self._sums.items()}
        if self.dist.enabled:
            torch.distributed.all_reduce(loss_sum)
            loss_sum /= self.dist.world_size
            for value in log_sums.values():
                torch.distributed.all_reduce(value)
                value /= self.dist.world_size
        self.train_logs = {f"train_{key}": float(value) / steps for key, value in sorted(log_sums.items())}
        return float(loss_sum) / steps, seconds, steps * batch_size

    def _step(self, x: Tensor, *, captured: bool = False) -> None:
        """One optimisation step on batch ``x``, adding its loss and logs to the epoch's sums in place.

        Under capture (``captured``) the gradients are not reset: they are None when capture
        begins, so backward allocates them in the graph's memory and each replay overwrites them.
        """
        optimizer = self.optimizer
        loss, logs = self._loss_fn(x)
        for key, value in logs.items():
            value = value.detach().float()
            if key in self._sums:
                self._sums[key].add_(value)
            else:
                self._sums[key] = value.clone()
        if not captured:
            optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(optimizer)
        else:
            loss.backward()
        clip = self.recipe.training.grad_clip
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(self.step_module.parameters(), clip)
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            self._optimizer_step()
        detached = loss.detach()
        self._loss_sum.add_(detached)
        self._step_no.add_(1)
        self._first_bad.copy_(torch.where((self._first_bad < 0) & ~torch.isfinite(detached),
                                          self._step_no, self._first_bad))

    # -- CUDA graphs ---------------------------------------------------------------------------
    def _graph_step(self, x: Tensor) -> None:
        """The step replayed from a CUDA graph: the batch is copied into a static input and the
        whole step (forward, backward, clipping, optimizer, sums) runs as one launch.

        The graph is captured once the optimizer has its state (after the first eager step of a
        new run, at once on a resume), and again when the learning rate or the batch shape
        changes. A step that cannot be captured (a component that reads a value on the host, for
        instance) turns graphs off for the run, with one line saying why; training goes on eagerly.
        """
        key = (tuple(group["lr"] for group in self.optimizer.param_groups), tuple(x.shape), x.stride())
        if self._graph is None or key != self._graph_key:
            if not self._optimizer_ready():
                self._step(x)  # the first step of a new run creates the optimizer state
                return
            try:
                self._capture(x)
            except Exception as exc:  # noqa: BLE001 - anything capture refuses: fall back to eager
                self._graph_off(exc)
                self._eager_after_failed_capture(x, exc)
                return
            self._graph_key = key
        self._static_x.copy_(x)
        self._graph.replay()

    def _optimizer_ready(self) -> bool:
        """Whether every trained parameter has optimizer state (a graph must not create it)."""
        return all(self.optimizer.state.get(p) for group in self.optimizer.param_groups for p in group["params"])

    def _capture(self, x: Tensor) -> None:
        self._graph = None  # release the previous graph's memory first
        if self._static_x is None or self._static_x.shape != x.shape or self._static_x.stride() != x.stride():
            self._static_x = torch.empty_like(x)
        self._static_x.copy_(x)
        self._warm_up(self._static_x)
        self.optimizer.zero_grad(set_to_none=True)
        self._graph = capture_graph(lambda: self._step(self._static_x, captured=True), self.device)

    def _eager_after_failed_capture(self, x: Tensor, exc: BaseException) -> None:
        """The step, eagerly, after a capture failed. A capture that fails once begun can leave the
        CUDA random generator marked as capturing (torch 2.11 and older), so that every later draw
        fails; the run then stops with one line instead of a traceback (its last checkpoint stands)."""
        try:
            self._step(x)
        except RuntimeError as later:
            if "capture" not in str(later).lower():
                raise
            raise ZooError(f"the training step could not be captured in a CUDA graph ({first_line(exc)}), and "
                           f"CUDA cannot go on in this process after that ({first_line(later)}); run it with "
                           "--no-cuda-graph (zoo train --resume RUN --no-cuda-graph continues from the last "
                           "checkpoint)") from None

    def _warm_up(self, x: Tensor) -> None:
        """Forward and backward passes on a side stream before capture (CUDA libraries set up their
        handles and workspaces there), leaving no trace: the random generators are forked, buffers
        restored and gradients dropped.

        On CUDA the passes run with synchronizing operations made errors
        (``torch.cuda.set_sync_debug_mode``): a step that reads a value on the host (``float(loss)``,
        ``.item()``, a boolean mask) would fail inside the capture, so it is refused here, before a
        capture begins, and the run goes on eagerly with nothing half-captured. With ``--compile`` the
        first pass is let through: it may be the one that compiles (on a resume), and compiling is
        not the step; the second pass runs the compiled step under the check.
        """
        cuda = self.device.type == "cuda"
        stream = torch.cuda.Stream(self.device) if cuda else None
        if cuda:
            stream.wait_stream(torch.cuda.current_stream(self.device))
        with self._leaving_no_trace(), torch.cuda.stream(stream) if cuda else contextlib.nullcontext():
            for i in range(2):
                with _host_syncs_refused(self._syncs_refused_in_pass(i)):
                    loss, logs = self._loss_fn(x)
                    loss.backward()
                self.optimizer.zero_grad(set_to_none=True)
                for key, value in logs.items():  # the sums the graph adds into must exist before capture
                    if key not in self._sums:
                        self._sums[key] = torch.zeros_like(value.detach().float())
        if cuda:
            torch.cuda.current_stream(self.device).wait_stream(stream)

    def _syncs_refused_in_pass(self, i: int) -> bool:
        """Whether warm-up pass ``i`` (0 or 1) runs with host syncs made errors (see _warm_up)."""
        return self.device.type == "cuda" and (i == 1 or not self.settings.compile)

    @contextlib.contextmanager
    def _leaving_no_trace(self):
        """Passes run inside leave the run as it was: the random generators are forked and the
        step's buffers (a KL warm-up's step count, batch-norm statistics) restored after."""
        saved = [(b, b.detach().clone()) for b in self.step_module.buffers()]
        try:
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                yield
        finally:  # also when a pass fails (a step that cannot be captured): the run goes on from here
            with torch.no_grad():
                for buffer, value in saved:
                    buffer.copy_(value)

    def _graph_off(self, exc: BaseException) -> None:
        self._graph_on = False
        self._graph = self._graph_key = self._static_x = None
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        print(f"note: the training step could not be captured in a CUDA graph ({first_line(exc)}); training on "
              "without one (--no-cuda-graph skips the attempt)", file=sys.stderr)

    def _loss(self, x: Tensor, module: nn.Module | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """The objective's loss of one batch (and what it logs), in fp32."""
        with self._autocast():
            loss, logs = (module or self.forward_step)(x)
        return loss.float(), logs

    def _non_finite(self, epoch: int, step: int) -> None:
        last = self.out / "checkpoints" / "last.pt"
        kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
        raise ZooError(
            f"the loss became non-finite (NaN or inf) at epoch {epoch}, step {step}; {kept}. "
            "Try a lower --lr, --set grad_clip=1.0, or --precision fp32"
        )

    def _progress(self, epoch: int, steps: int):
        show = self.settings.progress
        if show is None:
            show = sys.stderr.isatty()
        if not self.dist.is_main or not show:
            return None
        from tqdm.auto import tqdm

        total = steps * self.recipe.training.batch_size
        return tqdm(total=total, desc=f"epoch {epoch}/{self.recipe.training.epochs}", unit="img",
                    unit_scale=True, leave=False, file=sys.stderr)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Test-set negative ELBO, reconstruction and KL terms, nats per image (exact under DDP).

        Sums and the image count are kept on the device and, under torchrun, summed over the
        processes before dividing (shards may differ by an image). Not torchmetrics' MeanMetric:
        importing torchmetrics costs 3-4 s of start-up, a third of a GPU run's first epoch.
        """
        self.model.eval()
        sums, count = torch.zeros(3, device=self.device), 0  # -ELBO, -recon, KL; images
        for x in self.test_data.eval_batches(self.settings.eval_batch_size):
            x = x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
            with self._autocast():
                terms = self.model(x)
            sums += torch.stack([-terms.elbo.float().sum(), -terms.recon.float().sum(), terms.kl.float().sum()])
            count += x.shape[0]
        totals = torch.cat([sums, sums.new_tensor([count])])
        if self.dist.enabled:
            torch.distributed.all_reduce(totals)
        loss, recon, kl, count = totals.tolist()
        return {"test_loss": loss / count, "test_recon": recon / count, "test_kl": kl / count}

    # -- checkpoints and artefacts -------------------------------------------------------------
    def _payload(self, epoch: int, rng: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "spec": self.model.spec,
            "model": self.model.state_dict(),
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": epoch,
            "rng": rng,
            "history": self.history,
            "best": self.best,
            "config": self.config,
        }

    def _end_of_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        rng = self.dist.gather_objects(rng_state(self.device))
        if self.dist.is_main:
            improved = row["test_loss"] < self.best
            if improved:
                self.best = row["test_loss"]
                self.best_epoch = epoch
            payload = self._payload(epoch, rng)
            payload["best_epoch"] = self.best_epoch
            # last.pt first: a kill before best.pt is written leaves a last.pt that knows it is the
            # best state, and the resume rewrites best.pt from it (see _restore).
            save_checkpoint(self.out / "checkpoints" / "last.pt", payload)
            if improved:
                save_checkpoint(self.out / "checkpoints" / "best.pt", payload)
            if self.settings.keep_every and epoch % self.settings.keep_every == 0:
                save_checkpoint(self.out / "checkpoints" / kept_checkpoint_name(epoch), payload)
            self.rundir.append_metrics(row)
            images = self._save_images(epoch)
            if self._tensorboard is not None:
                self._tensorboard.epoch(row, images)
            self._report(row)
        self.dist.barrier()

    def _report(self, row: dict[str, Any]) -> None:
        print(
            f"epoch {row['epoch']}/{self.recipe.training.epochs}: train {row['train_loss']:.2f}  "
            f"test {row['test_loss']:.2f} nats/image (recon {row['test_recon']:.2f}, kl {row['test_kl']:.2f})  "
            f"{row['epoch_seconds']:.1f} s, {row['images_per_second']:.0f} img/s",
            file=sys.stderr,
        )

    @torch.no_grad()
    def _save_images(self, epoch: int) -> dict[str, tuple[Tensor, int]]:
        """Write the epoch's sample and reconstruction grids; returns them as (images, per row)."""
        from zoo.images import save_grid

        # Fixed noise, so successive epochs' sample grids are comparable; the training RNG is untouched.
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.settings.seed)
            samples = self.model.sample(self.settings.sample_count)
        save_grid(samples, self.out / "samples" / f"epoch-{epoch:03d}.png")
        x = next(self.test_data.eval_batches(32))[:32]
        # Up to 4 rows of 8; fewer when this process's share of the test set is small.
        cols = min(8, len(x))
        x = x[: len(x) // cols * cols]
        recon = self.model.reconstruct(x)
        shape = (len(x) // cols, cols, *x.shape[1:])
        rows = torch.stack([x.reshape(shape), recon.reshape(shape)], dim=1).reshape(-1, *x.shape[1:])
        save_grid(rows, self.out / "reconstructions" / f"epoch-{epoch:03d}.png", nrow=cols)
        return {"samples": (samples, 8), "reconstructions": (rows, cols)}

    def _restore(self, payload: dict[str, Any]) -> None:
        last = self.out / "checkpoints" / "last.pt"
        states = payload["rng"]
        if len(states) != self.dist.world_size:
            raise ZooError(
                f"this run was trained with {len(states)} process(es); resume it with the same number "
                f"(got {self.dist.world_size})"
            )
        loaded = self.dist.gather_objects(int(payload["epoch"]))
        if len(set(loaded)) != 1:  # each process reads last.pt itself: it changed under them
            raise ZooError(f"the processes read different checkpoints from {last} (epochs {sorted(set(loaded))}): "
                           "something else is writing the run; stop it and resume again")
        load_weights(self.model, payload["model"], f"the weights in {last}")
        if payload.get("objective") is not None:
            load_weights(self.objective, payload["objective"], f"the objective's state in {last}")
        load_weights(self.optimizer, payload["optimizer"], f"the optimizer state in {last}")
        for group in self.optimizer.param_groups:  # as this process runs, not as the saved run did
            if "capturable" in group:
                group["capturable"] = self._graph_on
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                for value in self.optimizer.state.get(p, {}).values():
                    if isinstance(value, Tensor) and value.dim() > 0 and value.shape != p.shape:
                        raise ZooError(f"the optimizer state in {last} does not fit the model (a tensor shaped "
                                       f"{tuple(value.shape)} for a parameter shaped {tuple(p.shape)})")
        if self.scaler is not None and payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
        if payload.get("scheduler") is not None:
            self.scheduler.load_state_dict(payload["scheduler"])
        else:  # written before schedules existed: the run trained at a constant lr
            self.scheduler.last_epoch = int(payload["epoch"])
        self.start_epoch = int(payload["epoch"]) + 1
        self.history = list(payload.get("history", []))
        self.best = float(payload.get("best", math.inf))
        self.best_epoch = _best_epoch(payload)
        try:
            set_rng_state(states[self.dist.rank], self.device)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ZooError(f"the random number generator state in {last} is damaged ({exc}); "
                           "give a checkpoint written by zoo") from None
        if self.dist.is_main:
            # Rewrite the metrics from the checkpoint, so an epoch logged after the last checkpoint
            # (a crash in between) is not listed twice; and config.json, with the settings now used.
            self.rundir.rewrite_metrics(self.history)
            self.rundir.write_config(self.config)
            self._repair_best(payload)

    def _repair_best(self, payload: dict[str, Any]) -> None:
        """A kill between writing last.pt and best.pt leaves an older best.pt. When last.pt is the best
        state (its epoch is the best epoch), best.pt is rewritten from it."""
        best = self.out / "checkpoints" / "best.pt"
        if self.best_epoch is None or self.best_epoch != int(payload["epoch"]):
            return
        try:
            current = load_checkpoint(best).get("epoch")
        except ZooError:
            current = None
        if current != self.best_epoch:
            save_checkpoint(best, payload)

    # -- resuming ------------------------------------------------------------------------------
    @classmethod
    def resume(cls, run_dir: str | os.PathLike, *, epochs: int | None = None, device: str | None = None,
               precision: str | None = None, data_dir: str | os.PathLike | None = None,
               progress: bool | None = None, keep_every: int | None = None,
               cuda_graph: bool | None = None, threads: int | None = None,
               deterministic: bool | str | None = None) -> Trainer:
        """Continue the run in ``run_dir`` exactly where its last checkpoint left it.

        What may change on a resume (the rest comes from the run): ``epochs`` (a new total, more
        than the epochs done), ``device``, ``precision``, ``data_dir``, ``keep_every``, ``cuda_graph``,
        ``threads`` and ``deterministic``. Given as ``None`` they keep the run's own; a run that chose
        its precision or CPU thread count when it started keeps that choice, unless it moves to another kind of
        device. Rank 0 holds the run's lock from before it reads ``last.pt``.
        """
        run = Path(run_dir)
        dist = Dist.from_env()
        rundir = RunDir(run) if dist.is_main else None
        last = run / "checkpoints" / "last.pt"
        if run.exists() and not run.is_dir():
            raise ZooError(f"--resume takes a run directory, and {run} is not one; give the folder the run "
                           "was trained into (the one holding checkpoints/last.pt)")
        if not last.is_file():
            raise ZooError(f"{run} has no checkpoints/last.pt to resume from; start it again with "
                           f"'zoo train MODEL --out {run}'")
        if rundir is not None:
            rundir.claim_for_resume()
        try:
            payload = load_checkpoint(last)
            require_plugins(payload.get("spec", {}), f"run {run}")
            problems = training_problems(payload)
            if problems:
                raise ZooError(f"{last} cannot be resumed: {'; '.join(problems)}; give a run written by zoo train")
            config = payload["config"]
            settings = config["settings"]
            try:
                recipe = Recipe.from_dict(config["recipe"])
            except ZooError:
                raise
            except Exception as exc:  # noqa: BLE001 - a damaged or foreign config
                raise ZooError(f"{last} holds a recipe zoo cannot read ({type(exc).__name__}: {exc})") from None
            done = int(payload["epoch"])
            total = recipe.training.epochs if epochs is None else int(epochs)
            if epochs is None and done >= total:
                raise ZooError(f"run {run} already finished its {done} epochs; to train it further, give the new "
                               f"total with --epochs (more than {done})")
            if total <= done:
                raise ZooError(f"--epochs {total} is not more than the {done} epochs run {run} has done; "
                               f"give a total above {done}")
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
                    raise ZooError(f"run {run} trained with --precision fp16, which needs CUDA; to continue on "
                                   f"{device}, add --precision fp32 (or bf16)")
            if threads is None and settings.get("threads") is None and kind == "cpu" and same_kind:
                kept = resolved.get("threads")
                threads = kept if is_count(kept) else None
            if data_dir is None:
                data_dir = settings.get("data_dir")
            trainer = cls(
                recipe,
                overrides=overrides,
                out=run,
                device=device,
                precision=precision,
                compile=bool(settings.get("compile", False)),
                seed=settings.get("seed", 0),
                data_dir=data_dir,
                progress=progress,
                keep_every=settings.get("keep_every", 0) if keep_every is None else keep_every,
                cuda_graph=settings.get("cuda_graph", True) if cuda_graph is None else cuda_graph,
                threads=settings.get("threads") if threads is None else threads,
                deterministic=settings.get("deterministic", "auto") if deterministic is None else deterministic,
                _resume=payload,
                _rundir=rundir,
            )
        except BaseException:
            if rundir is not None:
                rundir.release()
            raise
        return trainer


@contextlib.contextmanager
def _host_syncs_refused(on: bool):
    """With ``on``, CUDA operations that make the host wait for the device raise (the caller's
    mode is restored after)."""
    if not on:
        yield
        return
    before = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings():  # "a prototype feature": printed to every CUDA run otherwise
        warnings.simplefilter("ignore", UserWarning)
        torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(before)


def capture_graph(step, device: torch.device) -> Any:
    """``step`` captured in a CUDA graph on ``device`` (not run: ``replay()`` runs it)."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.device(device), torch.cuda.graph(graph):
        step()
    return graph


def _best_epoch(payload: dict[str, Any]) -> int | None:
    """The epoch best.pt should hold: stored since this version, else found in the history."""
    if isinstance(payload.get("best_epoch"), int):
        return payload["best_epoch"]
    best = payload.get("best")
    for row in payload.get("history", []):
        if isinstance(row, dict) and row.get("test_loss") == best:
            return row.get("epoch")
    return None
