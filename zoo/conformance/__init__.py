"""A conformance kit for plugin authors: every promise of docs/interfaces.md as a pytest check.

One line in a plugin's test suite runs every check on every component, objective and recipe
the plugin registers (zoo's pytest plugin, :mod:`zoo._pytest_plugin`, turns each into its own
test item, with ids such as ``prior[vamp]-rsample_gradients``)::

    from zoo.conformance import parametrize_plugin_checks

    @parametrize_plugin_checks("my-plugin", options={"encoder:big-mlp": {"hidden": 16}})
    def test_zoo_conformance(check):
        check()

A component is checked inside small models, one for each of :data:`DATA_SHAPES` ((1, 8, 8) and
the colour, non-square (3, 9, 14); ``data_shapes=`` changes them): it takes its own place, and the
other three places hold :data:`PARTNERS` (zoo's reference components, at small sizes). A shape the
component refuses with a ZooError when it is built is reported as a :class:`ShapeRefused`
warning, and the check goes on with the other shapes; refusing them all fails. ``options`` maps
``"<kind>:<id>"`` to factory options (used wherever that component is built, recipes
included) and ``"recipe:<id>"`` to recipe overrides (``{"latent_size": 8}``); full-size
networks are slow, so give small ones.

A discrete likelihood declares the values it puts mass on with a class attribute ``levels``
(``levels = 256`` for 8-bit grey levels spread evenly over ``support``), or returns a
distribution whose ``support`` is discrete (a Bernoulli's ``boolean``). An undeclared
likelihood with a bounded ``support`` passes the normalisation check if it integrates to one
over the interval (a density) or sums to one over 256 evenly spaced levels.

This package imports torch only when a check runs, so collecting tests stays fast. Its modules:
:mod:`~zoo.conformance.subject` (what a check examines and how it reports),
:mod:`~zoo.conformance.probes` (data and probes), :mod:`~zoo.conformance.components` (each
kind's own promises), :mod:`~zoo.conformance.common` (promises every component keeps),
:mod:`~zoo.conformance.objectives` (objectives and recipes), :mod:`~zoo.conformance.point_mass` (the deterministic encoder autoencoder objectives are checked with) and :mod:`~zoo.conformance.harness` (which checks run on what).
"""

from __future__ import annotations

from zoo.conformance.harness import CHECKS, Check, ShapeRefused, parametrize_plugin_checks, plugin_checks  # noqa: F401
from zoo.conformance.probes import support_values, synthetic_batch
from zoo.conformance.subject import DATA_SHAPES, PARTNERS, Settings, Subject  # noqa: F401

__all__ = [
    "Check",
    "DATA_SHAPES",
    "PARTNERS",
    "ShapeRefused",
    "Settings",
    "parametrize_plugin_checks",
    "plugin_checks",
    "support_values",
    "synthetic_batch",
]
