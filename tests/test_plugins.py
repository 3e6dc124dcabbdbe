"""Plugin loading through the ``zoo`` entry-point group.

Fake installed distributions are written into a temporary folder (a module plus a
``<name>.dist-info`` folder holding ``METADATA`` and ``entry_points.txt``) and put on
``sys.path``, which is all ``importlib.metadata`` looks at. ``ZOO_PLUGINS`` names exactly which
entry points a test loads, so nothing installed on the developer's machine is picked up.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import zoo
from zoo import plugins
from zoo.cli import ZooGroup, cli
from zoo.errors import UnknownIdError

BROKEN_IMPORT = """
import zoo
raise ImportError("No module named 'torchaudio_nightly' (simulated by the test)")
"""

RAISES_WHILE_REGISTERING = """
import zoo

@zoo.hookimpl
def register_priors(register):
    register("half-registered", "zoo_aevb.components:StandardNormalPrior")
    raise RuntimeError("cannot read my config")
"""

MISSPELLED_HOOK = """
import zoo

@zoo.hookimpl
def register_encoder(register):
    register("never-seen", "zoo_aevb.components:ConvEncoder")
"""

GOOD = """
import zoo

@zoo.hookimpl
def register_likelihoods(register):
    register("extra-gaussian", "zoo_aevb.components:GaussianLikelihood", description="a second Gaussian")
"""

DUPLICATE = """
import zoo

@zoo.hookimpl
def register_likelihoods(register):
    register("extra-gaussian", "zoo_aevb.components:GaussianLikelihood")
"""

FAKES = {
    # entry-point name: (distribution, version, module name, source)
    "broken": ("zoo-broken", "0.3.1", "zoo_fake_broken", BROKEN_IMPORT),
    "raiser": ("zoo-raiser", "1.0", "zoo_fake_raiser", RAISES_WHILE_REGISTERING),
    "typo": ("zoo-typo", "2.0", "zoo_fake_typo", MISSPELLED_HOOK),
    "good": ("zoo-good", "1.1", "zoo_fake_good", GOOD),
    "dup": ("zoo-dup", "0.1", "zoo_fake_dup", DUPLICATE),
}


def install_fake(site: Path, name: str) -> None:
    """Write the fake distribution ``name`` of :data:`FAKES` into ``site``."""
    dist, version, module, source = FAKES[name]
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[zoo]\n{name} = {module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder of fake installed distributions on sys.path, all of them installed."""
    folder = tmp_path / "site"
    folder.mkdir()
    for name in FAKES:
        install_fake(folder, name)
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    for _, _, module, _ in FAKES.values():
        sys.modules.pop(module, None)


def load(monkeypatch, names: str):
    monkeypatch.setenv("ZOO_PLUGINS", names)
    plugins.reset()
    return plugins.get_registry()


def subprocess_env(site: Path | None, zoo_plugins: str) -> dict[str, str]:
    env = dict(os.environ, ZOO_PLUGINS=zoo_plugins)
    env.pop("ZOO_DEBUG", None)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return env


def zoo_script() -> str:
    script = Path(sys.executable).with_name("zoo")
    return str(script) if script.exists() else shutil.which("zoo") or pytest.skip("no zoo console script")


# -- one broken plugin never takes the rest down ----------------------------------------------


def test_plugin_that_fails_to_import_is_recorded(site, monkeypatch):
    registry = load(monkeypatch, "aevb,broken,good")
    info = registry.plugins["broken"]
    assert "ImportError" in info.error and "torchaudio_nightly" in info.error
    assert (info.distribution, info.version) == ("zoo-broken", "0.3.1")
    assert "Traceback" in info.traceback
    assert registry.plugins["good"].error is None
    assert "extra-gaussian" in registry.ids("likelihood")
    assert "vae-conv-mnist" in zoo.list_models()


def test_plugin_raising_while_registering_is_recorded(site, monkeypatch):
    registry = load(monkeypatch, "aevb,raiser")
    assert "register_priors raised RuntimeError: cannot read my config" in registry.plugins["raiser"].error
    assert "half-registered" not in registry.ids("prior")
    assert registry.ids("prior") == ["mixture-of-gaussians", "standard-normal"]


def test_misspelled_hook_fails_loudly(site, monkeypatch):
    registry = load(monkeypatch, "aevb,typo")
    error = registry.plugins["typo"].error
    assert "register_encoder" in error and "unknown hook" in error
    assert "register_encoders" in error  # the message lists the real hook names
    assert "never-seen" not in registry.ids("encoder")


def test_duplicate_between_installed_plugins_names_both(site, monkeypatch):
    registry = load(monkeypatch, "aevb,good,dup")
    # Whichever was loaded second is reported (entry-point order is the installer's).
    errors = [registry.plugins[name].error for name in ("good", "dup")]
    (error,) = [e for e in errors if e]
    assert "'good'" in error and "'dup'" in error
    with pytest.raises(zoo.ZooError, match="more than one plugin") as info:
        registry.get("likelihood", "extra-gaussian")
    assert "'good'" in str(info.value) and "'dup'" in str(info.value)


def test_unknown_id_mentions_broken_installed_plugin(site, monkeypatch):
    load(monkeypatch, "aevb,broken")
    with pytest.raises(UnknownIdError, match="'broken' failed to load"):
        zoo.create("vae-from-broken")


def test_cli_keeps_working_with_broken_plugins(site, monkeypatch):
    load(monkeypatch, "aevb,broken,raiser,typo")
    runner = CliRunner()

    listed = runner.invoke(cli, ["list"])
    assert listed.exit_code == 0
    assert "vae-conv-mnist" in listed.stdout
    assert "warning: plugin 'broken' is broken" in listed.stderr

    helped = runner.invoke(cli, ["--help"])
    assert helped.exit_code == 0 and "list" in helped.stdout

    text = runner.invoke(cli, ["plugins"])
    assert text.exit_code == 0
    assert "broken (zoo-broken 0.3.1)" in text.stdout
    assert "ERROR: ImportError" in text.stdout
    assert "ERROR: register_priors raised RuntimeError" in text.stdout
    assert "unknown hook 'register_encoder'" in text.stdout

    data = {p["name"]: p for p in json.loads(runner.invoke(cli, ["plugins", "--json"]).stdout)}
    assert data["broken"]["version"] == "0.3.1" and "ImportError" in data["broken"]["error"]
    assert "RuntimeError" in data["raiser"]["error"]
    assert "register_encoder" in data["typo"]["error"]
    assert data["aevb"]["error"] is None


# -- escape hatches ---------------------------------------------------------------------------


def test_zoo_plugins_loads_only_the_named_ones(site, monkeypatch):
    registry = load(monkeypatch, "good")
    assert set(registry.plugins) == {"zoo.data", "zoo.builtins", "good"}
    assert registry.ids("recipe") == []


def test_empty_zoo_plugins_loads_no_installed_plugin(site, monkeypatch):
    registry = load(monkeypatch, "")
    assert set(registry.plugins) == {"zoo.data", "zoo.builtins"}  # built-in data sets and objectives only
    assert zoo.list_models() == []
    assert "mnist" in registry.ids("dataset")


def test_zoo_disable_plugins(site, monkeypatch):
    monkeypatch.setenv("ZOO_DISABLE_PLUGINS", "broken, typo")
    registry = load(monkeypatch, "aevb,broken,typo,good")
    assert set(registry.plugins) == {"zoo.data", "zoo.builtins", "aevb", "good"}
    assert not any(p.error for p in registry.plugins.values())


def test_zoo_trace_plugins(site, monkeypatch, capsys):
    monkeypatch.setenv("ZOO_TRACE_PLUGINS", "1")
    load(monkeypatch, "aevb,good")
    err = capsys.readouterr().err
    assert "zoo-trace: loading entry point aevb = zoo_aevb.plugin" in err
    assert "zoo-trace: aevb.register_recipes(register)" in err
    assert "zoo-trace: good.register_likelihoods(register)" in err


def test_no_trace_by_default(site, monkeypatch, capsys):
    monkeypatch.delenv("ZOO_TRACE_PLUGINS", raising=False)
    load(monkeypatch, "aevb,good")
    assert "zoo-trace" not in capsys.readouterr().err


def test_reference_plugin_is_an_ordinary_entry_point():
    from importlib import metadata

    (ep,) = [ep for ep in metadata.entry_points(group="zoo") if ep.name == "aevb"]
    assert ep.value == "zoo_aevb.plugin"
    info = plugins.get_registry().plugins["aevb"]
    assert (info.source, info.distribution) == ("entry point", "zoo")


def test_tests_do_not_see_other_installed_plugins():
    from conftest import OWN_PLUGINS

    assert os.environ["ZOO_PLUGINS"] == OWN_PLUGINS
    assert set(plugins.get_registry().plugins) == {"zoo.data", "zoo.builtins", *OWN_PLUGINS.split(",")}


# -- the register_commands hook ---------------------------------------------------------------


def test_register_commands_adds_a_cli_command(monkeypatch):
    @click.command("hello")
    def hello():
        """Say hello from a plugin."""
        click.echo("hello from a plugin")

    def register_commands(cli):
        cli.add_command(hello)

    class CommandPlugin:
        pass

    plugin = CommandPlugin()
    plugin.register_commands = zoo.hookimpl(register_commands)
    registry, pm = plugins.build(plugins=[("greeter", plugin)])
    # The group adds plugin commands once per process; undo both for the other tests.
    monkeypatch.setattr(ZooGroup, "_plugins_added", False)
    monkeypatch.setattr(cli, "commands", dict(cli.commands))
    with plugins.using(registry, pm):
        result = CliRunner().invoke(cli, ["hello"])
        helped = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0 and result.stdout == "hello from a plugin\n"
    assert "hello" in helped.stdout


def test_register_commands_failure_is_recorded(monkeypatch):
    class Failing:
        @zoo.hookimpl
        def register_commands(self, cli):
            raise RuntimeError("no commands today")

    registry, pm = plugins.build(plugins=[("failing", Failing())])
    monkeypatch.setattr(ZooGroup, "_plugins_added", False)
    monkeypatch.setattr(cli, "commands", dict(cli.commands))
    with plugins.using(registry, pm):
        result = CliRunner().invoke(cli, ["list"])
        helped = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0 and helped.exit_code == 0
    assert "register_commands raised RuntimeError: no commands today" in registry.plugins["failing"].error


# -- the real console script ------------------------------------------------------------------


def test_console_script_lists_models_with_a_broken_plugin(site):
    proc = subprocess.run(
        [zoo_script(), "list"], capture_output=True, text=True, timeout=60, env=subprocess_env(site, "aevb,broken")
    )
    assert proc.returncode == 0, proc.stderr
    assert "vae-conv-mnist" in proc.stdout
    assert "plugin 'broken' is broken" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_console_script_unknown_id_is_a_one_line_error():
    proc = subprocess.run(
        [zoo_script(), "info", "vae-conv-mnsit"],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(None, "aevb"),
    )
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: unknown model 'vae-conv-mnsit'; did you mean 'vae-conv-mnist'")
    assert "Traceback" not in proc.stderr


def test_console_script_help_and_version():
    env = subprocess_env(None, "aevb")
    helped = subprocess.run([zoo_script(), "--help"], capture_output=True, text=True, timeout=60, env=env)
    assert helped.returncode == 0
    for command in ("list", "info", "plugins"):
        assert command in helped.stdout
    version = subprocess.run([zoo_script(), "--version"], capture_output=True, text=True, timeout=60, env=env)
    assert version.returncode == 0 and zoo.__version__ in version.stdout


PROBE = """
import sys
from zoo.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    assert not exc.code, exc.code
print("TORCH-IMPORTED" if "torch" in sys.modules else "TORCH-NOT-IMPORTED")
"""


# `zoo info` is not among them: it reads every option's type and default from the factory's
# signature, which means importing the component's module (and so torch).
@pytest.mark.parametrize(
    "args", [["--help"], ["list"], ["list", "--kind", "prior"], ["plugins"], ["list", "--kind", "objective"]]
)
def test_cheap_commands_do_not_import_torch(args):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(None, "aevb"),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("TORCH-NOT-IMPORTED"), proc.stdout
