"""Which checks run on which registered things, and turning a plugin's registrations into
:class:`Check` objects (:func:`plugin_checks`) that zoo's pytest plugin runs one test each."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from zoo.conformance.common import check_checkpoint_round_trip, check_device_dtype, check_options, check_stored_once
from zoo.conformance.components import (
    check_decoder_shapes,
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
from zoo.conformance.subject import Settings, Subject, fail
from zoo.errors import ZooError


@dataclass(frozen=True)
class Check:
    """One check of one registered thing; calling it runs it (and fails the test on a broken promise)."""

    kind: str  # encoder, decoder, prior, likelihood, objective, recipe (or "plugin")
    target: str  # the registered id
    name: str
    function: Callable[[Subject], None]
    settings: Settings

    @property
    def id(self) -> str:
        """The pytest id: ``<kind>[<id>]-<check>``."""
        return f"{self.kind}[{self.target}]-{self.name}"

    def __call__(self) -> None:
        self.function(Subject(self.kind, self.target, self.settings))

    def __repr__(self) -> str:
        return f"<zoo check {self.id}>"


_COMMON = [
    ("device_dtype", check_device_dtype),
    ("checkpoint_round_trip", check_checkpoint_round_trip),
    ("options", check_options),
    ("stored_once", check_stored_once),
]
CHECKS: dict[str, list[tuple[str, Callable[[Subject], None]]]] = {
    "encoder": [
        ("shapes", check_encoder_shapes),
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
    data_shape: Sequence[int] = (1, 8, 8),
    batch_size: int = 4,
) -> list[Check]:
    """Every check of every component, objective and recipe the plugin ``plugin`` (its entry-point
    name) registers, in registration order.

    ``options`` maps ``"<kind>:<id>"`` to factory options and ``"recipe:<id>"`` to recipe
    overrides; components are checked in models of ``latent_size`` and ``data_shape`` on batches of
    ``batch_size`` (recipes use their own latent size and their data set's shape).
    """
    from zoo.plugins import get_registry

    options = dict(options or {})
    for key in options:
        kind, _, id = key.partition(":")
        if kind not in CHECKS or not id:
            raise ZooError(f"conformance option key {key!r} must be '<kind>:<id>' with kind one of {', '.join(CHECKS)}")
    settings = Settings(plugin, options, latent_size, tuple(data_shape), batch_size)
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
