"""The generic trainer: any composed model, on CPU or GPU, one process or many (``torchrun``).

Nothing here knows about convolutions, Gaussians or MNIST. What is minimised comes from the
recipe's objective (``loss, logs = objective(model, x)``, a registered :class:`zoo.Objective`);
the trainer runs the loop and leaves the rest to one module each: what to train and how
(:mod:`zoo.plan`), devices, precision and generators (:mod:`zoo.devices`), processes
(:mod:`zoo.distributed`), batches (:mod:`zoo.batches`), CUDA graphs (:mod:`zoo.cuda_graphs`) and
checkpoints (:mod:`zoo.run_state`). Reading order: :meth:`Trainer.fit` (the loop),
:meth:`Trainer._train_epoch` (the hot path), :meth:`Trainer._step`, :meth:`Trainer.evaluate`.

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
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from zoo import run_state
from zoo.composition import check_objective_fits
from zoo.cuda_graphs import GraphedStep, graph_problem
from zoo.devices import (
    deterministic_algorithms,
    measure_precision,
    resolve_device,
    resolve_precision,
    rng_state,
    seed_everything,
)
from zoo.distributed import Dist
from zoo.epoch_sums import EpochSums
from zoo.errors import ZooError, ZooTypeError, ZooValueError
from zoo.estimators import test_elbo, test_reconstruction
from zoo.images import save_epoch_grids
from zoo.interfaces import TrainingContext
from zoo.objectives import TrainingStep
from zoo.optimizers import build_optimizer, build_schedule
from zoo.plan import RunPlan, default_run_dir, plan_run
from zoo.rundir import RunDir, unique_run_dir
from zoo.streaming import choose_placement, split_data
from zoo.tracking import TensorBoardLog
from zoo.updates import Updates

#: A quick look (``max_steps``) evaluates on this many test batches of the training batch size.
QUICK_EVAL_BATCHES = 4


class Trainer:
    """Train a registered model (or a :class:`Recipe`, or a model composed in Python) and write a
    self-describing run directory.

    >>> trainer = zoo.Trainer("vae-conv-mnist", overrides={"epochs": 1}, device="cpu",
    ...                       data_dir="data", out="runs/first")
    >>> history = trainer.fit()          # one dict per epoch, as in metrics.jsonl

    The options are :func:`zoo.plan.plan_run`'s (``overrides`` with the keys of ``zoo train --set``,
    ``out``, ``overwrite`` and the :class:`zoo.plan.RunSettings` fields), or a
    :class:`zoo.plan.RunPlan` is given instead. Under ``torchrun`` each process trains a shard of
    every epoch; ``batch_size`` is the global batch, split evenly across processes.
    """

    def __init__(
        self, model: Any, *, _resume: dict[str, Any] | None = None, _rundir: RunDir | None = None, **options: Any
    ) -> None:
        self.rundir: RunDir | None = _rundir
        try:
            if isinstance(model, RunPlan):
                if options:
                    raise ZooError(f"a RunPlan holds every setting; give it alone (got also {', '.join(options)})")
                plan = model
            else:
                plan = plan_run(model, **options)
            self._setup(plan, _resume)
        except BaseException:
            self.close()
            raise

    def _setup(self, plan: RunPlan, resume: dict[str, Any] | None) -> None:
        self.plan, self.recipe, self.settings = plan, plan.recipe, plan.settings
        self.overrides, self.dataset = plan.overrides, plan.dataset
        self.dist = Dist.from_env()
        self.device = resolve_device(self.settings.device)
        self.precision = resolve_precision(self.settings.precision, self.device)
        if self.recipe.training.batch_size % self.dist.world_size:
            raise ZooError(
                f"batch size {self.recipe.training.batch_size} does not split evenly across "
                f"{self.dist.world_size} processes; use a multiple of {self.dist.world_size}"
            )
        # Build the model and its objective before anything is written, so a bad option or a
        # component that does not fit is reported with no run directory left behind.
        seed_everything(self.settings.seed + self.dist.rank)
        self.model, self.objective = plan.build(resumed=resume is not None)
        check_objective_fits(self.model, self.objective, self.model.spec.get("objective"))
        self._resume, self._fitted = resume, False
        self.graphed: GraphedStep | None = None
        self._graph_wanted = False
        self.threads: int | None = None
        self.precision_trial: dict[str, float] | None = None
        self._tensorboard: TensorBoardLog | None = None
        self.best_epoch: int | None = None
        # Only rank 0 owns (locks and writes) the run directory; the other ranks never touch it.
        if resume is not None:
            self.out = plan.out
        elif self.dist.is_main:
            self.out = plan.out if plan.out is not None else unique_run_dir(self.recipe.id)
            self.rundir = RunDir(self.out)
            # The old run's files go only in fit (RunDir.begin), once the model is built and the data loaded.
            self.rundir.claim(overwrite=plan.overwrite, created=plan.out is None)
        else:
            self.out = plan.out if plan.out is not None else default_run_dir(self.recipe.id)
        self.dist.init(self.device)

    def close(self) -> None:
        """Release the run directory's lock (``fit`` does this when it ends)."""
        if getattr(self, "rundir", None) is not None:
            self.rundir.release()

    @property
    def _graph_on(self) -> bool:
        """Whether the step is replayed from a CUDA graph (it may be turned off during the run)."""
        return self.graphed.on if self.graphed is not None else self._graph_wanted

    def _graph_problem(self) -> str | None:
        if getattr(self, "updates", None):
            return f"{type(self.objective).__name__} runs optimizers of its own (Objective.updates)"
        return graph_problem(
            self.device,
            enabled=self.settings.cuda_graph,
            distributed=self.dist.enabled,
            precision=self.precision,
            module=self.step_module,
        )

    def _build(self) -> None:
        self.model = self.model.to(self.device)
        self.objective = self.objective.to(self.device)
        if self.device.type in ("cpu", "cuda"):
            # NHWC is faster for these convolutions with oneDNN and cuDNN; it is a no-op for other layers.
            self.model = self.model.to(memory_format=torch.channels_last)
        t = self.recipe.training
        self.step_module = TrainingStep(self.model, self.objective)
        self._load_data()
        self.context = TrainingContext(
            dataset_size=len(self.train_data),
            batch_size=t.batch_size,
            steps_per_epoch=len(self.train_data) // t.batch_size,
            epochs=t.epochs,
            world_size=self.dist.world_size,
        )
        self.objective.context = self.context
        # Check the data against the likelihood once, then keep the hot loop free of that check.
        self.model.likelihood.check_data(next(self.test_data.eval_batches(self.settings.eval_batch_size)))
        self.updates = Updates(self.objective, self.step_module, t.lr)  # a discriminator's, say
        if self.updates and self.dist.enabled:
            raise ZooError(
                f"{type(self.objective).__name__} runs optimizers of its own (Objective.updates), which "
                "torchrun does not support yet; train it in one process"
            )
        self.model.check_inputs = False
        self._graph_wanted = self._graph_problem() is None
        if self.precision == "auto":
            self.precision = self._measure_precision()
        self.optimizer = build_optimizer(t, self.updates.model_params, self.device, capturable=self._graph_wanted)
        self.scheduler = build_schedule(t, self.optimizer)
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
            if self.scaler is None and not self._graph_wanted:  # under a CUDA graph the fused step is one launch
                self._optimizer_step = torch.compile(self.optimizer.step)
        # Per-epoch sums, kept on the device and updated in place (a CUDA graph writes into them).
        self.sums = EpochSums(self.device)
        if self._graph_wanted:
            self.graphed = GraphedStep(
                self._step,
                self._loss_fn,
                self.optimizer,
                self.step_module,
                self.sums.logs,
                self.device,
                compiled=self.settings.compile,
            )
        self.start_epoch = 1
        self.history: list[dict[str, Any]] = []
        self.best = math.inf

    def _load_data(self) -> None:
        """Both splits, held on the device or streamed to it (:func:`zoo.streaming.choose_placement`).
        Under ``torchrun`` rank 0 reads (and decodes, the first time) before the others."""
        binarized, data_dir, settings = self.dataset.binarized, self.settings.data_dir, self.settings
        if not self.dist.is_main:
            self.dist.barrier()
        train, test = self.dataset.load("train", data_dir)[0], self.dataset.load("test", data_dir)[0]
        if self.dist.is_main:
            self.dist.barrier()
        nbytes = train.numel() * train.element_size() + test.numel() * test.element_size()
        placement, why = choose_placement(settings.data_placement, nbytes, self.device)
        placement = self.dist.broadcast_object(placement)
        self.data_placement = placement
        if placement == "stream" and self.dist.is_main:
            print(f"data: streamed to {self.device.type} ({why})", file=sys.stderr)
        self.train_data = split_data(train, self.device, binarized, self.dist, placement, workers=settings.data_workers)
        self.test_data = split_data(test, self.device, binarized, self.dist, placement, workers=settings.data_workers)

    def _measure_precision(self) -> str:
        """``auto`` on a CUDA device with bf16: :func:`zoo.devices.measure_precision` on a training
        batch of this model. Rank 0 decides for every process."""
        choice = "fp32"
        if self.dist.is_main:
            x = next(self.train_data.eval_batches(self.recipe.training.batch_size // self.dist.world_size))
            x = x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x

            def one_pass(precision: str) -> None:
                self.precision = precision
                loss = self._loss(x, module=self.step_module)[0]
                loss.backward()
                self.step_module.zero_grad(set_to_none=True)

            choice, self.precision_trial = measure_precision(one_pass, self.step_module, self.device)
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
        if self._fitted:
            raise ZooError(
                "this Trainer has already run fit(); to train further, use "
                f"zoo.Trainer.resume({str(self.out)!r}, epochs=...)"
            )
        self._fitted = True
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
            self.config = json.loads(json.dumps(run_state.run_config(self), default=str))
        except BaseException:
            self.close()
            self.dist.shutdown()
            raise
        epochs = 1 if self.settings.max_steps else self.recipe.training.epochs
        try:
            if self._resume is not None:
                run_state.resume_into(self, self._resume)
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
                    **test,
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
            self.dist.shutdown()
        return self.history

    def _train_epoch(self, epoch: int) -> tuple[float, float, int]:
        self.step_module.train()
        batch_size = self.recipe.training.batch_size
        batches = self.train_data.train_batches(batch_size, self.settings.seed, epoch)
        steps = len(self.train_data) // batch_size
        if self.settings.max_steps and steps > self.settings.max_steps:
            steps = self.settings.max_steps
            batches = itertools.islice(batches, steps)
        self.sums.zero()
        # Finiteness is checked at every step on the CPU; on accelerators once, at the end of the
        # epoch, so the host never waits on the device mid-epoch (the first bad step is still named,
        # and nothing is saved from a non-finite state).
        check_every = 1 if self.device.type == "cpu" else steps
        show = self.settings.progress if self.dist.is_main else False  # None: only on a terminal
        bar = progress_bar(show, epoch, self.recipe.training.epochs, steps * self.recipe.training.batch_size)
        start = time.perf_counter()
        self.context.epoch, self.context.step = epoch, (epoch - 1) * self.context.steps_per_epoch
        for step, x in enumerate(batches, 1):
            x = x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
            if self._graph_on:
                self.graphed(x)
            else:
                self._step(x)
            self.context.step += 1
            if step % check_every == 0 or step == steps:
                bad = self.sums.first_bad_step()
                if bad is not None:
                    non_finite(self.out, epoch, bad)
            if bar is not None:
                bar.update(x.shape[0] * self.dist.world_size)
                if step % 50 == 0 or step == steps:
                    postfix = {"img_s": f"{step * batch_size / (time.perf_counter() - start):.0f}"}
                    if self.device.type == "cpu":  # reading the loss would make an accelerator wait
                        postfix["loss"] = f"{float(self.sums.loss) / step:.2f}"
                    bar.set_postfix(postfix)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
        loss, self.train_logs = self.sums.means(steps, self.dist)
        return loss, seconds, steps * batch_size

    def _step(self, x: Tensor, *, captured: bool = False) -> None:
        """One optimisation step on batch ``x``, adding its loss and logs to the epoch's sums in place.

        With an objective's own updates (:class:`zoo.updates.Updates`) each loss's gradient goes to
        its own parameters, the model's optimizer steps first, then each update's in order.

        Under capture (``captured``) the gradients are not reset: they are None when capture
        begins, so backward allocates them in the graph's memory and each replay overwrites them.
        """
        optimizer, scaler, updates = self.optimizer, self.scaler, self.updates
        loss, logs, losses = self._loss_fn(x)
        extra = updates.losses(losses, type(self.objective).__name__) if updates else []
        if extra:
            logs = {**logs, **{f"loss_{name}": value.detach() for name, value in zip(updates.names, extra)}}
        self.sums.add(loss.detach(), logs)
        if not captured:
            optimizer.zero_grad(set_to_none=True)
            updates.zero_grad()
        updates.backward(loss, extra, scaler.scale if scaler is not None else None)
        if scaler is not None:
            scaler.unscale_(optimizer)
        clip = self.recipe.training.grad_clip
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(updates.model_params, clip)
        if scaler is not None:
            scaler.step(optimizer)
        else:
            self._optimizer_step()
        updates.step(scaler)
        if scaler is not None:
            scaler.update()

    def _loss(
        self, x: Tensor, module: nn.Module | None = None
    ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor] | None]:
        """The objective's loss of one batch, what it logs and its updates' losses, in fp32."""
        with self._autocast():
            out = (module or self.forward_step)(x)
        return out[0].float(), out[1], getattr(out, "losses", None)  # a plain (loss, logs) tuple too

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Test-set negative ELBO, reconstruction and KL terms, nats per image (exact under DDP,
        :func:`zoo.estimators.test_elbo`); for a deterministic encoder, which has no ELBO, -log p(x|z)
        at the code as ``test_loss`` and ``test_recon`` (:func:`zoo.estimators.test_reconstruction`).
        A quick look (``max_steps``) reads the first few batches."""
        self.model.eval()
        batches = self.test_data.eval_batches(self.settings.eval_batch_size)
        if self.settings.max_steps:
            size = max(1, self.recipe.training.batch_size // self.dist.world_size)
            batches = itertools.islice(self.test_data.eval_batches(size), QUICK_EVAL_BATCHES)
        score = test_reconstruction if self.model.deterministic else test_elbo
        return score(self.model, batches, self._autocast, self.dist)

    # -- checkpoints and artefacts -------------------------------------------------------------
    def _end_of_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        rng = self.dist.gather_objects(rng_state(self.device))
        if self.dist.is_main:
            improved = row["test_loss"] < self.best
            if improved:
                self.best, self.best_epoch = row["test_loss"], epoch
            payload = run_state.checkpoint_payload(self, epoch, rng)
            run_state.save_epoch(self.out, payload, epoch=epoch, improved=improved, keep_every=self.settings.keep_every)
            self.rundir.append_metrics(row)
            images = save_epoch_grids(
                self.model, self.test_data, self.out, epoch, seed=self.settings.seed, count=self.settings.sample_count
            )
            if self._tensorboard is not None:
                self._tensorboard.epoch(row, images)
            terms = f"kl {row['test_kl']:.2f}" if "test_kl" in row else "recon only: deterministic encoder"
            print(
                f"epoch {row['epoch']}/{self.recipe.training.epochs}: train {row['train_loss']:.2f}  "
                f"test {row['test_loss']:.2f} nats/image (recon {row['test_recon']:.2f}, {terms})  "
                f"{row['epoch_seconds']:.1f} s, {row['images_per_second']:.0f} img/s",
                file=sys.stderr,
            )
        self.dist.barrier()

    @classmethod
    def resume(cls, run_dir: str | os.PathLike, **changes: Any) -> Trainer:
        """Continue the run in ``run_dir`` exactly where its last checkpoint left it. What may change
        (``epochs``, ``device``, ``precision``, ``data_dir``, ``progress``, ``keep_every``, ``cuda_graph``,
        ``threads``, ``deterministic``, ``data_placement``, ``data_workers``) is :func:`zoo.run_state.plan_resume`'s to say. Rank 0 holds
        the run's lock from before it reads ``last.pt``."""
        if not isinstance(run_dir, (str, os.PathLike)):
            raise ZooTypeError(f"resume takes a run directory's path, got {run_dir!r}")
        if not os.fspath(run_dir).strip():
            raise ZooValueError("resume takes a run directory's path, got an empty one")
        run = Path(run_dir)
        rundir = RunDir(run) if Dist.from_env().is_main else None
        try:
            plan, payload = run_state.plan_resume(run, rundir, **changes)
            return cls(plan, _resume=payload, _rundir=rundir)
        except BaseException:
            if rundir is not None:
                rundir.release()
            raise


def non_finite(out: Path, epoch: int, step: int) -> None:
    """Stop the run: the loss became NaN or infinite at ``step`` of ``epoch`` (nothing is saved from that state)."""
    last = out / "checkpoints" / "last.pt"
    kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
    raise ZooError(
        f"the loss became non-finite (NaN or inf) at epoch {epoch}, step {step}; {kept}. "
        "Try a lower --lr, --set grad_clip=1.0, or --precision fp32"
    )


def progress_bar(show: bool | None, epoch: int, epochs: int, images: int):
    """The epoch's tqdm bar on stderr (None when not shown): ``show`` True or False, or None for
    a bar only on a terminal."""
    if show is None:
        show = sys.stderr.isatty()
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=images, desc=f"epoch {epoch}/{epochs}", unit="img", unit_scale=True, leave=False, file=sys.stderr)
