"""Which checks run on which registered things, and turning a plugin's registrations into
:class:`Check` objects (:func:`plugin_checks`) that zoo's pytest plugin runs one test each."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from zoo.conformance.common import check_checkpoint_round_trip, check_device_dtype, check_options, check_stored_once
from zoo.conformance.components import (
    check_decoder_shapes,
    check_encoder_deterministic,
    check_encoder_gradients,
    check_encoder_log_prob,
    check_encoder_shapes,
    check_likelihood_log_prob,
    check_likelihood_normalised,
    check_likelihood_shapes,
    check_prior_gradients,
    check_prior_log_prob,
    check_prior_shapes,
)
from zoo.conformance.objectives import (
    check_objective_eval_keeps_buffers,
    check_objective_gradients,
    check_objective_output,
    check_objective_state_dict,
    check_recipe_training_step,
)
from zoo.conformance.subject import DATA_SHAPES, TUTORIAL_DOC, Settings, Subject, fail
from zoo.errors import IncompatibleComponentsError, PluginError, ZooError
from zoo.recipe import COMPONENT_KINDS


@dataclass(frozen=True)
class Check:
    """One check of one registered thing; calling it runs it (and fails the test on a broken promise).

    A component's checks run once per data shape of the settings, in a model of that shape. A
    shape the component refuses with a ZooError when it is built (a network that takes only some
    sizes) is not a failure: the check goes on with the others and warns, naming the shape and the
    reason, with a :class:`ShapeRefused` warning. Refusing every shape fails. An objective is
    checked on a model of the first shape; a recipe on its own data set's shape.
    """

    kind: str  # encoder, decoder, prior, likelihood, objective, recipe (or "plugin")
    target: str  # the registered id
    name: str
    function: Callable[[Subject], None]
    settings: Settings

    @property
    def id(self) -> str:
        """The pytest id: ``<kind>[<id>]-<check>``."""
        return f"{self.kind}[{self.target}]-{self.name}"

    def __call__(self) -> list[tuple[int, ...]]:
        """Run it; returns the data shapes it checked (for a component, those it was not refused)."""
        if self.kind not in COMPONENT_KINDS:
            subject = Subject(self.kind, self.target, self.settings)
            used = self.function(subject)  # a recipe's check returns its data set's shape
            return [tuple(used) if used else subject.data_shape]
        checked, refused = [], []
        for shape in self.settings.data_shapes:
            subject = Subject(self.kind, self.target, self.settings, shape)
            subject.names_shape = len(self.settings.data_shapes) > 1
            reason = refusal(subject)
            if reason is not None:
                refused.append((shape, reason))
                continue
            self.function(subject)
            checked.append(shape)
        if not checked:
            tried = "; ".join(f"{shape}: {reason}" for shape, reason in refused)
            fail(
                f"{self.kind} {self.target!r} refused every data shape the kit tried ({tried}); give the shapes it "
                f"takes with data_shapes=...; see {TUTORIAL_DOC}#10-checking-your-plugin"
            )
        for shape, reason in refused:
            warnings.warn(
                ShapeRefused(
                    f"{self.kind} {self.target!r} refuses data shape {shape} ({reason}); checked on {checked}"
                ),
                stacklevel=2,
            )
        return checked

    def __repr__(self) -> str:
        return f"<zoo check {self.id}>"


class ShapeRefused(UserWarning):
    """A component refused one of the kit's data shapes with a ZooError (it was checked on the others)."""


def refusal(s: Subject) -> str | None:
    """Why building a model of ``s.data_shape`` around the component fails with a ZooError the
    component itself raised (it does not take that shape), or ``None`` when the model builds.

    Any other failure to build is left for the check to report as a broken promise; a partner
    refusing the shape is the kit's settings' fault and fails at once."""
    try:
        s.build_model()
    except (IncompatibleComponentsError, PluginError):
        return None  # it built, but does not fit the model (a decoder ignoring output_shape): a broken promise
    except ZooError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if message.startswith(f"{s.what}: "):  # what its factory raised, as zoo.compose reports it
            return message[len(s.what) + 2 :]
        if any(message.startswith(f"{kind} '") for kind in COMPONENT_KINDS if kind != s.kind):
            fail(
                f"{s.what}: the kit could not build a model of data shape {s.data_shape} around it, because "
                f"another component refused it ({message}); choose data_shapes=... that zoo's reference "
                f"components take; see {TUTORIAL_DOC}#10-checking-your-plugin"
            )
    except Exception:  # noqa: BLE001 - the check itself reports it, as what it was doing
        return None
    return None


_COMMON = [
    ("device_dtype", check_device_dtype),
    ("checkpoint_round_trip", check_checkpoint_round_trip),
    ("options", check_options),
    ("stored_once", check_stored_once),
]
CHECKS: dict[str, list[tuple[str, Callable[[Subject], None]]]] = {
    "encoder": [
        ("shapes", check_encoder_shapes),
        ("deterministic", check_encoder_deterministic),
        ("rsample_gradients", check_encoder_gradients),
        ("log_prob_sums_event", check_encoder_log_prob),
        *_COMMON,
    ],
    "decoder": [("shapes", check_decoder_shapes), *_COMMON],
    "prior": [
        ("shapes", check_prior_shapes),
        ("rsample_gradients", check_prior_gradients),
        ("log_prob_sums_event", check_prior_log_prob),
        *_COMMON,
    ],
    "likelihood": [
        ("shapes", check_likelihood_shapes),
        ("log_prob_sums_event", check_likelihood_log_prob),
        ("normalised", check_likelihood_normalised),
        *_COMMON,
    ],
    "objective": [
        ("output", check_objective_output),
        ("eval_keeps_buffers", check_objective_eval_keeps_buffers),
        ("gradients", check_objective_gradients),
        ("state_dict_round_trip", check_objective_state_dict),
        ("options", check_options),
    ],
    "recipe": [("training_step", check_recipe_training_step)],
}


def plugin_checks(
    plugin: str,
    options: dict[str, dict[str, Any]] | None = None,
    *,
    latent_size: int = 4,
    data_shapes: Sequence[Sequence[int]] = DATA_SHAPES,
    batch_size: int = 4,
    data_shape: Sequence[int] | None = None,
) -> list[Check]:
    """Every check of every component, objective and recipe the plugin ``plugin`` (its entry-point
    name) registers, in registration order.

    ``options`` maps ``"<kind>:<id>"`` to factory options and ``"recipe:<id>"`` to recipe
    overrides; components are checked in models of ``latent_size`` and of each of ``data_shapes``
    (by default (1, 8, 8) and (3, 9, 14)) on batches of ``batch_size``; ``data_shape`` is short for
    one shape. Recipes use their own latent size and their data set's shape.
    """
    from zoo.plugins import get_registry

    options = dict(options or {})
    for key in options:
        kind, _, id = key.partition(":")
        if kind not in CHECKS or not id:
            raise ZooError(f"conformance option key {key!r} must be '<kind>:<id>' with kind one of {', '.join(CHECKS)}")
    shapes = [data_shape] if data_shape is not None else list(data_shapes)
    if not shapes or not all(
        isinstance(shape, (tuple, list)) and shape and all(isinstance(d, int) and d >= 1 for d in shape)
        for shape in shapes
    ):
        raise ZooError(f"conformance data_shapes must be a list of shapes such as (1, 8, 8), got {shapes!r}")
    settings = Settings(plugin, options, latent_size, tuple(tuple(shape) for shape in shapes), batch_size)
    registry = get_registry()
    info = registry.plugins.get(plugin)
    if info is None or info.error:
        problem = (
            f"failed to load: {info.error}"
            if info is not None
            else f"is not loaded (loaded: {', '.join(sorted(registry.plugins)) or 'none'}; check its entry point "
            "in the group 'zoo' and ZOO_PLUGINS)"
        )

        def broken(s: Subject) -> None:
            fail(f"plugin {plugin!r} {problem}; see docs/hooks.md")

        return [Check("plugin", plugin, "loads", broken, settings)]
    return [
        Check(kind, id, name, function, settings)
        for kind, id in info.registered
        if kind in CHECKS
        for name, function in CHECKS[kind]
    ]


def parametrize_plugin_checks(plugin: str, options: dict[str, dict[str, Any]] | None = None, **sizes: Any):
    """Decorate ``def test_zoo_conformance(check): check()`` to run every check of ``plugin``, one test each.

    Arguments as for :func:`plugin_checks`. The checks are generated by zoo's pytest plugin
    (entry point ``pytest11``), which installing zoo enables.
    """
    return pytest.mark.zoo_conformance(plugin, options, **sizes)
