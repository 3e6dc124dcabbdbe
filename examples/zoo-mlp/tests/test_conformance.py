"""zoo's conformance checks, run on everything this plugin registers (one test item per check)."""

from zoo.conformance import parametrize_plugin_checks

# Small networks keep the checks fast; the full-size defaults are still built once, by the options check.
SMALL = {"encoder:mlp": {"hidden": 16}, "decoder:mlp": {"hidden": 16}, "prior:mini-vamp": {"pseudo_inputs": 5}}


@parametrize_plugin_checks("mlp", options=SMALL)
def test_zoo_conformance(check):
    check()
