"""Recipes: a model id bound to its components, data set and training settings."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import ZooError, is_count
from zoo.plain_data import MAX_INT, to_plain

COMPONENT_KINDS = ("encoder", "decoder", "prior", "likelihood")
#: What a recipe names by id and configures with ``<kind>_options``.
OPTION_KINDS = (*COMPONENT_KINDS, "objective")
#: The largest latent size a recipe may ask for (the next layers allocate latent_size x hidden weights).
MAX_LATENT_SIZE = 2**20
#: The optimizers a recipe may train with (zoo.optimizers.build_optimizer).
OPTIMIZERS = ("adam", "adamw", "adagrad", "sgd")
#: The kebab-case ids plugins must use (zoo.registry.ID_PATTERN, matched in full).
ID_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def check_id(value: Any, where: str = "id") -> str:
    """``value`` if it is a kebab-case id (what plugins must register, and what names a run's folder)."""
    if not isinstance(value, str) or not ID_RE.fullmatch(value) or len(value) > 200:
        raise ZooError(
            f"{where} must be kebab-case, at most 200 characters (lower-case letters and digits separated by "
            f"single hyphens, e.g. 'my-vae'), got {_short(value)}"
        )
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _path_safe(value: Any) -> bool:
    """Whether a recipe id can name a folder under runs/ without leaving it."""
    return (
        isinstance(value, str)
        and value not in ("", ".", "..")
        and not any(c in value for c in "/\\")
        and all(c.isprintable() for c in value)
    )


@dataclass(frozen=True)
class Training:
    """Training settings a recipe recommends; every field can be overridden from the CLI."""

    epochs: int = 10
    batch_size: int = 100
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    grad_clip: float = 0.0  # max gradient norm; 0 disables clipping
    lr_schedule: str = "constant"  # see LR_SCHEDULES

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # numpy scalars (an np.linspace sweep) become plain numbers
            value = getattr(self, f.name)
            if type(value).__module__ == "numpy":
                object.__setattr__(self, f.name, to_plain(value, f"training.{f.name}"))

    def lr_factor(self, epoch: int) -> float:
        """The learning rate of 1-based ``epoch`` is ``lr * lr_factor(epoch)``."""
        return LR_SCHEDULES[self.lr_schedule][1](epoch)

    def problems(self) -> list[str]:
        found = []
        if self.epochs < 1:
            found.append(f"epochs must be at least 1 (got {self.epochs})")
        if self.batch_size < 1:
            found.append(f"batch_size must be at least 1 (got {self.batch_size})")
        if not self.lr > 0:
            found.append(f"lr must be positive (got {self.lr})")
        if self.optimizer not in OPTIMIZERS:
            found.append(f"optimizer must be {', '.join(OPTIMIZERS[:-1])} or {OPTIMIZERS[-1]} (got {self.optimizer!r})")
        if self.weight_decay < 0:
            found.append(f"weight_decay must be >= 0 (got {self.weight_decay})")
        for name in ("lr", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                found.append(f"{name} must be a finite number (got {value})")
        if self.grad_clip < 0:
            found.append(f"grad_clip must be >= 0 (got {self.grad_clip})")
        if self.lr_schedule not in LR_SCHEDULES:
            found.append(f"lr_schedule must be {' or '.join(LR_SCHEDULES)} (got {self.lr_schedule!r})")
        return found


def _burda_factor(epoch: int) -> float:
    """Burda et al. (2015), sec. 5: stage i = 0, 1, 2, ... lasts 3^i epochs at 10^(-i/7) times the
    base rate (epochs 1 | 2-4 | 5-13 | 14-40 | ...; 3,280 epochs for i = 0..7)."""
    stage, end = 0, 1
    while epoch > end:
        stage += 1
        end += 3**stage
    return 10.0 ** (-stage / 7)


#: ``lr_schedule`` values: (what it does, factor of the base lr for a 1-based epoch).
LR_SCHEDULES: dict[str, tuple[str, Any]] = {
    "constant": ("the same lr every epoch", lambda epoch: 1.0),
    "burda": ("Burda et al. 2015: 3^i epochs at lr x 10^(-i/7), i = 0, 1, 2, ...", _burda_factor),
}


@dataclass(frozen=True)
class Recipe:
    """A model the zoo can build and train by id.

    ``encoder``/``decoder``/``prior``/``likelihood`` are component ids; ``*_options`` are keyword
    arguments for their factories. ``objective`` is what the model is trained with (an objective
    id, ``zoo list --kind objective``) and ``objective_options`` its options. ``dataset`` is a
    data set id (``zoo list --kind dataset``). ``reference`` records the published result the
    recipe reproduces (paper, number, protocol); ``zoo info`` shows it. ``pretrained`` is the
    pretrained index: the published weights of this recipe (``repo``, ``revision``, ``sha256`` of
    their ``model.safetensors`` and the ``metrics`` measured on them), which
    ``zoo.create(id, pretrained=True)`` loads (:mod:`zoo.pretrained`).
    """

    id: str
    encoder: str
    decoder: str
    prior: str
    likelihood: str
    dataset: str
    latent_size: int
    description: str = ""
    encoder_options: dict[str, Any] = field(default_factory=dict)
    decoder_options: dict[str, Any] = field(default_factory=dict)
    prior_options: dict[str, Any] = field(default_factory=dict)
    likelihood_options: dict[str, Any] = field(default_factory=dict)
    objective: str = "elbo"
    objective_options: dict[str, Any] = field(default_factory=dict)
    training: Training = field(default_factory=Training)
    reference: dict[str, Any] = field(default_factory=dict)
    #: A user's own images (``zoo train --data``): the settings of :func:`zoo.dataset_from_path`
    #: that rebuild the data set; empty for a registered ``dataset``.
    data: dict[str, Any] = field(default_factory=dict)
    pretrained: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # What a run stores (config.json, every checkpoint) is plain data, normalised here, when the
        # run starts: numpy scalars become numbers, dates ISO strings; anything else is refused.
        if not _path_safe(self.id):
            raise ZooError(f"recipe id {_short(self.id)} cannot name a run folder; use kebab-case (e.g. 'my-vae')")
        for name in (*(f"{k}_options" for k in OPTION_KINDS), "reference", "data", "pretrained"):
            value = getattr(self, name)
            if not isinstance(value, dict):
                raise ZooError(f"recipe {self.id}: {name} must be a table (a dict), got {_short(value)}")
            object.__setattr__(self, name, to_plain(value, f"{name.replace('_options', '')}"))
        if not isinstance(self.training, Training):
            raise ZooError(f"recipe {self.id}: training must be a zoo.Training, got {type(self.training).__name__}")
        if self.pretrained:
            from zoo.pretrained import index_problems

            problems = index_problems(self.pretrained)
            if problems:
                raise ZooError(f"recipe {self.id}: pretrained: {'; '.join(problems)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "recipe") -> Recipe:
        """The recipe ``to_dict`` wrote (a run's ``config.json``); a damaged one is a ZooError naming ``source``."""
        if not isinstance(data, dict):
            raise ZooError(f"{source}: the recipe is not a table (got {type(data).__name__})")
        data = dict(data)
        names = {f.name: f for f in dataclasses.fields(cls)}
        problems = [f"unknown key {k!r}" for k in data if k not in names]
        required = [
            n for n, f in names.items() if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        problems += [f"{k} is missing" for k in required if k not in data]
        for key in (*OPTION_KINDS, "id", "dataset", "description"):
            if key in data and not isinstance(data[key], str):
                problems.append(f"{key} must be a string, got {type(data[key]).__name__}")
        for key in (*(f"{k}_options" for k in OPTION_KINDS), "reference", "pretrained", "training", "data"):
            if key in data and not isinstance(data[key], dict):
                problems.append(f"{key} must be a table, got {type(data[key]).__name__}")
        if "latent_size" in data and not (is_count(data["latent_size"]) and data["latent_size"] <= MAX_LATENT_SIZE):
            problems.append(
                f"latent_size must be an integer from 1 to {MAX_LATENT_SIZE}, got {_short(data['latent_size'])}"
            )
        if problems:
            raise ZooError(f"{source}: " + "; ".join(problems))
        training = dict(data.get("training", {}))
        # Runs written before objectives were a kind kept beta among the training settings.
        beta = training.pop("beta", None)
        if beta is not None and beta != 1.0 and data.get("objective", "elbo") == "elbo":
            data["objective_options"] = {"beta": beta, **data.get("objective_options", {})}
        settings = _training_settings(training, problems)
        if problems:
            raise ZooError(f"{source}: " + "; ".join(problems))
        data["training"] = Training(**settings)
        return cls(**data)

    def components(self) -> dict[str, tuple[str, dict[str, Any]]]:
        return {kind: (getattr(self, kind), dict(getattr(self, f"{kind}_options"))) for kind in COMPONENT_KINDS}

    def with_overrides(self, overrides: dict[str, Any]) -> Recipe:
        """A copy with ``overrides`` applied.

        Keys: ``latent_size``, ``dataset``, any :class:`Training` field (``epochs``, ``lr``, ...),
        a component or the objective by id (``prior=vamp``, ``objective=iwae``), or
        ``<kind>.<option>`` for an option (``encoder.hidden=256``, ``objective.samples=5``).
        ``beta`` is short for ``objective.beta``. Choosing another component or objective drops
        the options the recipe gave the old one. String values (from ``--set key=value``) are
        converted to the type of the current value. Every problem is reported at once; whether
        an option exists is checked when the model is built (:func:`zoo.composition.from_recipe`).
        """
        top: dict[str, Any] = {}
        training: dict[str, Any] = {}
        options: dict[str, dict[str, Any]] = {k: dict(getattr(self, f"{k}_options")) for k in OPTION_KINDS}
        for kind in OPTION_KINDS:
            new_id = overrides.get(kind)
            if new_id is not None and new_id != getattr(self, kind):
                options[kind] = {}
        overrides = {("objective.beta" if k == "beta" else k): v for k, v in overrides.items()}
        problems: list[str] = []
        train_fields = {f.name: f for f in dataclasses.fields(Training)}
        hints = typing.get_type_hints(Training)
        for key, value in overrides.items():
            try:
                if key in ("latent_size", "dataset", *OPTION_KINDS):
                    top[key] = _convert(value, int if key == "latent_size" else str, key)
                elif key in train_fields:
                    training[key] = _convert(value, hints[key], key)
                elif "." in key and key.split(".", 1)[0] in OPTION_KINDS:
                    kind, option = key.split(".", 1)
                    current = options[kind].get(option)
                    options[kind][option] = _convert(value, type(current) if current is not None else None, key)
                else:
                    valid = [
                        "latent_size",
                        "dataset",
                        *train_fields,
                        *OPTION_KINDS,
                        "beta",
                        *(f"{k}.<option>" for k in OPTION_KINDS),
                    ]
                    problems.append(f"unknown setting {key!r} (valid: {', '.join(valid)})")
            except ZooError as exc:
                problems.append(str(exc))
        # Published weights fit the recipe's own model only: another architecture or data set drops them.
        changes_model = any(k not in train_fields and k.split(".", 1)[0] != "objective" for k in overrides)
        new = dataclasses.replace(
            self,
            **top,
            pretrained={} if changes_model else self.pretrained,
            training=dataclasses.replace(self.training, **training),
            **{f"{k}_options": v for k, v in options.items()},
        )
        for kind in OPTION_KINDS:
            if not getattr(new, kind):
                problems.append(f"{kind} must be a registered id (got an empty value)")
        problems += new.training.problems()
        if not 1 <= new.latent_size <= MAX_LATENT_SIZE:
            problems.append(f"latent_size must be from 1 to {MAX_LATENT_SIZE} (got {_short(new.latent_size)})")
        if problems:
            raise ZooError("; ".join(problems))
        return new


def _training_settings(table: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """A ``[training]`` table's values converted to :class:`Training`'s field types; an unknown key or
    a value that does not convert is added to ``problems``."""
    hints = typing.get_type_hints(Training)
    settings = {}
    for key, value in table.items():
        if key not in hints:
            problems.append(f"unknown training setting {key!r} (valid: {', '.join(hints)})")
            continue
        try:
            settings[key] = _convert(value, hints[key], f"training.{key}")
        except ZooError as exc:
            problems.append(str(exc))
    return settings


def _convert(value: Any, kind: Any, key: str) -> Any:
    """Convert a ``--set`` string to ``kind``; non-strings are type-checked and made plain data
    (numpy scalars become numbers); integers must fit in int64 (what torch takes)."""
    value = _convert_any(value, kind, key)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise ZooError(
            f"{key} must be an integer from -(2**63 - 1) to 2**63 - 1 (got one with {len(str(abs(value)))} digits)"
        )
    return to_plain(value, key)


def _convert_any(value: Any, kind: Any, key: str) -> Any:
    if not isinstance(value, str):
        value = to_plain(value, key)
    if isinstance(value, str) and (kind in (list, tuple, dict) or (kind is None and value.strip()[:1] in ("[", "{"))):
        try:
            parsed = json.loads(value)
        except RecursionError:
            raise ZooError(f"{key}: the value nests lists or objects too deeply") from None
        except ValueError:
            raise ZooError(
                f"{key} expects a JSON {'object' if kind is dict else 'list'} such as [100, 50], got {value!r}"
            ) from None
        if kind is not None and not isinstance(parsed, list if kind is tuple else kind):
            raise ZooError(f"{key} expects a {kind.__name__}, got {value!r}")
        return parsed
    if kind is None:
        if isinstance(value, str):
            if len(value.strip().lstrip("+-")) > 19 and value.strip().lstrip("+-").isdigit():
                raise ZooError(f"{key} must be an integer from -(2**63 - 1) to 2**63 - 1 (got {_short(value)})")
            for parse in (int, float):
                try:
                    return parse(value)
                except ValueError:
                    pass
            if value.lower() in ("true", "false"):
                return value.lower() == "true"
        return value
    if isinstance(value, str) and kind is not str:
        try:
            if kind is bool:
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return value.lower() in ("true", "1", "yes")
            if kind is int:
                if len(value.strip().lstrip("+-")) > 19:
                    raise ZooError(f"{key} must be an integer from -(2**63 - 1) to 2**63 - 1 (got {_short(value)})")
                return int(value)
            return kind(value)
        except ValueError:
            raise ZooError(f"{key} expects {kind.__name__}, got {value!r}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ZooError(f"{key} expects {kind.__name__}, got {value!r}")
    return value


def __getattr__(name: str) -> Any:
    # The TOML side lives in zoo.recipe_files; these names are kept importable from here.
    if name in ("recipe_from_file", "recipe_from_mapping", "recipe_to_toml"):
        from zoo import recipe_files

        return getattr(recipe_files, name)
    raise AttributeError(f"module 'zoo.recipe' has no attribute {name!r}")
