"""What a run trains and how, resolved once: the recipe with its overrides, the run's settings and
the data set, each value checked where it is defined, before anything is built or written.

The command line and the Python API both call :func:`plan_run`; :class:`zoo.Trainer` takes the
:class:`RunPlan` it returns (or builds one from the same arguments). Importing this module does
not import torch, so a misspelt id or a bad ``--set`` is reported at once.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import ZooError, ZooTypeError, ZooValueError, is_count
from zoo.plain_data import to_plain
from zoo.recipe import COMPONENT_KINDS, Recipe, Training
from zoo.threads import thread_count_problem

#: Seeds are kept to 32 bits: the data order and binarization draw from ``seed * 1_000_003 + epoch``.
MAX_SEED = 2**32 - 1


def seed_problem(seed: object, option: str = "--seed") -> str | None:
    """Why ``seed`` cannot seed a run or a draw (None when it can): the one rule of ``zoo train``,
    ``zoo sample`` and ``zoo eval``, a whole number from 0 to :data:`MAX_SEED`."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        return f"{option} must be a whole number from 0 to {MAX_SEED} (got {seed!r})"
    return None


def check_seed(seed: object, option: str = "--seed") -> int:
    """``seed`` when :func:`seed_problem` finds nothing wrong with it; a :class:`ZooValueError` otherwise."""
    problem = seed_problem(seed, option)
    if problem:
        raise (ZooTypeError if isinstance(seed, bool) or not isinstance(seed, int) else ZooValueError)(problem)
    return seed


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
    # A quick look: train this many steps, evaluate on a few test batches, write the run (None: off).
    max_steps: int | None = None
    # Where the data is kept while training: "device" (both splits on it), "stream" (kept on the host
    # and copied batch by batch) or "auto" (on the device when it fits: zoo.streaming.choose_placement).
    data_placement: str = "auto"
    data_workers: int | None = None  # loader processes when streaming; None: zoo.streaming.default_workers
    # Start from these weights (a run, a checkpoint, an exported folder or hf://owner/name[@rev]) instead
    # of a fresh initialisation: fine-tuning. Stored as given (a local path made absolute).
    init_from: str | None = None

    def problems(self) -> list[str]:
        """Every setting a user gave that cannot be used, as one line each."""
        found = []
        if seed_problem(self.seed):
            found.append(seed_problem(self.seed))
        if isinstance(self.keep_every, bool) or not (self.keep_every == 0 or is_count(self.keep_every)):
            found.append(
                "--keep-every must be a whole number of epochs, 0 to keep only last.pt and best.pt "
                f"(got {self.keep_every!r})"
            )
        if not (isinstance(self.deterministic, bool) or self.deterministic == "auto"):
            found.append(f"deterministic must be True, False or 'auto' (got {self.deterministic!r})")
        if self.max_steps is not None and not is_count(self.max_steps):
            found.append(f"--max-steps must be a whole number of steps, at least 1 (got {self.max_steps!r})")
        if thread_count_problem(self.threads):
            found.append(thread_count_problem(self.threads))
        if self.data_placement not in ("auto", "device", "stream"):
            found.append(f"--data-placement must be auto, device or stream (got {self.data_placement!r})")
        if self.data_workers is not None and (
            isinstance(self.data_workers, bool)
            or not isinstance(self.data_workers, int)
            or not 0 <= self.data_workers <= 64
        ):
            found.append(f"--data-workers must be a whole number from 0 to 64 (got {self.data_workers!r})")
        return found


@dataclass
class RunPlan:
    """Everything a :class:`zoo.Trainer` needs to start a run, resolved and checked."""

    recipe: Recipe  # with the overrides applied
    settings: RunSettings
    dataset: Any  # the recipe's zoo.data.DatasetInfo
    overrides: dict[str, Any] = field(default_factory=dict)
    out: Path | None = None  # None: runs/<id>-<time>, made unique
    overwrite: bool = False
    model: Any = None  # a zoo.VAE composed in Python (None: built from the recipe)
    objective: Any = None  # a zoo.Objective object given in Python (None: built from the recipe)

    def build(self, *, resumed: bool = False) -> tuple[Any, Any]:
        """The model and its objective, seeded by the caller: the ones given in Python, or built from
        the recipe (always on a resume, whose weights come from the checkpoint)."""
        from zoo.composition import build_objective, from_recipe

        if self.model is not None and not resumed:
            if tuple(self.model.data_shape) != tuple(self.dataset.shape):
                raise ZooError(
                    f"the model takes data shaped {tuple(self.model.data_shape)} but data set "
                    f"{self.recipe.dataset!r} holds {tuple(self.dataset.shape)}"
                )
            model = self.model
            model.spec["recipe"] = self.recipe.to_dict()
        else:
            model = from_recipe(self.recipe, self.dataset)
        if self.settings.init_from and not resumed:
            init_weights(model, self.settings.init_from)
        if self.objective is not None and not resumed:
            objective, record = build_objective(self.objective, model=model)
        else:
            objective, record = build_objective(self.recipe.objective, self.recipe.objective_options, model=model)
        model.spec["objective"] = record
        return model, objective


def init_weights(model: Any, source: str) -> None:
    """Load the trained weights of ``source`` (what ``--init-from`` names) into ``model``; weights of
    another architecture are a ZooError naming the first differing tensor."""
    from zoo.checkpoint import load_checkpoint, load_weights, resolve_checkpoint_path

    path = resolve_checkpoint_path(source)
    load_weights(
        model,
        load_checkpoint(path)["model"],
        f"the weights of --init-from {source}",
        described="this run's recipe describes",
        remedy="start from weights of the same architecture (compare with 'zoo info MODEL')",
    )


def _check_init_from(value: Any) -> str | None:
    """``--init-from`` as stored: a Hub name as given, a local path made absolute; checked to resolve now."""
    from zoo.checkpoint import resolve_checkpoint_path
    from zoo.hub import is_hub_name

    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ZooTypeError(
            f"init_from must be a run, a checkpoint, an exported folder or hf://owner/name, got {value!r}"
        )
    value = value if is_hub_name(value) else str(Path(value).expanduser().absolute())
    resolve_checkpoint_path(value)  # a missing run or an unknown Hub model fails before anything is built
    return value


def default_run_dir(model_id: str) -> Path:
    """The default name of a run (rank 0 makes it unique with :func:`zoo.rundir.unique_run_dir`)."""
    return Path("runs") / f"{model_id}-{time.strftime('%Y%m%d-%H%M%S')}"


def plan_run(
    model: Any,
    *,
    overrides: dict[str, Any] | None = None,
    dataset: str | None = None,
    training: Training | dict[str, Any] | None = None,
    objective: Any = None,
    objective_options: dict[str, Any] | None = None,
    name: str | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    data: str | os.PathLike | None = None,
    data_options: dict[str, Any] | None = None,
    **settings: Any,
) -> RunPlan:
    """Resolve a run: ``model`` is a registered id, a :class:`Recipe` or a model composed in Python
    (``dataset``, ``training``, ``objective_options`` and ``name`` describe that one); ``overrides``
    take the keys of ``zoo train --set``; ``settings`` are :class:`RunSettings` fields. ``data``
    trains on a user's own images instead of the recipe's data set (a folder or an .npy/.npz file,
    read by :func:`zoo.dataset_from_path` with ``data_options``). Every problem is a
    :class:`ZooError`, raised before anything is built."""
    from zoo.plugins import get_registry

    known = {f.name for f in dataclasses.fields(RunSettings)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ZooError(f"unknown run setting(s) {', '.join(unknown)} (valid: {', '.join(sorted(known))})")
    if overrides is not None and not isinstance(overrides, dict):
        raise ZooTypeError(
            f"overrides must be a dict of settings such as {{'epochs': 5}}, got {type(overrides).__name__}"
        )
    overrides = dict(overrides or {})
    composed = None if isinstance(model, (str, Recipe)) else model
    own_data = _own_data(data, data_options)
    if own_data is not None and dataset is None and composed is not None:
        dataset = own_data.id
    if composed is not None:
        from zoo.model import VAE

        if not isinstance(composed, VAE):
            raise ZooError(f"model must be a registered id, a zoo.Recipe or a zoo.VAE, got {type(model).__name__}")
        base = _recipe_of(
            composed,
            dataset=dataset,
            training=training,
            objective=objective,
            objective_options=objective_options,
            name=name,
        )
        bad = [k for k in overrides if k.split(".", 1)[0] in (*COMPONENT_KINDS, "latent_size", "dataset")]
        if bad:
            raise ZooError(
                f"overrides {', '.join(bad)} change the model, which was composed in Python; "
                "build it with the settings you want instead"
            )
    else:
        if dataset is not None or training is not None or objective_options is not None or name is not None:
            raise ZooError(
                "dataset, training, objective_options and name describe a model composed in Python; "
                "for a registered model use overrides={'epochs': ..., 'objective': ...}"
            )
        if isinstance(model, Recipe):
            base = model
        elif model:
            base = get_registry().recipe(model)
        else:
            raise ZooError("which model? give an id from 'zoo list' (e.g. zoo train vae-conv-mnist) or --resume RUN")
        if objective is not None:
            if not isinstance(objective, str):
                raise ZooError(
                    "pass an objective object only with a model composed in Python; "
                    "for a registered model give its id (objective='iwae')"
                )
            overrides.setdefault("objective", objective)
    recipe = base.with_overrides(overrides) if overrides else base
    if own_data is not None:
        if "dataset" in overrides:
            raise ZooError("give either --data PATH (your own images) or --set dataset=ID, not both")
        recipe = dataclasses.replace(recipe, dataset=own_data.id, data=dict(own_data.source))
    run = RunSettings(**settings)
    problems = [*recipe.training.problems(), *run.problems()] if not overrides else run.problems()
    if problems:
        raise ZooError("; ".join(problems))
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise ZooTypeError(f"out must be a folder path, got {type(out).__name__}")
    if out is not None and not os.fspath(out).strip():
        # Path("") is the working directory: a run would be written (or --overwrite delete) there.
        raise ZooValueError("--out is empty; give the folder for the run, or leave it out for runs/MODEL-TIME")
    if run.data_dir is not None:
        if not isinstance(run.data_dir, (str, os.PathLike)):
            raise ZooTypeError(f"data_dir must be a folder path, got {type(run.data_dir).__name__}")
        if not str(run.data_dir).strip():
            raise ZooError("--data-dir is empty; give the folder holding the data set files")
        # Stored absolute, so the run can be resumed from any working directory.
        run.data_dir = str(Path(run.data_dir).expanduser().absolute())
    run.init_from = _check_init_from(run.init_from)
    run.device, run.seed = str(run.device), int(run.seed)
    run.cuda_graph = bool(run.cuda_graph)
    data = own_data if own_data is not None else dataset_of(recipe)
    return RunPlan(
        recipe=recipe,
        settings=run,
        dataset=data,
        overrides=to_plain(overrides, "overrides"),
        out=Path(out) if out is not None else None,
        overwrite=bool(overwrite),
        model=composed,
        objective=None if objective is None or isinstance(objective, str) else objective,
    )


def _own_data(data: Any, options: dict[str, Any] | None) -> Any:
    """The DatasetInfo of a user's own images at ``data`` (None when not given)."""
    if data is None:
        if options:
            raise ZooError("data_options go with data=PATH (your own images); give data or leave them out")
        return None
    if not isinstance(data, (str, os.PathLike)) or not os.fspath(data).strip():
        raise ZooTypeError(f"data must be the path of a folder of images or an .npy/.npz file (got {data!r})")
    if options is not None and not isinstance(options, dict):
        raise ZooTypeError(f"data_options must be a dict such as {{'image_size': 64}} (got {type(options).__name__})")
    from zoo.user_data import dataset_from_path

    return dataset_from_path(data, **(options or {}))


def dataset_of(recipe: Recipe | dict[str, Any]) -> Any:
    """The DatasetInfo a recipe trains on: the user's own images its ``data`` names, else the data
    set registered as its ``dataset``."""
    from zoo.plugins import get_registry

    if isinstance(recipe, dict):
        source, dataset = recipe.get("data") or None, recipe.get("dataset")
    else:
        source, dataset = recipe.data or None, recipe.dataset
    if source:
        from zoo.user_data import dataset_from_path

        if not isinstance(source, dict):
            raise ZooError(f"the recipe's data must be a table of zoo.dataset_from_path settings (got {source!r})")
        return dataset_from_path(**source)
    return get_registry().get("dataset", dataset).load()


def _recipe_of(
    model: Any,
    *,
    dataset: str | None,
    training: Training | dict[str, Any] | None,
    objective: Any,
    objective_options: dict[str, Any] | None,
    name: str | None,
) -> Recipe:
    """The recipe that rebuilds a model composed in Python (every component must be registered)."""
    from zoo.composition import build_objective
    from zoo.interfaces import Objective
    from zoo.spec import check_rebuildable

    if not dataset:
        raise ZooError(
            "a model composed in Python needs dataset=<id> (see 'zoo list --kind dataset') or data=PATH (your images)"
        )
    check_rebuildable(model)
    if training is None:
        training = Training()
    elif isinstance(training, dict):
        try:
            training = Training(**training)
        except TypeError as exc:
            names = ", ".join(f.name for f in dataclasses.fields(Training))
            raise ZooError(f"training: {exc} (fields: {names})") from None
    elif not isinstance(training, Training):
        raise ZooError(f"training must be a zoo.Training or a dict, got {type(training).__name__}")
    problems = training.problems()
    if problems:
        raise ZooError("; ".join(problems))
    if isinstance(objective, Objective):
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
