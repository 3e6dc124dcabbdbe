"""zoo's conformance checks, run on everything this plugin registers (one test item per check)."""

from zoo.conformance import parametrize_plugin_checks

SMALL = {"encoder:mini-vq": {"hidden": 16, "dim": 2}, "encoder:ladder": {"hidden": 16}}


@parametrize_plugin_checks("vqladder", options=SMALL)
def test_zoo_conformance(check):
    check()
