"""zoo's pytest plugin (entry point group ``pytest11``): runs the conformance checks of
:mod:`zoo.conformance` for tests marked ``zoo_conformance``.

It imports nothing but pytest when pytest starts, and does nothing for a test suite that does
not use the marker.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "zoo_conformance(plugin, options=None, latent_size=4, data_shapes=((1, 8, 8), (3, 9, 14)), batch_size=4): "
        "run every zoo conformance check of the plugin, one test each (see zoo.conformance)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("zoo_conformance")
    if marker is None:
        return
    if "check" not in metafunc.fixturenames:
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid}: a test marked zoo_conformance takes one argument, "
            "`check`, and calls it: def test_zoo_conformance(check): check()"
        )
    from zoo.conformance import plugin_checks

    checks = plugin_checks(*marker.args, **marker.kwargs)
    metafunc.parametrize("check", checks, ids=[check.id for check in checks])
