"""Recipes: a model id bound to its components, data set and training settings."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import ZooError

COMPONENT_KINDS = ("encoder", "decoder", "prior", "likelihood")
#: What a recipe names by id and configures with ``<kind>_options``.
OPTION_KINDS = (*COMPONENT_KINDS, "objective")


@dataclass(frozen=True)
class Training:
    """Training settings a recipe recommends; every field can be overridden from the CLI."""

    epochs: int = 10
    batch_size: int = 100
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    grad_clip: float = 0.0  # max gradient norm; 0 disables clipping

    def problems(self) -> list[str]:
        found = []
        if self.epochs < 1:
            found.append(f"epochs must be at least 1 (got {self.epochs})")
        if self.batch_size < 1:
            found.append(f"batch_size must be at least 1 (got {self.batch_size})")
        if not self.lr > 0:
            found.append(f"lr must be positive (got {self.lr})")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            found.append(f"optimizer must be adam, adamw or sgd (got {self.optimizer!r})")
        if self.weight_decay < 0:
            found.append(f"weight_decay must be >= 0 (got {self.weight_decay})")
        for name in ("lr", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                found.append(f"{name} must be a finite number (got {value})")
        if self.grad_clip < 0:
            found.append(f"grad_clip must be >= 0 (got {self.grad_clip})")
        return found


@dataclass(frozen=True)
class Recipe:
    """A model the zoo can build and train by id.

    ``encoder``/``decoder``/``prior``/``likelihood`` are component ids; ``*_options`` are keyword
    arguments for their factories. ``objective`` is what the model is trained with (an objective
    id, ``zoo list --kind objective``) and ``objective_options`` its options. ``dataset`` is a
    data set id (``zoo list --kind dataset``). ``reference`` records the published result the
    recipe reproduces (paper, number, protocol); ``zoo info`` shows it.
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        data = dict(data)
        training = dict(data.get("training", {}))
        # Runs written before objectives were a kind kept beta among the training settings.
        beta = training.pop("beta", None)
        if beta is not None and beta != 1.0 and data.get("objective", "elbo") == "elbo":
            data["objective_options"] = {"beta": beta, **data.get("objective_options", {})}
        data["training"] = Training(**training)
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
        an option exists is checked when the model is built (:func:`zoo.model.from_recipe`).
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
                    valid = ["latent_size", "dataset", *train_fields, *OPTION_KINDS, "beta",
                             *(f"{k}.<option>" for k in OPTION_KINDS)]
                    problems.append(f"unknown setting {key!r} (valid: {', '.join(valid)})")
            except ZooError as exc:
                problems.append(str(exc))
        new = dataclasses.replace(
            self,
            **top,
            training=dataclasses.replace(self.training, **training),
            **{f"{k}_options": v for k, v in options.items()},
        )
        for kind in OPTION_KINDS:
            if not getattr(new, kind):
                problems.append(f"{kind} must be a registered id (got an empty value)")
        problems += new.training.problems()
        if new.latent_size < 1:
            problems.append(f"latent_size must be at least 1 (got {new.latent_size})")
        if problems:
            raise ZooError("; ".join(problems))
        return new


def _convert(value: Any, kind: Any, key: str) -> Any:
    """Convert a ``--set`` string to ``kind``; non-strings are type-checked."""
    if isinstance(value, str) and (kind in (list, tuple, dict) or (kind is None and value.strip()[:1] in ("[", "{"))):
        try:
            parsed = json.loads(value)
        except ValueError:
            raise ZooError(f"{key} expects a JSON {'object' if kind is dict else 'list'} "
                           f"such as [100, 50], got {value!r}") from None
        if kind is not None and not isinstance(parsed, list if kind is tuple else kind):
            raise ZooError(f"{key} expects a {kind.__name__}, got {value!r}")
        return parsed
    if kind is None:
        if isinstance(value, str):
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
                return int(value)
            return kind(value)
        except ValueError:
            raise ZooError(f"{key} expects {kind.__name__}, got {value!r}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ZooError(f"{key} expects {kind.__name__}, got {value!r}")
    return value
