"""Models: an encoder, a decoder, a prior and a likelihood composed into a VAE.

:func:`compose` builds one from component ids (looked up in the registry) or objects;
:func:`create` builds a registered recipe by id. The :class:`VAE` computes the quantities every
objective and evaluation needs (:meth:`VAE.elbo`, :meth:`VAE.iwae`, :meth:`VAE.iw_terms`); what
it is *trained* with is a separate :class:`zoo.Objective` (:func:`build_objective`).

Components may use each other: a factory parameter named ``encoder``, ``decoder``, ``prior`` or
``likelihood`` receives the model's built component of that kind (a VampPrior's factory takes
``encoder``). :func:`compose` builds them in dependency order and reports a cycle.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from zoo.errors import IncompatibleComponentsError, PluginError, ZooError, first_line, is_count
from zoo.interfaces import Decoder, Encoder, Likelihood, Objective, Prior, constructor_options
from zoo.objectives import ELBOTerms, kl_term
from zoo.recipe import COMPONENT_KINDS, Recipe

_INTERFACES = {"encoder": Encoder, "decoder": Decoder, "prior": Prior, "likelihood": Likelihood,
               "objective": Objective}
#: Values zoo passes to factories that name them; never user options.
CONTEXT_NAMES = ("latent_size", "data_shape", "output_shape")


class VAE(nn.Module):
    """A variational autoencoder composed of the four components.

    ``forward(x)`` is :meth:`elbo`, so wrappers such as DistributedDataParallel work unchanged.
    ``spec`` describes how the model was built (component ids and options, latent size, data
    shape); checkpoints store it so :func:`zoo.load` can rebuild the model.
    """

    def __init__(
        self,
        encoder: Encoder,
        decoder: Decoder,
        prior: Prior,
        likelihood: Likelihood,
        *,
        data_shape: Sequence[int],
        spec: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior
        self.likelihood = likelihood
        self.data_shape = tuple(data_shape)
        self.spec = spec or {}
        #: Check every input against the likelihood's support. The trainer checks its data set
        #: once and switches this off, so the hot loop does not synchronise on it.
        self.check_inputs = True

    @property
    def latent_size(self) -> int:
        return self.prior.latent_size

    @property
    def device(self) -> torch.device:
        for tensor in (*self.parameters(), *self.buffers()):
            return tensor.device
        return torch.device("cpu")

    def _check(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise ZooError(f"input must be a torch.Tensor shaped [B, {', '.join(map(str, self.data_shape))}], "
                           f"got {type(x).__name__}")
        if tuple(x.shape[1:]) != self.data_shape:
            raise ZooError(
                f"input shaped {tuple(x.shape)}, but this model takes [B, {', '.join(map(str, self.data_shape))}]"
            )
        if x.shape[0] == 0:
            raise ZooError("input is an empty batch; give at least one example")
        if self.check_inputs:
            if not x.is_floating_point():
                raise ZooError(f"input has dtype {x.dtype}; convert it to floats in the likelihood's range "
                               "(e.g. x.float() / 255 for 8-bit images)")
            expected = next((p.dtype for p in self.parameters() if p.is_floating_point()), torch.float32)
            if x.dtype != expected and not torch.is_autocast_enabled():
                raise ZooError(f"input has dtype {x.dtype} but the model's parameters are {expected}; "
                               f"convert one of them (x.to({expected}) or model.to({x.dtype}))")
            self.likelihood.check_data(x)

    def forward(self, x: Tensor) -> ELBOTerms:
        return self.elbo(x)

    def elbo(self, x: Tensor) -> ELBOTerms:
        """Per-example ELBO terms with one reparameterised sample of z."""
        self._check(x)
        q = self.encoder(x)
        z = q.rsample()
        p_x = self.likelihood(self.decoder(z))
        recon = p_x.log_prob(x)
        kl = kl_term(q, self.prior(), z)
        return ELBOTerms(recon - kl, recon, kl)

    def loss(self, terms: ELBOTerms) -> Tensor:
        """The negative ELBO, mean over the batch (nats/example). Training uses a :class:`zoo.Objective`."""
        return -terms.elbo.mean()

    def iw_terms(self, x: Tensor, samples: int, chunk_size: int | None = None):
        """Yield ``(log p(x|z_k), log q(z_k|x) - log p(z_k))`` for ``samples`` draws per example,
        in chunks shaped [k, B]; their difference is the log importance weight.

        Decoding ``chunk_size`` draws at a time (default: about 4096 decoded examples) keeps
        memory bounded however many samples are asked for.
        """
        if not is_count(samples):
            raise ZooError(f"samples must be a positive integer (got {samples!r})")
        if chunk_size is not None and not is_count(chunk_size):
            raise ZooError(f"chunk_size must be a positive integer (got {chunk_size!r})")
        self._check(x)
        q = self.encoder(x)
        prior = self.prior()
        chunk = chunk_size or max(1, min(samples, 4096 // max(1, x.shape[0])))
        for start in range(0, samples, chunk):
            z = q.rsample((min(chunk, samples - start),))  # [k, B, L]: memory stays bounded in K
            log_px = self.likelihood(self.decoder(z)).log_prob(x.expand(len(z), *x.shape))
            yield log_px, q.log_prob(z) - prior.log_prob(z)

    def iw_log_weights(self, x: Tensor, samples: int, chunk_size: int | None = None):
        """Yield log p(x, z_k) - log q(z_k|x) for ``samples`` draws per example, in chunks [k, B]."""
        for log_px, log_ratio in self.iw_terms(x, samples, chunk_size):
            yield log_px - log_ratio

    def iwae(self, x: Tensor, samples: int = 50, chunk_size: int | None = None) -> Tensor:
        """Importance-weighted bound (Burda et al.) per example [B], with ``samples`` draws.

        Decoding happens in chunks of ``chunk_size`` draws (default: about 4096 decoded images
        at a time), so memory stays bounded for large ``samples``.
        """
        running = None  # logsumexp over the chunks seen so far
        for log_w in self.iw_log_weights(x, samples, chunk_size):
            part = torch.logsumexp(log_w, dim=0)
            running = part if running is None else torch.logaddexp(running, part)
        assert running is not None
        return running - math.log(samples)

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """``n`` images: the likelihood's mean at z drawn from the prior, [n, *data_shape]."""
        if not is_count(n):
            raise ZooError(f"the number of samples must be a positive integer (got {n!r})")
        z = self.prior.sample(n)
        return self.likelihood(self.decoder(z)).mean

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """The likelihood's mean at the posterior mean of each input."""
        self._check(x)
        return self.likelihood(self.decoder(self.encoder(x).mean)).mean

    def extra_repr(self) -> str:
        return f"latent_size={self.latent_size}, data_shape={self.data_shape}"


# -- building --------------------------------------------------------------------------------


def factory_parameters(factory: Any) -> dict[str, inspect.Parameter]:
    """The named parameters of a factory (a class's ``__init__`` without ``self``)."""
    try:
        params = dict(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        return {}
    return params


def factory_options(factory: Any) -> list[dict[str, Any]]:
    """The user options of a factory, read from its signature: name, type, default, required.

    The names zoo fills in itself (``latent_size``, ``data_shape``, ``output_shape`` and the
    components a factory asks for) are not options.
    """
    found = []
    for name, p in factory_parameters(factory).items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name in CONTEXT_NAMES or name in COMPONENT_KINDS:
            continue
        annotation = p.annotation
        if annotation is inspect.Parameter.empty:
            type_name = type(p.default).__name__ if p.default is not inspect.Parameter.empty and p.default is not None else "any"
        else:
            type_name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
        required = p.default is inspect.Parameter.empty
        found.append({"name": name, "type": type_name, "required": required,
                      "default": None if required else p.default})
    return found


def injected_kinds(factory: Any) -> list[str]:
    """The components a factory asks for by parameter name (``encoder``, ``decoder``, ...)."""
    params = factory_parameters(factory)
    return [kind for kind in COMPONENT_KINDS if kind in params]


def _check_option_types(factory: Any, options: dict[str, Any], what: str) -> None:
    """Reject options whose type cannot be what the factory's default is (``channels=1.5`` for an int)."""
    params = factory_parameters(factory)
    for name, value in options.items():
        p = params.get(name)
        if p is None or p.default is inspect.Parameter.empty or p.default is None:
            continue
        default = p.default
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok and not math.isfinite(value):
                raise ZooError(f"{what} option {name} must be a finite number (got {value!r})")
        elif isinstance(default, str):
            ok = isinstance(value, str)
        else:
            ok = True
        if not ok:
            raise ZooError(f"{what} option {name} expects {type(default).__name__} (default {default!r}), got {value!r}")


def _call_factory(factory: Any, options: dict[str, Any], context: dict[str, Any], what: str) -> Any:
    """Call ``factory`` with ``options`` plus whichever of ``context`` its signature names."""
    params = factory_parameters(factory)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    reserved = [k for k in options if k in CONTEXT_NAMES or k in COMPONENT_KINDS]
    if reserved:
        raise ZooError(
            f"{what}: {', '.join(map(repr, reserved))} {'is' if len(reserved) == 1 else 'are'} filled in by zoo "
            "(the model's latent size, data shape or components), not options; set latent_size on the model instead"
            if any(k in CONTEXT_NAMES for k in reserved) else
            f"{what}: {', '.join(map(repr, reserved))} is the model's own component, passed in by zoo, not an option"
        )
    kwargs = {k: v for k, v in context.items() if (takes_any and k in CONTEXT_NAMES) or k in params}
    unknown = [k for k in options if not takes_any and k not in params]
    if unknown:
        valid = [o["name"] for o in factory_options(factory)]
        raise ZooError(f"{what} has no option {', '.join(map(repr, unknown))} (its options: {', '.join(valid) or 'none'})")
    _check_option_types(factory, options, what)
    kwargs.update(options)
    try:
        return factory(**kwargs)
    except ZooError as exc:
        raise ZooError(f"{what}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ZooError(f"{what} rejected its options {options}: {exc}") from None
    except RuntimeError as exc:
        if options:
            raise ZooError(f"{what} could not be built with options {options}: {first_line(exc)}") from None
        raise


def _source(entry: Any, options: dict[str, Any]) -> dict[str, Any]:
    from zoo.plugins import get_registry

    info = get_registry().plugins.get(entry.plugin)
    return {"id": entry.id, "options": options, "plugin": entry.plugin,
            "distribution": getattr(info, "distribution", None), "version": getattr(info, "version", None)}


def _plain(value: Any) -> bool:
    """JSON-like data that a checkpoint can hold without pickled objects."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def identify(kind: str, obj: nn.Module) -> dict[str, Any]:
    """How to rebuild a ready-made component by id: ``{"id", "options", "plugin", ...}``.

    An object whose class is registered (as a class factory) is recorded by that id and the
    keyword arguments it was constructed with. Otherwise the record has ``"id": None`` and a
    ``"problem"`` that says why, which :func:`check_rebuildable` reports.
    """
    from zoo.plugins import get_registry

    cls = type(obj)
    name = f"{cls.__module__}:{cls.__qualname__}"
    matches = [e for e in get_registry().entries[kind].values()
               if e.factory is cls or (isinstance(e.factory, str) and e.factory == name)]
    if not matches:
        return {"id": None, "class": name,
                "problem": f"its class {name} is not registered as a {kind} by any installed plugin"}
    entry = matches[0]
    recorded = constructor_options(obj)
    if recorded is None:
        return {"id": None, "class": name, "problem": f"{name} did not record its constructor arguments"}
    options = {k: v for k, v in recorded.items() if k not in CONTEXT_NAMES and k not in COMPONENT_KINDS}
    if not _plain(options):
        bad = [k for k, v in options.items() if not _plain(v)]
        return {"id": None, "class": name,
                "problem": f"its option(s) {', '.join(bad)} are not plain data (numbers, strings, lists, dicts)"}
    return _source(entry, options)


def _build_order(factories: dict[str, Any], needs: dict[str, list[str]], describe) -> list[str]:
    """The kinds in an order where every component comes after the ones it asks for."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(kind: str, path: list[str]) -> None:
        if state.get(kind) == "done":
            return
        if state.get(kind) == "active":
            cycle = path[path.index(kind):] + [kind]
            raise IncompatibleComponentsError(
                "components ask for each other in a cycle: "
                + " -> ".join(f"{describe(k)}" for k in cycle)
                + "; one of them must be built without the other"
            )
        state[kind] = "active"
        for dep in needs.get(kind, []):
            visit(dep, path + [kind])
        state[kind] = "done"
        order.append(kind)

    for kind in ("likelihood", "encoder", "decoder", "prior"):
        visit(kind, [])
    return order


def _unregister_shared(component: nn.Module, shared: list[nn.Module]) -> None:
    """Keep an injected component as a plain attribute of the one that received it, so its
    parameters are registered (and stored in checkpoints) once, under the model."""
    for module in list(component.modules()):
        for name, child in list(module._modules.items()):
            if any(child is s for s in shared):
                del module._modules[name]
                module.__dict__[name] = child


def compose(
    encoder: str | Encoder,
    decoder: str | Decoder,
    prior: str | Prior = "standard-normal",
    likelihood: str | Likelihood = "bernoulli",
    *,
    latent_size: int,
    data_shape: Sequence[int] = (1, 28, 28),
    encoder_options: dict[str, Any] | None = None,
    decoder_options: dict[str, Any] | None = None,
    prior_options: dict[str, Any] | None = None,
    likelihood_options: dict[str, Any] | None = None,
) -> VAE:
    """Compose a :class:`VAE` from component ids, objects, or a mix.

    Registered factories receive their options plus whichever of ``latent_size``,
    ``data_shape``, ``output_shape`` (the decoder's output shape, asked of the likelihood) and
    the other components (``encoder``, ``decoder``, ``prior``, ``likelihood``) their signature
    names. Components are built in dependency order: a factory naming ``output_shape`` comes
    after the likelihood, one naming ``encoder`` after the encoder; a cycle is an
    :class:`IncompatibleComponentsError`, as are components that do not fit together.

    Objects of registered classes are recorded in ``model.spec`` by id and the options they
    were constructed with, so :func:`zoo.load` rebuilds them.
    """
    if not is_count(latent_size):
        raise ZooError(f"latent_size must be a positive integer (got {latent_size!r})")
    try:
        data_shape = tuple(int(d) for d in data_shape)
    except (TypeError, ValueError):
        raise ZooError(f"data_shape must be a sequence of positive integers (got {data_shape!r})") from None
    if not data_shape or any(d < 1 for d in data_shape):
        raise ZooError(f"data_shape must be a sequence of positive integers (got {data_shape!r})")
    given = {"encoder": encoder, "decoder": decoder, "prior": prior, "likelihood": likelihood}
    options = {
        "encoder": dict(encoder_options or {}),
        "decoder": dict(decoder_options or {}),
        "prior": dict(prior_options or {}),
        "likelihood": dict(likelihood_options or {}),
    }
    from zoo.plugins import get_registry

    registry = get_registry()
    entries: dict[str, Any] = {}
    factories: dict[str, Any] = {}
    for kind, spec in given.items():
        interface = _INTERFACES[kind]
        if isinstance(spec, interface):
            if options[kind]:
                raise ZooError(f"{kind} options {options[kind]} given with a ready-made {kind} object; "
                               "pass them to its constructor")
            continue
        if isinstance(spec, nn.Module) or not isinstance(spec, str):
            raise ZooError(
                f"{kind} must be a registered id or a zoo.{interface.__name__} instance, got {type(spec).__name__}"
            )
        entries[kind] = registry.get(kind, spec)
        factories[kind] = entries[kind].load()

    def describe(kind: str) -> str:
        return f"{kind} {given[kind]!r}" if kind in entries else f"{kind} {type(given[kind]).__name__}"

    needs = {kind: [k for k in injected_kinds(f) if k != kind] for kind, f in factories.items()}
    for kind, f in factories.items():
        if kind in injected_kinds(f):
            raise IncompatibleComponentsError(f"{describe(kind)} asks for a {kind} itself; a component cannot "
                                              "receive its own kind")
        if "output_shape" in factory_parameters(f) and kind != "likelihood":
            needs[kind].append("likelihood")
    order = _build_order(factories, needs, describe)

    context: dict[str, Any] = {"latent_size": latent_size, "data_shape": data_shape}
    objs: dict[str, nn.Module] = {}
    ids: dict[str, dict | None] = {}
    for kind in order:
        if kind not in entries:
            objs[kind] = given[kind]
            ids[kind] = identify(kind, given[kind])
        else:
            entry = entries[kind]
            ctx = dict(context, **{k: objs[k] for k in needs[kind] if k in COMPONENT_KINDS})
            obj = _call_factory(factories[kind], options[kind], ctx, f"{kind} {entry.id!r}")
            if not isinstance(obj, _INTERFACES[kind]):
                raise PluginError(f"plugin {entry.plugin!r}: {kind} {entry.id!r} built a {type(obj).__name__}, "
                                  f"not a zoo.{_INTERFACES[kind].__name__}")
            objs[kind], ids[kind] = obj, _source(entry, options[kind])
        if kind == "likelihood":
            context["output_shape"] = tuple(objs[kind].param_shape(data_shape))
    # A component holding another (one that received it by parameter name, or a VampPrior built
    # in Python with the model's encoder) keeps it as a plain attribute, so its parameters are
    # registered and stored once, under the model.
    for kind, obj in objs.items():
        _unregister_shared(obj, [other for k, other in objs.items() if k != kind])
    enc, dec, pri, lik = objs["encoder"], objs["decoder"], objs["prior"], objs["likelihood"]

    problems, fitting = [], []
    for kind in ("encoder", "decoder", "prior"):
        size = getattr(objs[kind], "latent_size", None)
        described = f"{describe(kind)} has latent_size {size}"
        (fitting if size == latent_size else problems).append(described)
    if problems:
        # Name every side of the mismatch: the odd ones out and the ones they disagree with.
        others = f" (while {', '.join(fitting)})" if fitting else ""
        raise IncompatibleComponentsError(
            f"components do not fit together for latent_size {latent_size}: {'; '.join(problems)}{others}"
        )
    out_shape = tuple(getattr(dec, "output_shape", context["output_shape"]))
    if out_shape != context["output_shape"]:
        raise IncompatibleComponentsError(
            f"{describe('decoder')} outputs {out_shape} per example but "
            f"{describe('likelihood')} needs {context['output_shape']} for data {data_shape}"
        )
    spec = {
        "components": {k: ids[k] for k in COMPONENT_KINDS},
        "latent_size": latent_size,
        "data_shape": list(data_shape),
    }
    return VAE(enc, dec, pri, lik, data_shape=data_shape, spec=spec)


def check_rebuildable(model: VAE) -> None:
    """Raise a :class:`ZooError` naming every component of ``model`` that cannot be recorded by id."""
    problems = []
    for kind in COMPONENT_KINDS:
        record = (model.spec.get("components") or {}).get(kind)
        if record is None:
            record = identify(kind, getattr(model, kind))
            model.spec.setdefault("components", {})[kind] = record
        if not record.get("id"):
            problems.append(f"{kind} {type(getattr(model, kind)).__name__}: {record.get('problem', 'not registered')}")
    if problems:
        raise ZooError(
            "this model cannot be written down by id, so its checkpoints could not be loaded: "
            + "; ".join(problems)
            + ". Register each class in a plugin (a register_<kind>s hook) or compose the model from ids"
        )


def build_objective(objective: str | Objective = "elbo", options: dict[str, Any] | None = None) -> tuple[Objective, dict[str, Any]]:
    """An objective and its record ``{"id", "options", "plugin", ...}`` from an id or a ready-made object."""
    options = dict(options or {})
    if isinstance(objective, Objective):
        if options:
            raise ZooError(f"objective options {options} given with a ready-made objective; pass them to its constructor")
        record = identify("objective", objective)
        if not record.get("id"):
            raise ZooError(f"objective {type(objective).__name__} cannot be written down by id: {record['problem']}; "
                           "register it with a register_objectives hook")
        return objective, record
    if not isinstance(objective, str) or not objective:
        raise ZooError(f"objective must be a registered id or a zoo.Objective, got {objective!r}")
    from zoo.plugins import get_registry

    entry = get_registry().get("objective", objective)
    obj = _call_factory(entry.load(), options, {}, f"objective {objective!r}")
    if not isinstance(obj, Objective):
        raise PluginError(f"plugin {entry.plugin!r}: objective {objective!r} built a {type(obj).__name__}, "
                          "not a zoo.Objective")
    return obj, _source(entry, options)


def create(model_id: str, **overrides: Any) -> VAE:
    """Build the registered recipe ``model_id`` (``zoo list``), with optional overrides.

    ``overrides`` use the keys of ``zoo train --set``: ``latent_size=16``, ``encoder.hidden=256``;
    training-only keys (``epochs``, ``lr``, ``objective``...) are accepted and ignored here.
    """
    if not isinstance(model_id, str) or not model_id:
        raise ZooError(f"model id must be a string such as 'vae-conv-mnist' (see zoo.list_models()), got {model_id!r}")
    from zoo.plugins import get_registry

    registry = get_registry()
    recipe: Recipe = registry.recipe(model_id)
    if overrides:
        recipe = recipe.with_overrides(overrides)
    return from_recipe(recipe)


def from_recipe(recipe: Recipe) -> VAE:
    """Build the model a :class:`Recipe` describes."""
    from zoo.plugins import get_registry

    dataset = get_registry().get("dataset", recipe.dataset).load()
    model = compose(
        recipe.encoder,
        recipe.decoder,
        recipe.prior,
        recipe.likelihood,
        latent_size=recipe.latent_size,
        data_shape=dataset.shape,
        encoder_options=recipe.encoder_options,
        decoder_options=recipe.decoder_options,
        prior_options=recipe.prior_options,
        likelihood_options=recipe.likelihood_options,
    )
    model.spec["recipe"] = recipe.to_dict()
    return model


def missing_components(spec: dict[str, Any]) -> list[str]:
    """One line per component (or objective) of ``spec`` whose id no loaded plugin registers,
    naming its plugin and the distribution that provides it."""
    from zoo.plugins import get_registry

    registry = get_registry()
    if not isinstance(spec, dict):
        return []
    records = dict(spec.get("components") or {}) if isinstance(spec.get("components"), dict) else {}
    if isinstance(spec.get("objective"), dict):
        records["objective"] = spec["objective"]
    lines = []
    for kind, c in records.items():
        if not isinstance(c, dict) or not isinstance(c.get("id"), str) or c["id"] in registry.entries.get(kind, {}):
            continue
        where = c.get("distribution")
        version = f" {c['version']}" if c.get("version") else ""
        provider = (f"package {where!r}{version}: pip install {where}" if where
                    else "no package recorded: install the plugin that registers it")
        lines.append(f"{kind} {c['id']!r} (plugin {c.get('plugin')!r}, {provider})")
    return lines


def require_plugins(spec: dict[str, Any], what: str = "this checkpoint") -> None:
    """Raise a :class:`ZooError` naming every component (and objective) of ``spec`` that no loaded
    plugin provides, each with its plugin and package."""
    absent = missing_components(spec)
    if absent:
        raise ZooError(f"{what} needs plugins that are not installed: {'; '.join(absent)}. "
                       "Install them and check 'zoo plugins'")


def spec_problems(spec: Any) -> list[str]:
    """What makes ``spec`` unusable as a model description (a damaged or foreign checkpoint)."""
    if not isinstance(spec, dict):
        return ["'spec' is not a mapping"]
    found = []
    components = spec.get("components")
    if not isinstance(components, dict):
        found.append("'spec.components' is missing")
    else:
        for kind in COMPONENT_KINDS:
            c = components.get(kind)
            if c is None:
                continue  # reported as an unregistered object below
            if not isinstance(c, dict) or not isinstance(c.get("options", {}), dict) \
                    or not isinstance(c.get("id"), (str, type(None))):
                found.append(f"'spec.components.{kind}' is damaged")
    latent = spec.get("latent_size")
    if not is_count(latent):
        found.append("'spec.latent_size' is missing or not a positive integer")
    shape = spec.get("data_shape")
    if not isinstance(shape, (list, tuple)) or not shape or not all(is_count(d) for d in shape):
        found.append("'spec.data_shape' is missing or not a list of positive integers")
    return found


def from_spec(spec: dict[str, Any], source: Any = None) -> VAE:
    """Rebuild a model from its :attr:`VAE.spec` (as stored in a checkpoint ``source``)."""
    problems = spec_problems(spec)
    if problems:
        where = f"{source}: the" if source else "the checkpoint's"
        raise ZooError(f"{where} model description is damaged ({'; '.join(problems)}); "
                       "give a checkpoint written by zoo")
    components = spec.get("components", {})
    missing = [k for k in COMPONENT_KINDS if not (components.get(k) or {}).get("id")]
    if missing:
        raise ZooError(
            f"this model was composed from unregistered {', '.join(missing)} object(s) and cannot be rebuilt "
            "by id; rebuild it in Python and load the weights with model.load_state_dict(checkpoint['model'])"
        )
    require_plugins({"components": components})
    model = compose(
        **{k: components[k]["id"] for k in COMPONENT_KINDS},
        latent_size=spec["latent_size"],
        data_shape=spec["data_shape"],
        **{f"{k}_options": components[k].get("options", {}) for k in COMPONENT_KINDS},
    )
    for key in ("recipe", "objective"):
        if key in spec:
            model.spec[key] = spec[key]
    return model
