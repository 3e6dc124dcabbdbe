"""The registry: validation of what plugins register, duplicates, unknown ids, wildcards, and
the read-only CLI commands (``zoo list``, ``zoo info``, ``zoo plugins``) run through click.

Throwaway plugins are registered for one test with ``zoo.plugins.build(plugins=[...])`` and
made current with ``zoo.plugins.using(...)``, so nothing leaks into other tests.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

import zoo
from zoo import plugins
from zoo.cli import cli
from zoo.errors import PluginError, UnknownIdError, ZooError


@pytest.fixture(autouse=True)
def _reference_plugin_only(monkeypatch):
    """These tests list exactly what the reference plugin registers."""
    monkeypatch.setenv("ZOO_PLUGINS", "aevb")
    plugins.reset()


def make_plugin(**hooks) -> SimpleNamespace:
    """A plugin object whose attributes are the given hook implementations."""
    return SimpleNamespace(**{name: zoo.hookimpl(function) for name, function in hooks.items()})


def run_cli(*args: str):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


# -- what the reference plugin provides -------------------------------------------------------


def test_reference_models_are_listed():
    models = zoo.list_models()
    assert "vae-conv-mnist" in models
    assert models == sorted(models)


def test_wildcard_listing():
    assert zoo.list_models("vae-*") == zoo.list_models()
    assert zoo.list_models("vae-conv-*mnist") == [
        m for m in zoo.list_models() if m.startswith("vae-conv-") and m.endswith("mnist")
    ]
    assert zoo.list_models("*-cb-*") == ["vae-conv-cb-mnist"]
    assert zoo.list_models("nothing-*") == []


def test_list_components_by_kind():
    assert zoo.list_components("prior") == ["mixture-of-gaussians", "standard-normal"]
    assert "bernoulli" in zoo.list_components("likelihood", "bern*")
    assert "mnist" in zoo.list_components("dataset")
    with pytest.raises(ZooError, match="unknown kind"):
        zoo.list_components("flux-capacitor")


def test_registry_is_built_once_per_process(monkeypatch):
    calls = []
    real_build = plugins.build
    monkeypatch.setattr(plugins, "build", lambda *a, **k: calls.append(1) or real_build(*a, **k))
    zoo.list_models()
    zoo.list_models("vae-*")
    zoo.get_recipe("vae-conv-mnist")
    assert len(calls) == 1


def test_get_recipe():
    recipe = zoo.get_recipe("vae-conv-mnist")
    assert isinstance(recipe, zoo.Recipe)
    assert (recipe.encoder, recipe.decoder, recipe.prior, recipe.likelihood) == (
        "conv-mnist",
        "conv-mnist",
        "standard-normal",
        "bernoulli",
    )
    assert (recipe.dataset, recipe.latent_size) == ("mnist", 20)
    assert (recipe.training.lr, recipe.training.batch_size, recipe.training.epochs) == (1e-3, 100, 200)


# -- unknown ids ------------------------------------------------------------------------------


def test_unknown_model_suggests_close_matches_and_points_at_commands():
    with pytest.raises(UnknownIdError) as info:
        zoo.create("vae-conv-mnsit")
    message = str(info.value)
    assert "'vae-conv-mnist'" in message
    assert "zoo list" in message and "zoo plugins" in message
    assert isinstance(info.value, ZooError) and isinstance(info.value, KeyError)


def test_unknown_component_points_at_list_of_its_kind():
    with pytest.raises(UnknownIdError) as info:
        zoo.compose("conv-mnist", "conv-mnist", prior="standard-normel", latent_size=20)
    message = str(info.value)
    assert "unknown prior 'standard-normel'" in message
    assert "'standard-normal'" in message
    assert "zoo list --kind prior" in message


def test_unknown_id_without_close_match_still_points_at_commands():
    with pytest.raises(UnknownIdError) as info:
        zoo.get_recipe("zzzzzz")
    assert "did you mean" not in str(info.value)
    assert "zoo list" in str(info.value)


def test_unknown_id_mentions_a_broken_plugin():
    def register_encoders(register):
        raise RuntimeError("half-installed")

    registry, pm = plugins.build(plugins=[("shiny-models", make_plugin(register_encoders=register_encoders))])
    with plugins.using(registry, pm), pytest.raises(UnknownIdError) as info:
        zoo.create("vae-shiny")
    assert "'shiny-models' failed to load" in str(info.value)
    assert "zoo plugins" in str(info.value)


# -- duplicates -------------------------------------------------------------------------------


def _laplace_plugin():
    def register_likelihoods(register):
        register("laplace", "zoo_aevb.components:GaussianLikelihood")

    return make_plugin(register_likelihoods=register_likelihoods)


def test_duplicate_id_from_two_plugins_is_an_error_naming_both():
    registry, pm = plugins.build(plugins=[("first", _laplace_plugin()), ("second", _laplace_plugin())])
    assert registry.plugins["first"].error is None
    second = registry.plugins["second"].error
    assert "'laplace'" in second and "'first'" in second and "'second'" in second
    with plugins.using(registry, pm):
        with pytest.raises(ZooError) as info:
            zoo.compose("conv-mnist", "conv-mnist", likelihood="laplace", latent_size=20)
    assert "'first'" in str(info.value) and "'second'" in str(info.value)
    # What is not contested still works.
    assert registry.get("likelihood", "bernoulli").plugin == "aevb"


def test_duplicate_of_a_reference_id_names_the_reference_plugin():
    def register_priors(register):
        register("standard-normal", "zoo_aevb.components:StandardNormalPrior")

    registry, pm = plugins.build(plugins=[("copycat", make_plugin(register_priors=register_priors))])
    assert "'aevb'" in registry.plugins["copycat"].error
    with pytest.raises(ZooError, match="'aevb', 'copycat'"):
        registry.get("prior", "standard-normal")


def test_duplicate_recipe_is_an_error():
    def register_recipes(register):
        register(
            zoo.Recipe(
                id="vae-conv-mnist",
                encoder="conv-mnist",
                decoder="conv-mnist",
                prior="standard-normal",
                likelihood="bernoulli",
                dataset="mnist",
                latent_size=2,
            )
        )

    registry, pm = plugins.build(plugins=[("again", make_plugin(register_recipes=register_recipes))])
    assert "'aevb'" in registry.plugins["again"].error
    with plugins.using(registry, pm), pytest.raises(ZooError, match="more than one plugin"):
        zoo.create("vae-conv-mnist")


# -- invalid registrations --------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", ["My_Encoder", "Conv", "conv--mnist", "-conv", "conv mnist", "", 7])
def test_non_kebab_id_is_rejected_naming_the_plugin(bad_id):
    def register_encoders(register):
        register(bad_id, "zoo_aevb.components:ConvEncoder")
        register("fine-encoder", "zoo_aevb.components:ConvEncoder")

    registry, _ = plugins.build(plugins=[("sloppy", make_plugin(register_encoders=register_encoders))])
    error = registry.plugins["sloppy"].error
    assert "plugin 'sloppy'" in error and "kebab-case" in error
    # One bad call does not lose the plugin's other registrations.
    assert registry.get("encoder", "fine-encoder").plugin == "sloppy"


@pytest.mark.parametrize(
    "factory",
    [42, "torch.nn.Linear", "not a module path", pytest.param("torch.nn:Linear", id="wrong-class-lazily")],
)
def test_something_that_is_not_an_encoder_is_rejected_naming_the_plugin(factory):
    def register_encoders(register):
        register("odd", factory)

    registry, pm = plugins.build(plugins=[("oddities", make_plugin(register_encoders=register_encoders))])
    error = registry.plugins["oddities"].error
    if error is None:  # a lazy "module:attr" string is only checked when imported
        with plugins.using(registry, pm), pytest.raises(PluginError, match="plugin 'oddities'"):
            zoo.compose("odd", "conv-mnist", latent_size=20)
    else:
        assert "plugin 'oddities'" in error


def test_component_class_of_the_wrong_kind_is_rejected():
    from torch import nn

    def register_decoders(register):
        register("linear", nn.Linear)
        register("encoder-as-decoder", registry_encoder_class())

    def registry_encoder_class():
        return plugins.get_registry().get("encoder", "conv-mnist").load()

    registry, _ = plugins.build(plugins=[("mixup", make_plugin(register_decoders=register_decoders))])
    error = registry.plugins["mixup"].error
    assert error.count("plugin 'mixup'") == 2
    assert "not a subclass of zoo.Decoder" in error
    assert "conv-mnist" in registry.ids("decoder")
    assert all(registry.entries["decoder"][i].plugin == "aevb" for i in registry.ids("decoder"))  # none of mixup's


def test_ready_made_instance_is_rejected():
    instance = zoo.compose("conv-mnist", "conv-mnist", latent_size=4).encoder

    def register_encoders(register):
        register("instance", instance)

    registry, _ = plugins.build(plugins=[("eager", make_plugin(register_encoders=register_encoders))])
    assert "plugin 'eager'" in registry.plugins["eager"].error


def test_function_factory_returning_the_wrong_type_names_the_plugin():
    from torch import nn

    def register_encoders(register):
        register("liar", lambda latent_size: nn.Linear(784, latent_size), description="returns a Linear")

    registry, pm = plugins.build(plugins=[("fibber", make_plugin(register_encoders=register_encoders))])
    assert registry.plugins["fibber"].error is None
    with plugins.using(registry, pm), pytest.raises(PluginError) as info:
        zoo.compose("liar", "conv-mnist", latent_size=20)
    assert "plugin 'fibber'" in str(info.value) and "Linear" in str(info.value)


def test_lazy_factory_that_cannot_be_imported_names_the_plugin():
    def register_priors(register):
        register("ghost", "zoo_no_such_package.priors:Ghost")

    registry, pm = plugins.build(plugins=[("haunted", make_plugin(register_priors=register_priors))])
    with plugins.using(registry, pm), pytest.raises(PluginError) as info:
        zoo.compose("conv-mnist", "conv-mnist", prior="ghost", latent_size=20)
    assert "plugin 'haunted'" in str(info.value) and "zoo_no_such_package" in str(info.value)


def test_recipe_hook_must_register_a_recipe():
    def register_recipes(register):
        register("vae-dict", {"encoder": "conv-mnist"})
        register(
            zoo.Recipe(
                id="Bad_Id",
                encoder="conv-mnist",
                decoder="conv-mnist",
                prior="standard-normal",
                likelihood="bernoulli",
                dataset="mnist",
                latent_size=2,
            )
        )

    registry, _ = plugins.build(plugins=[("dicty", make_plugin(register_recipes=register_recipes))])
    error = registry.plugins["dicty"].error
    assert "not a zoo.Recipe" in error and "kebab-case" in error


def test_plugin_raising_while_registering_loses_only_its_own_registrations():
    def register_priors(register):
        register("flaky-prior", "zoo_aevb.components:StandardNormalPrior")
        raise ValueError("config file missing")

    registry, pm = plugins.build(plugins=[("flaky", make_plugin(register_priors=register_priors))])
    info = registry.plugins["flaky"]
    assert "register_priors raised ValueError: config file missing" in info.error
    assert "flaky-prior" not in registry.ids("prior")
    assert info.registered == []
    assert "vae-conv-mnist" in registry.ids("recipe")


def test_plugins_that_accept_fewer_arguments_are_fine():
    # pluggy lets an implementation take fewer arguments than the spec: a hook ignoring
    # `register` is valid and does nothing.
    def register_datasets():
        return None

    registry, _ = plugins.build(plugins=[("quiet", make_plugin(register_datasets=register_datasets))])
    assert registry.plugins["quiet"].error is None


# -- CLI (click's runner, in process) ---------------------------------------------------------


def test_cli_list():
    result = run_cli("list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == zoo.list_models()
    assert any("seed's convolutional VAE" in line for line in lines)


def test_cli_list_pattern_and_json():
    result = run_cli("list", "vae-conv-m*", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert [d["id"] for d in data] == ["vae-conv-mnist", "vae-conv-mog-mnist"]
    assert all(d["plugin"] == "aevb" and d["kind"] == "model" for d in data)


def test_cli_list_kind_prior():
    result = run_cli("list", "--kind", "prior")
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["mixture-of-gaussians", "standard-normal"]


def test_cli_list_nothing_matches():
    result = run_cli("list", "gan-*")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "no models match 'gan-*'" in result.stderr


def test_cli_info():
    result = run_cli("info", "vae-conv-mnist")
    assert result.exit_code == 0
    out = result.stdout
    assert out.startswith("vae-conv-mnist  (plugin aevb)")
    for expected in (
        "dataset:     mnist",
        "latent size: 20",
        "encoder:     conv-mnist",
        "zoo_aevb.components:ConvEncoder",
        "standard-normal",
        "bernoulli",
        "lr=0.001",
    ):
        assert expected in out


def test_cli_info_json():
    plain = json.loads(run_cli("info", "vae-conv-mnist", "--json").stdout)
    assert (plain["id"], plain["dataset"], plain["latent_size"]) == ("vae-conv-mnist", "mnist", 20)
    assert {k: v["id"] for k, v in plain["components"].items()} == {
        "encoder": "conv-mnist",
        "decoder": "conv-mnist",
        "prior": "standard-normal",
        "likelihood": "bernoulli",
        "objective": "elbo",
    }
    result = run_cli("info", "vae-conv-mog-mnist", "--json")
    data = json.loads(result.stdout)
    assert data["id"] == "vae-conv-mog-mnist" and data["plugin"] == "aevb"
    assert data["components"]["prior"] == {
        "id": "mixture-of-gaussians",
        "kind": "prior",
        "plugin": "aevb",
        "factory": "zoo_aevb.components:MixtureOfGaussiansPrior",
        "description": registry_description("prior", "mixture-of-gaussians"),
        "options": [{"name": "components", "type": "int", "required": False, "default": 10, "value": 10}],
        "set": {"components": 10},
        "receives": [],
    }
    assert data["training"]["batch_size"] == 100


def registry_description(kind: str, id: str) -> str:
    return plugins.get_registry().get(kind, id).description


def test_cli_info_unknown_model_raises_zoo_error():
    result = CliRunner().invoke(cli, ["info", "vae-conv-mnsit"])
    assert result.exit_code != 0
    assert isinstance(result.exception, UnknownIdError)
    assert "did you mean 'vae-conv-mnist'" in str(result.exception)


def test_cli_plugins_text_and_json():
    def register_encoders(register):
        raise RuntimeError("boom")

    registry, pm = plugins.build(plugins=[("exploding", make_plugin(register_encoders=register_encoders))])
    with plugins.using(registry, pm):
        text = run_cli("plugins")
        as_json = run_cli("plugins", "--json")
    assert text.exit_code == 0 and as_json.exit_code == 0
    assert "aevb (zoo " in text.stdout
    assert "recipes: vae-conv-mnist" in text.stdout
    assert "exploding (manual)" in text.stdout
    assert "ERROR: register_encoders raised RuntimeError: boom" in text.stdout
    data = {p["name"]: p for p in json.loads(as_json.stdout)}
    assert data["aevb"]["error"] is None
    assert "vae-conv-mnist" in data["aevb"]["registered"]["recipe"]
    assert data["aevb"]["distribution"] == "zoo"
    assert "RuntimeError: boom" in data["exploding"]["error"]
    assert data["zoo.data"]["source"] == "built-in"
