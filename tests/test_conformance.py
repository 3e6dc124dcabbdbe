"""The conformance kit (zoo.conformance, run by zoo's pytest plugin): it passes on zoo's own
plugins and on examples/zoo-mlp, and each check catches a deliberately broken component."""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from helpers_example_plugin import EXAMPLE
from torch import nn
from torch.distributions import Independent, Normal

import zoo
from zoo import plugins
from zoo.conformance import parametrize_plugin_checks, plugin_checks

ROOT = Path(__file__).resolve().parents[1]
L, D = 4, (1, 8, 8)  # the kit's default latent size and data shape

# -- zoo's own plugins --------------------------------------------------------------------------

SMALL_VAMP = {
    "encoder:gated-mlp": {"hidden": 16},
    "decoder:gated-mlp": {"hidden": 16},
    "prior:vamp": {"pseudo_inputs": 5},
    "recipe:vamp-mlp-binarized-mnist": {"prior.pseudo_inputs": 5},
}


@parametrize_plugin_checks("aevb")
def test_aevb_conforms(check):
    check()


@parametrize_plugin_checks("iwae")
def test_iwae_conforms(check):
    check()


@parametrize_plugin_checks("vamp", options=SMALL_VAMP)
def test_vamp_conforms(check):
    check()


@parametrize_plugin_checks("flows", options={"prior:realnvp": {"hidden": 16}})
def test_flows_conforms(check):
    check()


@parametrize_plugin_checks(
    "resnet", options={"encoder:resnet": {"channels": 4, "blocks": 1}, "decoder:resnet": {"channels": 4, "blocks": 1}}
)
def test_resnet_conforms(check):
    check()


@parametrize_plugin_checks("zoo.builtins")  # zoo's objectives
def test_builtin_objectives_conform(check):
    check()


def test_every_check_has_a_readable_id():
    ids = [c.id for c in plugin_checks("vamp", SMALL_VAMP)]
    assert "prior[vamp]-rsample_gradients" in ids and "recipe[vamp-mlp-binarized-mnist]-training_step" in ids
    assert all(re.fullmatch(r"[a-z]+\[[a-z0-9-]+\]-[a-z0-9_]+", i) for i in ids)


def test_an_unknown_plugin_is_one_failing_check():
    (check,) = plugin_checks("no-such-plugin")
    with pytest.raises(pytest.fail.Exception, match="plugin 'no-such-plugin' is not loaded"):
        check()


def test_the_example_plugin_conforms(example_site):
    """examples/zoo-mlp/tests/test_conformance.py, run the way its author runs it: pytest, with
    the package installed and zoo's pytest plugin found through its entry point."""
    # PYTHONPATH keeps what it had (the zoo under test), as in test_example_plugin.py: the example uses zoo's newest API.
    path = os.pathsep.join(filter(None, [str(example_site), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path, ZOO_PLUGINS="aevb,mlp", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(EXAMPLE / "pyproject.toml"),
            str(EXAMPLE / "tests" / "test_conformance.py"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=EXAMPLE,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    # 8 checks for the encoder, 7 for the prior, 5 for the decoder and the objective, 1 per recipe
    assert "27 passed" in proc.stdout, proc.stdout


def test_pytest_plugin_is_light_and_inert(tmp_path):
    """Installed zoo registers the pytest plugin; a suite that does not use it runs without torch."""
    (tmp_path / "test_plain.py").write_text(
        "import sys\n\ndef test_no_torch():\n    assert 'torch' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_DISABLE_PLUGIN_AUTOLOAD"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_plain.py"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--markers"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert "@pytest.mark.zoo_conformance" in proc.stdout


def test_the_tutorial_shows_the_example_test_file():
    text = (ROOT / "docs" / "writing-a-plugin.md").read_text()
    section = text[text.index("## 10. Checking your plugin") :]
    shown = re.search(r"<!-- example: examples/zoo-mlp/tests/test_conformance.py -->\n```py\n(.*?)```", section, re.S)
    assert shown, "the tutorial's last section shows examples/zoo-mlp/tests/test_conformance.py"
    assert shown[1] == (EXAMPLE / "tests" / "test_conformance.py").read_text()


# -- deliberately broken components ----------------------------------------------------------------


def _plugin(**kinds):
    """A throwaway plugin registering ``kinds`` ({"encoder": {"id": factory}}; "recipe": [Recipe])."""
    module = types.ModuleType("broken_components")
    for kind, entries in kinds.items():

        def hook(register, entries=entries):
            for item in entries.items() if isinstance(entries, dict) else [(None, e) for e in entries]:
                register(*([item[1]] if item[0] is None else item))

        setattr(module, f"register_{kind}s", zoo.hookimpl(hook))
    return module


def run_check(check_id: str, options=None, **kinds) -> str:
    """Run one check on a throwaway plugin ``broken`` and return the failure message."""
    registry, pm = plugins.build([("broken", _plugin(**kinds))])
    with plugins.using(registry, pm):
        checks = {c.id: c for c in plugin_checks("broken", options)}
        with pytest.raises(pytest.fail.Exception) as failure:
            checks[check_id]()
    return str(failure.value)


def _gaussian(out):
    mean, log_var = out.chunk(2, dim=-1)
    return Independent(Normal(mean, torch.exp(0.5 * log_var), validate_args=False), 1)


class SmallEncoder(zoo.Encoder):
    def __init__(self, latent_size: int, data_shape=(1, 8, 8), hidden: int = 8) -> None:
        super().__init__()
        self.latent_size = latent_size
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(int(torch.Size(data_shape).numel()), 2 * latent_size))

    def forward(self, x):
        return _gaussian(self.net(x))


class DetachingEncoder(SmallEncoder):
    def forward(self, x):
        return _gaussian(self.net(x).detach())


class Float32Encoder(zoo.Encoder):
    """Keeps its projection in a plain tensor attribute, which .to(dtype) does not convert."""

    def __init__(self, latent_size: int, data_shape=(1, 8, 8)) -> None:
        super().__init__()
        self.latent_size = latent_size
        self.scale = nn.Parameter(torch.ones(2 * latent_size))
        self.projection = torch.randn(int(torch.Size(data_shape).numel()), 2 * latent_size)

    def forward(self, x):
        return _gaussian(x.flatten(1) @ self.projection * self.scale)


class KwargsEncoder(SmallEncoder):
    def __init__(self, latent_size: int, data_shape=(1, 8, 8), hidden: int = 8, **extra) -> None:
        super().__init__(latent_size, data_shape, hidden)


class UnusedParameterEncoder(SmallEncoder):
    def __init__(self, latent_size: int, data_shape=(1, 8, 8)) -> None:
        super().__init__(latent_size, data_shape)
        self.unused = nn.Parameter(torch.zeros(3))


class NaNEncoder(SmallEncoder):
    def forward(self, x):
        return _gaussian(self.net(x) * float("nan"))


class UndocumentedDecoder(zoo.Decoder):
    def __init__(self, latent_size: int, output_shape, width) -> None:
        super().__init__()
        self.latent_size, self.output_shape = latent_size, tuple(output_shape)
        self.net = nn.Linear(latent_size, int(torch.Size(output_shape).numel()))

    def decode(self, z):
        return self.net(z).view(-1, *self.output_shape)


class HalfEventPrior(zoo.Prior):
    def __init__(self, latent_size: int) -> None:
        super().__init__()
        self.latent_size = latent_size

    def forward(self):
        return Independent(Normal(torch.zeros(self.latent_size // 2), torch.ones(self.latent_size // 2)), 1)


class ForgetfulPrior(zoo.Prior):
    """Its location is a non-persistent buffer: random, and not in the checkpoint."""

    def __init__(self, latent_size: int) -> None:
        super().__init__()
        self.latent_size = latent_size
        self.register_buffer("loc", torch.randn(latent_size), persistent=False)

    def forward(self):
        return Independent(Normal(self.loc, torch.ones_like(self.loc)), 1)


class CopyingPrior(zoo.Prior):
    """Mixes the posteriors of a *copy* of the encoder: its weights are stored twice."""

    def __init__(self, encoder: zoo.Encoder, latent_size: int, data_shape) -> None:
        super().__init__()
        self.latent_size = latent_size
        self.encoder_copy = copy.deepcopy(encoder)
        self.register_buffer("pseudo", torch.rand(3, *data_shape))

    def forward(self):
        q = self.encoder_copy(self.pseudo)
        return torch.distributions.MixtureSameFamily(torch.distributions.Categorical(logits=torch.zeros(3)), q)


class UnsummedLikelihood(zoo.Likelihood):
    def __init__(self, data_shape=(1, 8, 8)) -> None:
        super().__init__()

    def forward(self, params):
        return Normal(params, 1.0)  # per-pixel log-densities: log_prob(x) is [B, *D]


class UnnormalisedLikelihood(zoo.Likelihood):
    """Claims data in [0, 1] but uses a unit Gaussian, whose mass spills outside it."""

    support = (0.0, 1.0)

    def __init__(self, data_shape=(1, 8, 8)) -> None:
        super().__init__()
        self.event_dims = len(data_shape)

    def forward(self, params):
        return Independent(Normal(params, 1.0), self.event_dims)


class PerExampleLoss(zoo.Objective):
    def forward(self, model, x):
        return zoo.ObjectiveOutput(-model.elbo(x).elbo, {})


class AlwaysCounting(zoo.Objective):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, model, x):
        self.steps += 1  # even in eval mode
        return zoo.ObjectiveOutput(-model.elbo(x).elbo.mean(), {})


def _recipe(encoder: str) -> zoo.Recipe:
    return zoo.Recipe(
        id="broken-vae",
        encoder=encoder,
        decoder="conv-mnist",
        prior="standard-normal",
        likelihood="bernoulli",
        dataset="mnist",
        latent_size=L,
        encoder_options={},
        decoder_options={"channels": 4},
    )


def test_wrong_event_shape_is_caught():
    message = run_check("prior[half]-shapes", prior={"half": HalfEventPrior})
    assert (
        message
        == "prior 'half' on data shape (1, 8, 8): p(z) must have event shape [4] (got [2]); see docs/interfaces.md#prior"
    )


def test_detached_rsample_is_caught():
    message = run_check("encoder[detached]-rsample_gradients", encoder={"detached": DetachingEncoder})
    assert message.startswith(
        "encoder 'detached' on data shape (1, 8, 8): the gradient of q.rsample(), q.log_prob and the encoder's own "
        "losses must reach every parameter, but encoder.net.1.weight got no gradient"
    )
    assert message.endswith("see docs/interfaces.md#encoder")


def test_log_prob_not_summed_is_caught():
    message = run_check("likelihood[unsummed]-log_prob_sums_event", likelihood={"unsummed": UnsummedLikelihood})
    assert message == (
        "likelihood 'unsummed' on data shape (1, 8, 8): p(x|z).log_prob must sum over the event to one number per example, "
        "[4] (got [4, 1, 8, 8]); see docs/interfaces.md#likelihood"
    )


def test_unnormalised_likelihood_is_caught():
    message = run_check("likelihood[spills]-normalised", likelihood={"spills": UnnormalisedLikelihood})
    assert message.startswith(
        "likelihood 'spills' on data shape (1, 8, 8): p(x|z) for one pixel must integrate to 1 over its support [0, 1]"
    )
    assert "see docs/interfaces.md#likelihood" in message


def test_component_that_cannot_move_dtype_is_caught():
    message = run_check("encoder[float32]-device_dtype", encoder={"float32": Float32Encoder})
    assert message.startswith(
        "encoder 'float32' on data shape (1, 8, 8): running it after .to('cpu', torch.float64) raised RuntimeError"
    )
    assert message.endswith("see docs/interfaces.md#encoder")


def test_state_that_does_not_round_trip_is_caught():
    message = run_check("prior[forgetful]-checkpoint_round_trip", prior={"forgetful": ForgetfulPrior})
    assert message.startswith(
        "prior 'forgetful' on data shape (1, 8, 8): after a checkpoint round trip (save_checkpoint, zoo.load) it must "
        "give the same outputs with the same seed"
    )
    assert message.endswith("see docs/interfaces.md#components-built-in-python-and-what-makes-them-rebuildable")


def test_undocumented_option_without_default_is_caught():
    message = run_check(
        "decoder[undocumented]-options",
        {"decoder:undocumented": {"width": 8}},
        decoder={"undocumented": UndocumentedDecoder},
    )
    assert message == (
        "decoder 'undocumented' on data shape (1, 8, 8): option 'width' has no default and is not documented; give it a "
        "default or describe it in the factory's docstring; "
        "see docs/interfaces.md#how-factories-receive-their-arguments"
    )


def test_unknown_option_swallowed_by_kwargs_is_caught():
    message = run_check("encoder[kwargs]-options", encoder={"kwargs": KwargsEncoder})
    assert message.startswith(
        "encoder 'kwargs' on data shape (1, 8, 8): an unknown option (zoo_conformance_no_such_option=1) must be a ZooError, but it was accepted"
    )


def test_recipe_step_giving_nan_is_caught():
    message = run_check("recipe[broken-vae]-training_step", encoder={"nan": NaNEncoder}, recipe=[_recipe("nan")])
    assert message.startswith("recipe 'broken-vae': a training step must give a finite scalar loss (got tensor(nan")
    assert message.endswith("see docs/writing-a-plugin.md#10-checking-your-plugin")


def test_recipe_step_leaving_a_parameter_without_gradient_is_caught():
    message = run_check(
        "recipe[broken-vae]-training_step", encoder={"unused": UnusedParameterEncoder}, recipe=[_recipe("unused")]
    )
    assert message.startswith(
        "recipe 'broken-vae': a training step must give every parameter a gradient, but encoder.unused got none"
    )


def test_copied_encoder_is_caught():
    message = run_check("prior[copying]-stored_once", prior={"copying": CopyingPrior})
    assert message == (
        "prior 'copying' on data shape (1, 8, 8): it stores its own copy of the model's encoder (its state_dict repeats the "
        "encoder's keys under 'prior.encoder_copy.'); keep the encoder zoo passes in, not a copy; "
        "see docs/interfaces.md#components-that-use-each-other"
    )


def test_non_scalar_loss_is_caught():
    message = run_check("objective[per-example]-output", objective={"per-example": PerExampleLoss})
    assert message == (
        "objective 'per-example': the loss must be a scalar tensor, averaged over the batch "
        "(got [4]); see docs/interfaces.md#objective"
    )


def test_objective_counting_in_eval_mode_is_caught():
    message = run_check("objective[counting]-eval_keeps_buffers", objective={"counting": AlwaysCounting})
    assert message.startswith("objective 'counting': in eval mode it must not change its buffers (buffer 'steps'")


def test_a_sound_component_passes_every_check():
    registry, pm = plugins.build([("sound", _plugin(encoder={"small": SmallEncoder}))])
    with plugins.using(registry, pm):
        checks = plugin_checks("sound")
        assert [c.name for c in checks] == [
            "shapes",
            "deterministic",
            "rsample_gradients",
            "log_prob_sums_event",
            "device_dtype",
            "checkpoint_round_trip",
            "options",
            "stored_once",
        ]
        for check in checks:
            check()


# -- the data shapes the kit tries ----------------------------------------------------------------


class GreyOnlyEncoder(SmallEncoder):
    """Takes one-channel images only, and says so when it is built for others."""

    def __init__(self, latent_size: int, data_shape=(1, 8, 8)) -> None:
        if data_shape[0] != 1:
            raise zoo.ZooError(f"grey-only takes one-channel images, got {data_shape[0]} channels")
        super().__init__(latent_size, data_shape)


class RefusesEverything(SmallEncoder):
    def __init__(self, latent_size: int, data_shape=(1, 8, 8)) -> None:
        raise zoo.ZooError(f"takes no images at all, got {tuple(data_shape)}")


class HardWiredEncoder(zoo.Encoder):
    """Hard-wired to 64 input values without saying so: it crashes on any other shape."""

    def __init__(self, latent_size: int) -> None:
        super().__init__()
        self.latent_size = latent_size
        self.net = nn.Linear(64, 2 * latent_size)

    def forward(self, x):
        return _gaussian(self.net(x.flatten(1)))


def test_every_component_check_runs_on_each_data_shape_and_says_which():
    registry, pm = plugins.build([("sound", _plugin(encoder={"small": SmallEncoder}))])
    with plugins.using(registry, pm):
        (shapes_check,) = [c for c in plugin_checks("sound") if c.name == "shapes"]
        assert shapes_check.settings.data_shapes == ((1, 8, 8), (3, 9, 14))
        assert shapes_check() == [(1, 8, 8), (3, 9, 14)]
        (custom,) = [c for c in plugin_checks("sound", data_shapes=[(2, 5, 7)]) if c.name == "shapes"]
        assert custom() == [(2, 5, 7)]
        (one,) = [c for c in plugin_checks("sound", data_shape=(1, 6, 6)) if c.name == "shapes"]
        assert one() == [(1, 6, 6)]
        with pytest.raises(zoo.ZooError, match="data_shapes must be a list of shapes"):
            plugin_checks("sound", data_shapes=[(0, 8, 8)])


def test_a_refused_shape_is_a_warning_not_a_failure():
    registry, pm = plugins.build([("grey", _plugin(encoder={"grey-only": GreyOnlyEncoder}))])
    with plugins.using(registry, pm):
        checks = [c for c in plugin_checks("grey") if c.name in ("shapes", "options", "checkpoint_round_trip")]
        for check in checks:
            with pytest.warns(UserWarning) as caught:
                assert check() == [(1, 8, 8)]
            (warning,) = [w.message for w in caught]
            assert type(warning).__name__ == "ShapeRefused"
            assert str(warning) == (
                "encoder 'grey-only' refuses data shape (3, 9, 14) (grey-only takes one-channel images, got 3 "
                "channels); checked on [(1, 8, 8)]"
            )


def test_a_component_refusing_every_shape_fails_naming_them():
    message = run_check("encoder[nothing]-shapes", encoder={"nothing": RefusesEverything})
    assert message == (
        "encoder 'nothing' refused every data shape the kit tried ((1, 8, 8): takes no images at all, got "
        "(1, 8, 8); (3, 9, 14): takes no images at all, got (3, 9, 14)); give the shapes it takes with "
        "data_shapes=...; see docs/writing-a-plugin.md#10-checking-your-plugin"
    )


def test_a_component_crashing_on_a_shape_it_did_not_refuse_fails_naming_the_shape():
    message = run_check("encoder[hard-wired]-shapes", encoder={"hard-wired": HardWiredEncoder})
    assert message.startswith("encoder 'hard-wired' on data shape (3, 9, 14): encoder(x) raised RuntimeError")


class FixedOutputDecoder(zoo.Decoder):
    """Always produces one 8x8 grey image, whatever output_shape the likelihood asks for."""

    def __init__(self, latent_size: int) -> None:
        super().__init__()
        self.latent_size, self.output_shape = latent_size, (1, 8, 8)
        self.net = nn.Linear(latent_size, 64)

    def decode(self, z):
        return self.net(z).view(-1, 1, 8, 8)


def test_a_decoder_ignoring_the_shape_it_is_asked_for_fails_rather_than_refuses():
    message = run_check("decoder[fixed]-shapes", decoder={"fixed": FixedOutputDecoder})
    assert message.startswith("decoder 'fixed' on data shape (3, 9, 14): building a model with it raised ")
    assert "IncompatibleComponentsError: decoder 'fixed' outputs (1, 8, 8) per example" in message


def test_a_partner_refusing_the_kits_shape_says_to_choose_other_shapes():
    registry, pm = plugins.build([("sound", _plugin(encoder={"small": SmallEncoder}))])
    with plugins.using(registry, pm):
        (check,) = [c for c in plugin_checks("sound", data_shapes=[(1, 2, 2)]) if c.name == "shapes"]
        with pytest.raises(pytest.fail.Exception) as failure:
            check()
    assert "the kit could not build a model of data shape (1, 2, 2) around it" in str(failure.value)
    assert "decoder 'conv-mnist'" in str(failure.value) and "choose data_shapes=..." in str(failure.value)


def test_a_recipe_on_an_unregistered_data_set_is_skipped_with_the_reason():
    recipe = dataclasses.replace(_recipe("small"), dataset="no-such-images")
    registry, pm = plugins.build([("broken", _plugin(encoder={"small": SmallEncoder}, recipe=[recipe]))])
    with plugins.using(registry, pm):
        checks = {c.id: c for c in plugin_checks("broken")}
        with pytest.raises(pytest.skip.Exception, match="its data set 'no-such-images' is not registered"):
            checks["recipe[broken-vae]-training_step"]()
        # a registered data set given as an override checks it on that one
        override = {c.id: c for c in plugin_checks("broken", {"recipe:broken-vae": {"dataset": "mnist"}})}
        assert override["recipe[broken-vae]-training_step"]() == [(1, 28, 28)]
