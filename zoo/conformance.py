"""A conformance kit for plugin authors: every promise of docs/interfaces.md as a pytest check.

One line in a plugin's test suite runs every check on every component, objective and recipe
the plugin registers (zoo's pytest plugin, :mod:`zoo._pytest_plugin`, turns each into its own
test item, with ids such as ``prior[vamp]-rsample_gradients``)::

    from zoo.conformance import parametrize_plugin_checks

    @parametrize_plugin_checks("my-plugin", options={"encoder:big-mlp": {"hidden": 16}})
    def test_zoo_conformance(check):
        check()

A component is checked inside a small model: it takes its own place, and the other three
places hold :data:`PARTNERS` (zoo's reference components, at small sizes). ``options`` maps
``"<kind>:<id>"`` to factory options (used wherever that component is built, recipes
included) and ``"recipe:<id>"`` to recipe overrides (``{"latent_size": 8}``); full-size
networks are slow, so give small ones.

A discrete likelihood declares the values it puts mass on with a class attribute ``levels``
(``levels = 256`` for 8-bit grey levels spread evenly over ``support``), or returns a
distribution whose ``support`` is discrete (a Bernoulli's ``boolean``). An undeclared
likelihood with a bounded ``support`` passes the normalisation check if it integrates to one
over the interval (a density) or sums to one over 256 evenly spaced levels.

This module imports torch only when a check runs, so collecting tests stays fast.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from zoo.errors import ZooError
from zoo.recipe import COMPONENT_KINDS

INTERFACES_DOC = "docs/interfaces.md"
TUTORIAL_DOC = "docs/writing-a-plugin.md"
#: The components that fill the other places of the model a component is checked in.
PARTNERS: dict[str, tuple[str, dict[str, Any]]] = {
    "encoder": ("conv-mnist", {"channels": 4}),
    "decoder": ("conv-mnist", {"channels": 4}),
    "prior": ("standard-normal", {}),
    "likelihood": ("bernoulli", {}),
}
#: An option name no factory takes: building with it must be a ZooError.
UNKNOWN_OPTION = "zoo_conformance_no_such_option"
#: Grey levels tried on an undeclared likelihood with a bounded support.
PROBE_LEVELS = 256


@dataclass(frozen=True)
class Settings:
    """What every check of one plugin shares: sizes and the options authors give."""

    plugin: str
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    latent_size: int = 4
    data_shape: tuple[int, ...] = (1, 8, 8)
    batch_size: int = 4


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


def _fail(message: str) -> None:
    pytest.fail(message, pytrace=False)


class Subject:
    """The registered thing a check examines, with helpers to build it and report on it."""

    def __init__(self, kind: str, target: str, settings: Settings) -> None:
        self.kind, self.target, self.settings = kind, target, settings

    @property
    def what(self) -> str:
        return f"{self.kind} {self.target!r}"

    def fail(self, promise: str, anchor: str | None = None, doc: str = INTERFACES_DOC) -> None:
        """Fail with ``<kind> '<id>': <promise>; see <doc>#<anchor>``."""
        _fail(f"{self.what}: {promise}; see {doc}#{anchor or self.kind}")

    def call(self, description: str, function: Callable[[], Any], anchor: str | None = None) -> Any:
        """Run ``function``; an exception it raises is reported as a broken promise."""
        try:
            return function()
        except pytest.fail.Exception:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the component raised is the finding
            first = str(exc).splitlines()[0][:300] if str(exc) else ""
            self.fail(f"{description} raised {type(exc).__name__}: {first}", anchor)

    # -- the registry ----------------------------------------------------------------------------
    def entry(self):
        from zoo.plugins import get_registry

        return get_registry().get(self.kind, self.target)

    def factory(self) -> Any:
        return self.entry().load()

    def options(self, kind: str | None = None, id: str | None = None) -> dict[str, Any]:
        """The options the author gave for ``kind:id`` (default: this subject)."""
        return dict(self.settings.options.get(f"{kind or self.kind}:{id or self.target}", {}))

    # -- building ----------------------------------------------------------------------------------
    def model(self, **component_options: Any):
        """A small model with this component in its place and :data:`PARTNERS` in the others."""
        return self.call("building a model with it", lambda: self.build_model(component_options or None),
                         "how-factories-receive-their-arguments")

    def build_model(self, component_options: dict[str, Any] | None = None):
        """:meth:`model` with the component's own ``component_options`` (default: the author's), unwrapped."""
        import zoo

        ids: dict[str, str] = {}
        options: dict[str, dict[str, Any]] = {}
        for kind in COMPONENT_KINDS:
            if kind == self.kind:
                ids[kind] = self.target
                options[kind] = self.options() if component_options is None else dict(component_options)
            else:
                ids[kind], defaults = _partner(kind)
                options[kind] = {**defaults, **self.options(kind, ids[kind])}
        return zoo.compose(**ids, latent_size=self.settings.latent_size, data_shape=self.settings.data_shape,
                           **{f"{k}_options": options[k] for k in COMPONENT_KINDS})

    def component(self, model):
        return getattr(model, self.kind)


def _partner(kind: str) -> tuple[str, dict[str, Any]]:
    from zoo.plugins import get_registry

    registry = get_registry()
    id, options = PARTNERS[kind]
    if id in registry.entries[kind]:
        return id, dict(options)
    others = registry.ids(kind)
    if not others:
        _fail(f"no {kind} is registered to build a model with; install zoo's reference plugin (aevb)")
    return others[0], {}


# -- data and probes ----------------------------------------------------------------------------------


def support_values(likelihood, data_shape: Sequence[int]):
    """The values a discrete likelihood puts mass on (a 1-D tensor), or ``None`` for a density.

    Declared by a ``levels`` attribute (evenly spaced over ``support``), or read from the
    ``support`` of the distribution it returns (``boolean``, a small ``integer_interval``).
    """
    import torch
    from torch.distributions import constraints

    declared = likelihood.level_values()
    if declared is not None:
        return declared
    params = torch.zeros(1, *likelihood.param_shape(tuple(data_shape)))
    support = getattr(likelihood(params), "support", None)
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    if support is constraints.boolean:
        return torch.tensor([0.0, 1.0], dtype=torch.float64)
    if isinstance(support, (constraints.integer_interval,)) and support.upper_bound - support.lower_bound <= 1024:
        return torch.arange(support.lower_bound, support.upper_bound + 1, dtype=torch.float64)
    return None


def synthetic_batch(likelihood, data_shape: Sequence[int], n: int, generator=None):
    """``n`` random examples in the likelihood's support, shaped [n, *data_shape]."""
    import torch

    shape = (n, *data_shape)
    values = support_values(likelihood, data_shape)
    if values is not None:
        index = torch.randint(len(values), shape, generator=generator)
        return values[index].float()
    if likelihood.support is not None:
        lo, hi = likelihood.support
        return lo + (hi - lo) * torch.rand(shape, generator=generator)
    return torch.randn(shape, generator=generator)


def _probe(kind: str, model, x):
    """The tensors one component produces in a model, for comparisons (seed the RNG first)."""
    import torch

    like = {"dtype": x.dtype, "device": x.device}
    if kind == "encoder":
        q = model.encoder(x)
        z = q.rsample()
        return [z, q.log_prob(z)]
    if kind == "decoder":
        return [model.decoder(torch.randn(len(x), model.latent_size, **like))]
    if kind == "prior":
        p = model.prior()
        z = p.sample((len(x),))
        return [z, p.log_prob(z)]
    params = torch.randn(len(x), *model.likelihood.param_shape(model.data_shape), **like)
    dist = model.likelihood(params)
    return [dist.log_prob(x), dist.mean]


def _shape(shape) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def _param_name(model, parameter) -> str:
    return next((n for n, p in model.named_parameters() if p is parameter), "?")


# -- component checks ----------------------------------------------------------------------------------


def check_encoder_shapes(s: Subject) -> None:
    """q(z|x) has batch shape [B] and event shape [L], and rsample() is [B, L]."""
    model = s.model()
    B, L = s.settings.batch_size, s.settings.latent_size
    x = synthetic_batch(model.likelihood, model.data_shape, B)
    q = s.call("encoder(x)", lambda: model.encoder(x))
    from torch.distributions import Distribution

    if not isinstance(q, Distribution):
        s.fail(f"encoder(x) must return a torch.distributions.Distribution (got {type(q).__name__})")
    if tuple(q.batch_shape) != (B,):
        s.fail(f"q(z|x) must have batch shape [{B}] for a batch of {B} (got {_shape(q.batch_shape)})")
    if tuple(q.event_shape) != (L,):
        s.fail(f"q(z|x) must have event shape [{L}] (got {_shape(q.event_shape)})")
    if not q.has_rsample:
        s.fail("q(z|x) must support rsample (reparameterised samples)")
    z = s.call("q.rsample((2,))", lambda: q.rsample((2,)))
    if tuple(z.shape) != (2, B, L):
        s.fail(f"q.rsample((2,)) must be [2, {B}, {L}] (got {_shape(z.shape)})")


def check_decoder_shapes(s: Subject) -> None:
    """decoder(z) is [..., *output_shape] for leading dims [K, B] and [B]; output_shape is the likelihood's."""
    import torch

    model = s.model()
    B, L = s.settings.batch_size, s.settings.latent_size
    wanted = tuple(model.likelihood.param_shape(model.data_shape))
    if tuple(model.decoder.output_shape) != wanted:
        s.fail(f"output_shape must be the likelihood's param_shape {_shape(wanted)} "
               f"(got {_shape(model.decoder.output_shape)})")
    for lead in ((B,), (2, B)):
        out = s.call(f"decoder(z) for z {_shape((*lead, L))}", lambda: model.decoder(torch.randn(*lead, L)))
        if tuple(out.shape) != (*lead, *wanted):
            s.fail(f"decoder(z) for z {_shape((*lead, L))} must be {_shape((*lead, *wanted))} (got {_shape(out.shape)})")


def check_prior_shapes(s: Subject) -> None:
    """p(z) has event shape [L] and an empty batch shape; sample(n) is [n, L]."""
    model = s.model()
    L = s.settings.latent_size
    p = s.call("prior()", lambda: model.prior())
    if tuple(p.event_shape) != (L,):
        s.fail(f"p(z) must have event shape [{L}] (got {_shape(p.event_shape)})")
    if tuple(p.batch_shape) != ():
        s.fail(f"p(z) must have an empty batch shape (got {_shape(p.batch_shape)})")
    z = s.call("prior.sample(3)", lambda: model.prior.sample(3))
    if tuple(z.shape) != (3, L):
        s.fail(f"prior.sample(3) must be [3, {L}] (got {_shape(z.shape)})")


def check_likelihood_shapes(s: Subject) -> None:
    """log_prob(x) is [B] (and [K, B] for parameters [K, B, *P]); mean and sample are [B, *D]."""
    import torch

    model = s.model()
    B, D = s.settings.batch_size, model.data_shape
    x = synthetic_batch(model.likelihood, D, B)
    P = tuple(model.likelihood.param_shape(D))
    dist = s.call("likelihood(params)", lambda: model.likelihood(torch.randn(B, *P)))
    lp = s.call("log_prob(x)", lambda: dist.log_prob(x))
    if tuple(lp.shape) != (B,):
        s.fail(f"log_prob(x) must sum over the data dims to [{B}] (got {_shape(lp.shape)})")
    lp2 = s.call("log_prob(x) for parameters [2, B, *P]",
                 lambda: model.likelihood(torch.randn(2, B, *P)).log_prob(x.expand(2, *x.shape)))
    if tuple(lp2.shape) != (2, B):
        s.fail(f"log_prob(x) for parameters {_shape((2, B, *P))} must be [2, {B}] (got {_shape(lp2.shape)})")
    for attribute in ("mean", "sample"):
        value = s.call(attribute, lambda: dist.mean if attribute == "mean" else dist.sample())
        if tuple(value.shape) != (B, *D):
            s.fail(f"p(x|z).{attribute} must be {_shape((B, *D))} (got {_shape(value.shape)})")


def _own_parameters(s: Subject, model) -> list:
    component = s.component(model)
    others = {id(p) for k in COMPONENT_KINDS if k != s.kind for p in getattr(model, k).parameters()}
    return [p for p in component.parameters() if id(p) not in others]


def _require_gradients(s: Subject, model, parameters, how: str) -> None:
    import torch

    for p in parameters:
        if p.grad is None:
            s.fail(f"{how} must reach every parameter, but {_param_name(model, p)} got no gradient")
        if not bool(torch.isfinite(p.grad).all()):
            s.fail(f"{how} gave {_param_name(model, p)} a gradient that is not finite")


def check_encoder_gradients(s: Subject) -> None:
    """Gradients of q.rsample() and q.log_prob reach every encoder parameter."""
    model = s.model()
    x = synthetic_batch(model.likelihood, model.data_shape, s.settings.batch_size)

    def backward() -> None:
        q = model.encoder(x)
        z = q.rsample()
        loss = z.square().sum() + q.log_prob(z.detach()).sum()
        if loss.requires_grad:  # else nothing reaches the parameters: reported below
            loss.backward()

    s.call("backward through q.rsample()", backward)
    _require_gradients(s, model, list(model.encoder.parameters()), "the gradient of q.rsample() and q.log_prob")


def check_prior_gradients(s: Subject) -> None:
    """Gradients of log p(z) reach z and every parameter the prior owns (for a Monte-Carlo KL)."""
    import torch

    model = s.model()
    z = torch.randn(s.settings.batch_size, s.settings.latent_size, requires_grad=True)
    s.call("backward through prior().log_prob(z)", lambda: model.prior().log_prob(z).sum().backward())
    if z.grad is None or not bool(torch.isfinite(z.grad).all()):
        s.fail("the gradient of log p(z) with respect to z must exist and be finite (the Monte-Carlo KL needs it)")
    _require_gradients(s, model, _own_parameters(s, model), "the gradient of log p(z)")


def _log_prob_sums(s: Subject, dist, value, batch: int, name: str) -> None:
    """log_prob(value) is [batch], permutes with the examples, and sums an Independent's base."""
    import torch
    from torch.distributions import Independent

    lp = s.call(f"{name}.log_prob", lambda: dist.log_prob(value))
    if tuple(lp.shape) != (batch,):
        s.fail(f"{name}.log_prob must sum over the event to one number per example, [{batch}] "
               f"(got {_shape(lp.shape)})")
    if isinstance(dist, Independent):
        dims = tuple(range(-dist.reinterpreted_batch_ndims, 0))
        per_dim = dist.base_dist.log_prob(value)
        if not torch.allclose(lp, per_dim.sum(dims) if dims else per_dim, rtol=1e-4, atol=1e-4):
            s.fail(f"{name}.log_prob must be the sum of its per-dimension log-densities")


def _permutes_with_batch(s: Subject, call: str, log_prob_of_permuted, log_prob, what: str) -> None:
    """Examples are independent: the log-densities of a permuted batch are the permuted log-densities."""
    import torch

    perm = torch.arange(len(log_prob)).flip(0)
    permuted = s.call(f"{call} on permuted examples", lambda: log_prob_of_permuted(perm))
    if not torch.allclose(permuted, log_prob[perm], rtol=1e-4, atol=1e-4):
        s.fail(f"{what}.log_prob must treat examples independently: permuting the batch must permute the results")


def check_encoder_log_prob(s: Subject) -> None:
    """q.log_prob(z) is one number per example: it sums over the latent dimensions."""
    model = s.model()
    B = s.settings.batch_size
    x = synthetic_batch(model.likelihood, model.data_shape, B)
    q = s.call("encoder(x)", lambda: model.encoder(x))
    z = q.rsample().detach()
    _log_prob_sums(s, q, z, B, "q(z|x)")
    _permutes_with_batch(s, "encoder(x)", lambda perm: model.encoder(x[perm]).log_prob(z[perm]), q.log_prob(z),
                         "q(z|x)")


def check_prior_log_prob(s: Subject) -> None:
    """log p(z) is one number per example: it sums over the latent dimensions."""
    import torch

    model = s.model()
    B = s.settings.batch_size
    p = s.call("prior()", lambda: model.prior())
    z = torch.randn(B, s.settings.latent_size)
    _log_prob_sums(s, p, z, B, "p(z)")
    provided = s.call("prior.log_prob(z)", lambda: model.prior.log_prob(z))
    if not torch.allclose(provided, p.log_prob(z), rtol=1e-4, atol=1e-4):
        s.fail("prior.log_prob(z) must equal prior().log_prob(z)")


def check_likelihood_log_prob(s: Subject) -> None:
    """log p(x|z) sums over the data dims, one number per example, permuting with the batch."""
    import torch

    model = s.model()
    B, D = s.settings.batch_size, model.data_shape
    x = synthetic_batch(model.likelihood, D, B)
    params = torch.randn(B, *model.likelihood.param_shape(D))
    dist = s.call("likelihood(params)", lambda: model.likelihood(params))
    _log_prob_sums(s, dist, x, B, "p(x|z)")
    _permutes_with_batch(s, "likelihood(params)", lambda perm: model.likelihood(params[perm]).log_prob(x[perm]),
                         dist.log_prob(x), "p(x|z)")


def check_likelihood_normalised(s: Subject) -> None:
    """Over one pixel, a discrete likelihood's probabilities sum to 1 and a density on a bounded
    support integrates to 1 (for random parameters)."""
    import torch

    from zoo.factories import call_factory

    factory = s.factory()
    one_pixel = (1,) * len(s.settings.data_shape)
    likelihood = s.call(
        "building it for one pixel",
        lambda: call_factory(factory, s.options(), {"latent_size": s.settings.latent_size, "data_shape": one_pixel},
                              s.what),
    )
    torch.manual_seed(0)
    params = 1.5 * torch.randn(3, *likelihood.param_shape(one_pixel))

    def mass(values):
        x = values.float().view(-1, 1, *one_pixel).expand(-1, len(params), *one_pixel)
        lp = likelihood(params.expand(len(values), *params.shape)).log_prob(x)
        return lp  # [V, 3]

    declared = s.call("reading its support values", lambda: support_values(likelihood, one_pixel))
    if declared is not None:
        total = s.call("log_prob over its support", lambda: mass(declared).exp().sum(0))
        if not torch.allclose(total, torch.ones_like(total), atol=1e-3):
            s.fail(f"p(x|z) over the {len(declared)} values of one pixel must sum to 1 (got "
                   f"{', '.join(f'{t:.4g}' for t in total.tolist())})", "likelihood")
        return
    if likelihood.support is None:
        pytest.skip(f"{s.what} is a density on the real line: normalisation is not checked")
    lo, hi = likelihood.support
    levels = torch.linspace(lo, hi, PROBE_LEVELS, dtype=torch.float64)
    summed = s.call("log_prob over 256 levels", lambda: mass(levels).exp().sum(0))
    if torch.allclose(summed, torch.ones_like(summed), atol=1e-3):
        return  # discrete over 256 levels
    grid = torch.linspace(lo, hi, 4097, dtype=torch.float64)
    density = s.call("log_prob over its support", lambda: mass(grid).exp().double())
    integral = torch.trapezoid(density, grid, dim=0)
    if not torch.allclose(integral, torch.ones_like(integral), atol=1e-2):
        s.fail(f"p(x|z) for one pixel must integrate to 1 over its support [{lo:g}, {hi:g}] (got "
               f"{', '.join(f'{t:.4g}' for t in integral.tolist())}) or, for a discrete likelihood, sum to 1 over "
               f"its levels (got {', '.join(f'{t:.4g}' for t in summed.tolist())} over {PROBE_LEVELS}; declare "
               "`levels` on the likelihood if it has another number)", "likelihood")


def check_device_dtype(s: Subject) -> None:
    """After model.to(torch.float64) (and to CUDA when there is one) the component still runs:
    float64 (or float32) outputs, finite, on the model's device."""
    import torch

    for dtype, device in [(torch.float64, "cpu"), *([(torch.float32, "cuda")] if torch.cuda.is_available() else [])]:
        torch.manual_seed(0)
        model = s.model()
        s.call(f"model.to({device}, {dtype})", lambda: model.to(device=device, dtype=dtype))
        x = synthetic_batch(model.likelihood, model.data_shape, s.settings.batch_size).to(device, dtype)
        outputs = s.call(f"running it after .to({device!r}, {dtype})", lambda: _probe(s.kind, model, x))
        for out in outputs:
            if out.device.type != device:
                s.fail(f"after .to({device!r}) its outputs must be on {device} (got {out.device})")
            if out.is_floating_point() and out.dtype not in (dtype, torch.float32):
                s.fail(f"after .to({dtype}) its outputs must be {dtype} or float32 (got {out.dtype})")
            if not bool(torch.isfinite(out).all()):
                s.fail(f"after .to({device!r}, {dtype}) its outputs must be finite")


def check_checkpoint_round_trip(s: Subject) -> None:
    """A model holding it, saved with save_checkpoint and rebuilt by zoo.load, gives identical outputs."""
    import torch

    import zoo
    from zoo.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = s.model().eval()
    x = synthetic_batch(model.likelihood, model.data_shape, s.settings.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        s.call("save_checkpoint", lambda: save_checkpoint(path, {"spec": model.spec, "model": model.state_dict()}),
               "components-built-in-python-and-what-makes-them-rebuildable")
        torch.manual_seed(12345)  # the rebuilt model starts from other random weights
        loaded = s.call("zoo.load of its checkpoint", lambda: zoo.load(path),
                        "components-built-in-python-and-what-makes-them-rebuildable")
    results = []
    for m in (model, loaded):
        torch.manual_seed(7)
        with torch.no_grad():
            results.append(s.call("running it", lambda: _probe(s.kind, m, x)))
    for before, after in zip(*results):
        if before.shape != after.shape or not torch.allclose(before, after, rtol=1e-5, atol=1e-6):
            s.fail("after a checkpoint round trip (save_checkpoint, zoo.load) it must give the same outputs with "
                   "the same seed; keep everything its outputs depend on in parameters or persistent buffers",
                   "components-built-in-python-and-what-makes-them-rebuildable")


def _documented(factory: Any, name: str) -> bool:
    docs = [inspect.getdoc(factory) or ""]
    if inspect.isclass(factory):
        docs.append(inspect.getdoc(factory.__init__) or "")
    return re.search(rf"\b{re.escape(name)}\b", "\n".join(docs)) is not None


def check_options(s: Subject) -> None:
    """Its options are readable, have defaults (or are documented), build with their defaults, an
    unknown option is a ZooError, and what it was built with is recorded (it is rebuildable by id)."""
    from zoo.composition import build_objective
    from zoo.factories import factory_options
    from zoo.spec import identify

    anchor = "how-factories-receive-their-arguments"
    factory = s.factory()
    options = s.call("zoo.factory_options", lambda: factory_options(factory), anchor)
    given = s.options()
    required = {}
    for option in options:
        if not option["required"]:
            continue
        if not _documented(factory, option["name"]):
            s.fail(f"option {option['name']!r} has no default and is not documented; give it a default or "
                   "describe it in the factory's docstring", anchor)
        if option["name"] not in given:
            s.fail(f"option {option['name']!r} has no default: give it in the options of the conformance checks "
                   f"({{'{s.kind}:{s.target}': {{'{option['name']}': ...}}}})", anchor)
        required[option["name"]] = given[option["name"]]

    def build(opts):
        if s.kind == "objective":
            return build_objective(s.target, opts)[0]
        return getattr(s.build_model(opts), s.kind)

    s.call("building it with its defaults", lambda: build(required), anchor)
    try:
        build({**given, UNKNOWN_OPTION: 1})
    except ZooError:
        pass
    except Exception as exc:  # noqa: BLE001
        s.fail(f"an unknown option ({UNKNOWN_OPTION}=1) must be a ZooError (got {type(exc).__name__}: {exc})", anchor)
    else:
        s.fail(f"an unknown option ({UNKNOWN_OPTION}=1) must be a ZooError, but it was accepted (a **kwargs "
               "parameter swallows it?); name every option in the signature", anchor)
    if not inspect.isclass(factory):
        return  # objects returned by a function factory are rebuilt by id through the model's spec only
    obj = s.call(f"building it with {given}", lambda: build(given), anchor)
    record = identify(s.kind, obj)
    rebuild = "components-built-in-python-and-what-makes-them-rebuildable"
    if record.get("id") != s.target:
        s.fail(f"an object built with {given} must be recorded by id ({record.get('problem', record.get('id'))})",
               rebuild)
    if record["options"] != given:
        s.fail(f"its recorded constructor options must be the options it was built with, {given} "
               f"(recorded {record['options']})", rebuild)


def check_stored_once(s: Subject) -> None:
    """Every parameter is stored once; a component given another one (``encoder``...) keeps that
    one, not a copy of it."""
    import torch

    from zoo.factories import injected_kinds

    anchor = "components-that-use-each-other"
    model = s.model()
    seen: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            s.fail(f"parameter {name} is registered a second time (also as {seen[id(p)]})", anchor)
        seen[id(p)] = name
    own = s.component(model).state_dict()
    for kind in injected_kinds(s.factory()):
        theirs = getattr(model, kind).state_dict()
        if not theirs:
            continue
        first = next(iter(theirs))
        for key in own:
            if not key.endswith("." + first):
                continue
            prefix = key[: -len(first)]
            copied = all(prefix + k in own and own[prefix + k].shape == v.shape and torch.equal(own[prefix + k], v)
                         for k, v in theirs.items())
            if copied:
                s.fail(f"it stores its own copy of the model's {kind} (its state_dict repeats the {kind}'s keys "
                       f"under '{s.kind}.{prefix}'); keep the {kind} zoo passes in, not a copy", anchor)


# -- objectives -----------------------------------------------------------------------------------


def _objective_setup(s: Subject):
    from zoo.composition import build_objective

    host = Subject("encoder", _partner("encoder")[0], s.settings)
    model = host.model()
    objective = s.call("building it", lambda: build_objective(s.target, s.options())[0], "objective")
    x = synthetic_batch(model.likelihood, model.data_shape, s.settings.batch_size)
    return model, objective, x


def check_objective_output(s: Subject) -> None:
    """objective(model, x) returns ObjectiveOutput(loss, logs): a finite scalar loss and scalar logs."""
    import torch

    from zoo.interfaces import ObjectiveOutput

    model, objective, x = _objective_setup(s)
    out = s.call("objective(model, x)", lambda: objective(model, x))
    if not isinstance(out, ObjectiveOutput):
        s.fail(f"objective(model, x) must return zoo.ObjectiveOutput(loss, logs) (got {type(out).__name__})")
    if not isinstance(out.loss, torch.Tensor) or out.loss.dim() != 0:
        shape = _shape(out.loss.shape) if isinstance(out.loss, torch.Tensor) else type(out.loss).__name__
        s.fail(f"the loss must be a scalar tensor, averaged over the batch (got {shape})")
    if not bool(torch.isfinite(out.loss)):
        s.fail("the loss must be finite on a batch of random data")
    if not isinstance(out.logs, dict):
        s.fail(f"logs must be a dict of scalar tensors (got {type(out.logs).__name__})")
    for name, value in out.logs.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor) or value.numel() != 1:
            s.fail(f"logs[{name!r}] must be a scalar tensor (got {getattr(value, 'shape', type(value).__name__)})")


def check_objective_eval_keeps_buffers(s: Subject) -> None:
    """In eval mode the objective changes none of its buffers (a warm-up counts training steps only)."""
    import torch

    model, objective, x = _objective_setup(s)
    objective.eval()
    before = {k: v.clone() for k, v in objective.named_buffers()}
    with torch.no_grad():
        s.call("objective(model, x) in eval mode", lambda: objective(model, x))
    for name, value in objective.named_buffers():
        if name not in before or not torch.equal(before[name], value):
            s.fail(f"in eval mode it must not change its buffers (buffer {name!r} changed); count steps only "
                   "while self.training")


def check_objective_gradients(s: Subject) -> None:
    """A training step: a finite loss whose gradient reaches every model parameter, finitely."""
    model, objective, x = _objective_setup(s)
    _training_step(s, model, objective, x, "objective")


def check_objective_state_dict(s: Subject) -> None:
    """Its state_dict, saved in a checkpoint and loaded into a fresh one, gives the same loss."""
    import torch

    from zoo.checkpoint import load_checkpoint, save_checkpoint
    from zoo.composition import build_objective

    model, objective, x = _objective_setup(s)
    for _ in range(2):  # advance any schedule
        s.call("objective(model, x)", lambda: objective(model, x))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "objective.pt"
        payload = {"spec": model.spec, "model": model.state_dict(), "objective": objective.state_dict()}
        s.call("saving its state_dict", lambda: save_checkpoint(path, payload))
        fresh = build_objective(s.target, s.options())[0]
        s.call("loading its state_dict", lambda: fresh.load_state_dict(load_checkpoint(path)["objective"]))
    losses = []
    for obj in (objective.eval(), fresh.eval()):
        torch.manual_seed(3)
        with torch.no_grad():
            losses.append(obj(model, x).loss)
    if not torch.allclose(losses[0], losses[1]):
        s.fail("after a state_dict round trip through a checkpoint it must give the same loss (keep its state "
               "in persistent buffers)")


# -- recipes ----------------------------------------------------------------------------------


def _training_step(s: Subject, model, objective, x, anchor: str, doc: str = INTERFACES_DOC) -> None:
    import torch

    model.train()
    objective.train()
    out = s.call("objective(model, x)", lambda: objective(model, x), anchor)
    loss = out[0] if isinstance(out, tuple) else out
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0 or not bool(torch.isfinite(loss)):
        s.fail(f"a training step must give a finite scalar loss (got {loss!r:.80})", anchor, doc)
    s.call("loss.backward()", loss.backward, anchor)
    for name, p in [*model.named_parameters(), *(("objective." + n, q) for n, q in objective.named_parameters())]:
        if p.grad is None:
            s.fail(f"a training step must give every parameter a gradient, but {name} got none (a KL warm-up "
                   "starting at weight 0 still gives zeros, not none)", anchor, doc)
        if not bool(torch.isfinite(p.grad).all()):
            s.fail(f"a training step must give finite gradients, but {name}'s is not finite", anchor, doc)


def check_recipe_training_step(s: Subject) -> None:
    """One training step of the recipe's model and objective on a random batch shaped like its data set."""
    import torch

    from zoo.composition import build_objective, from_recipe
    from zoo.plugins import get_registry

    recipe = get_registry().recipe(s.target)
    overrides = s.options()
    if overrides:
        recipe = s.call("applying the recipe overrides", lambda: recipe.with_overrides(overrides))
    recipe = dataclasses.replace(recipe, **{
        f"{kind}_options": {**getattr(recipe, f"{kind}_options"), **s.options(kind, getattr(recipe, kind))}
        for kind in COMPONENT_KINDS
    })
    torch.manual_seed(0)
    model = s.call("building its model", lambda: from_recipe(recipe), "how-factories-receive-their-arguments")
    objective_options = {**recipe.objective_options, **s.options("objective", recipe.objective)}
    objective = s.call("building its objective", lambda: build_objective(recipe.objective, objective_options)[0],
                       "objective")
    x = synthetic_batch(model.likelihood, model.data_shape, s.settings.batch_size)
    _training_step(s, model, objective, x, "10-checking-your-plugin", TUTORIAL_DOC)


# -- what runs on what -----------------------------------------------------------------------------

_COMMON = [("device_dtype", check_device_dtype), ("checkpoint_round_trip", check_checkpoint_round_trip),
           ("options", check_options), ("stored_once", check_stored_once)]
CHECKS: dict[str, list[tuple[str, Callable[[Subject], None]]]] = {
    "encoder": [("shapes", check_encoder_shapes), ("rsample_gradients", check_encoder_gradients),
                ("log_prob_sums_event", check_encoder_log_prob), *_COMMON],
    "decoder": [("shapes", check_decoder_shapes), *_COMMON],
    "prior": [("shapes", check_prior_shapes), ("rsample_gradients", check_prior_gradients),
              ("log_prob_sums_event", check_prior_log_prob), *_COMMON],
    "likelihood": [("shapes", check_likelihood_shapes), ("log_prob_sums_event", check_likelihood_log_prob),
                   ("normalised", check_likelihood_normalised), *_COMMON],
    "objective": [("output", check_objective_output), ("eval_keeps_buffers", check_objective_eval_keeps_buffers),
                  ("gradients", check_objective_gradients), ("state_dict_round_trip", check_objective_state_dict),
                  ("options", check_options)],
    "recipe": [("training_step", check_recipe_training_step)],
}


def plugin_checks(plugin: str, options: dict[str, dict[str, Any]] | None = None, *, latent_size: int = 4,
                  data_shape: Sequence[int] = (1, 8, 8), batch_size: int = 4) -> list[Check]:
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
        problem = (f"failed to load: {info.error}" if info is not None else
                   f"is not loaded (loaded: {', '.join(sorted(registry.plugins)) or 'none'}; check its entry point "
                   "in the group 'zoo' and ZOO_PLUGINS)")

        def broken(s: Subject) -> None:
            _fail(f"plugin {plugin!r} {problem}; see docs/hooks.md")

        return [Check("plugin", plugin, "loads", broken, settings)]
    return [Check(kind, id, name, function, settings)
            for kind, id in info.registered if kind in CHECKS
            for name, function in CHECKS[kind]]


def parametrize_plugin_checks(plugin: str, options: dict[str, dict[str, Any]] | None = None, **sizes: Any):
    """Decorate ``def test_zoo_conformance(check): check()`` to run every check of ``plugin``, one test each.

    Arguments as for :func:`plugin_checks`. The checks are generated by zoo's pytest plugin
    (entry point ``pytest11``), which installing zoo enables.
    """
    return pytest.mark.zoo_conformance(plugin, options, **sizes)


__all__ = ["Check", "PARTNERS", "Settings", "parametrize_plugin_checks", "plugin_checks", "support_values",
           "synthetic_batch"]
