"""Building models and objectives from registered ids: :func:`compose` (from component ids or
objects), :func:`create` (a registered recipe by id), :func:`from_recipe`, :func:`from_spec` (a
checkpoint's record) and :func:`build_objective`.

Components may use each other: a factory parameter named ``encoder``, ``decoder``, ``prior`` or
``likelihood`` receives the model's built component of that kind (a VampPrior's factory takes
``encoder``). :func:`compose` builds them in dependency order and reports a cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from zoo.errors import IncompatibleComponentsError, PluginError, ZooError, is_count
from zoo.factories import call_factory, factory_parameters, injected_kinds, partner_problems
from zoo.interfaces import Decoder, Encoder, Likelihood, Objective, Prior
from zoo.model import VAE
from zoo.recipe import COMPONENT_KINDS, Recipe
from zoo.spec import component_id, identify, require_plugins, source_record, spec_problems

_INTERFACES = {"encoder": Encoder, "decoder": Decoder, "prior": Prior, "likelihood": Likelihood, "objective": Objective}


def _build_order(factories: dict[str, Any], needs: dict[str, list[str]], describe) -> list[str]:
    """The kinds in an order where every component comes after the ones it asks for."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(kind: str, path: list[str]) -> None:
        if state.get(kind) == "done":
            return
        if state.get(kind) == "active":
            cycle = path[path.index(kind) :] + [kind]
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
                raise ZooError(
                    f"{kind} options {options[kind]} given with a ready-made {kind} object; "
                    "pass them to its constructor"
                )
            continue
        if isinstance(spec, nn.Module) or not isinstance(spec, str):
            raise ZooError(
                f"{kind} must be a registered id or a zoo.{interface.__name__} instance, got {type(spec).__name__}"
            )
        entries[kind] = registry.component(kind, spec)  # a prior id may name a sampler
        factories[kind] = entries[kind].load()

    def describe(kind: str) -> str:
        return f"{kind} {given[kind]!r}" if kind in entries else f"{kind} {type(given[kind]).__name__}"

    named = {k: (given[k] if k in entries else identify(k, given[k]).get("id")) for k in given}
    wrong = partner_problems(named, factories)
    if wrong:
        raise IncompatibleComponentsError("; ".join(wrong))

    needs = {kind: [k for k in injected_kinds(f) if k != kind] for kind, f in factories.items()}
    for kind, f in factories.items():
        if kind in injected_kinds(f):
            raise IncompatibleComponentsError(
                f"{describe(kind)} asks for a {kind} itself; a component cannot receive its own kind"
            )
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
            obj = call_factory(factories[kind], options[kind], ctx, f"{kind} {entry.id!r}")
            if not isinstance(obj, _INTERFACES[kind]):
                raise PluginError(
                    f"plugin {entry.plugin!r}: {kind} {entry.id!r} built a {type(obj).__name__}, "
                    f"not a zoo.{_INTERFACES[kind].__name__}"
                )
            objs[kind], ids[kind] = obj, source_record(entry, options[kind])
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


def build_objective(
    objective: str | Objective = "elbo", options: dict[str, Any] | None = None, model: Any = None
) -> tuple[Objective, dict[str, Any]]:
    """An objective and its record ``{"id", "options", "plugin", ...}`` from an id or a ready-made object.

    With the ``model`` it will train, a factory whose signature names ``latent_size`` or
    ``data_shape`` receives the model's, as a component's factory does (a discriminator of codes
    sizes itself to them); they are not options, so they are not recorded."""
    options = dict(options or {})
    if isinstance(objective, Objective):
        if options:
            raise ZooError(
                f"objective options {options} given with a ready-made objective; pass them to its constructor"
            )
        record = identify("objective", objective)
        if not record.get("id"):
            raise ZooError(
                f"objective {type(objective).__name__} cannot be written down by id: {record['problem']}; "
                "register it with a register_objectives hook"
            )
        return objective, record
    if not isinstance(objective, str) or not objective:
        raise ZooError(f"objective must be a registered id or a zoo.Objective, got {objective!r}")
    from zoo.plugins import get_registry

    entry = get_registry().get("objective", objective)
    context = {} if model is None else {"latent_size": model.latent_size, "data_shape": tuple(model.data_shape)}
    obj = call_factory(entry.load(), options, context, f"objective {objective!r}")
    if not isinstance(obj, Objective):
        raise PluginError(
            f"plugin {entry.plugin!r}: objective {objective!r} built a {type(obj).__name__}, not a zoo.Objective"
        )
    return obj, source_record(entry, options)


def autoencoder_objectives() -> list[str]:
    """Ids of the registered objectives that need no density of q(z|x) (``needs_density = False``):
    the ones a deterministic encoder trains with."""
    from zoo.plugins import get_registry

    registry = get_registry()
    found = []
    for id in registry.ids("objective"):
        try:
            factory = registry.get("objective", id).load()
        except Exception:  # noqa: BLE001 - a broken plugin is reported where it is used, not here
            continue
        if getattr(factory, "needs_density", True) is False:
            found.append(id)
    return found


def check_objective_fits(model: VAE, objective: Objective, record: dict[str, Any] | None = None) -> None:
    """Refuse an objective that needs q(z|x) to have a density (``Objective.needs_density``) for a
    model whose encoder is deterministic (``Encoder.deterministic``): an
    :class:`IncompatibleComponentsError` naming both and the objectives that fit."""
    if not getattr(model.encoder, "deterministic", False) or not getattr(objective, "needs_density", True):
        return
    name = (record or {}).get("id") or identify("objective", objective).get("id") or type(objective).__name__
    encoder = (model.spec.get("components", {}).get("encoder") or {}).get("id") or type(model.encoder).__name__
    fitting = ", ".join(autoencoder_objectives()) or "none is registered"
    raise IncompatibleComponentsError(
        f"objective {name!r} needs q(z|x) to have a density, but encoder {encoder!r} is deterministic; "
        f"train it with an objective for autoencoders: {fitting}"
    )


def create(model_id: str, *, pretrained: bool = False, **overrides: Any) -> VAE:
    """Build the registered recipe ``model_id`` (``zoo list``), with optional overrides.

    ``overrides`` use the keys of ``zoo train --set``: ``latent_size=16``, ``encoder.hidden=256``;
    training-only keys (``epochs``, ``lr``, ``objective``...) are accepted and ignored here.
    ``pretrained=True`` loads the weights the recipe's pretrained index names (:mod:`zoo.pretrained`),
    from the shipped ``weights/`` folder or the Hub, checked against the index's SHA-256.
    """
    if not isinstance(model_id, str) or not model_id:
        raise ZooError(f"model id must be a string such as 'vae-conv-mnist' (see zoo.list_models()), got {model_id!r}")
    from zoo.plugins import get_registry

    registry = get_registry()
    registered: Recipe = registry.recipe(model_id)
    recipe = registered.with_overrides(overrides) if overrides else registered
    model = from_recipe(recipe)
    if pretrained:
        from zoo.pretrained import load_pretrained

        load_pretrained(model, registered)
    return model


def from_recipe(recipe: Recipe, dataset: Any = None) -> VAE:
    """Build the model a :class:`Recipe` describes, for ``dataset`` (a :class:`zoo.DatasetInfo`;
    default: the one the recipe names, :func:`zoo.plan.dataset_of`)."""
    from zoo.plan import dataset_of

    if dataset is None:
        dataset = dataset_of(recipe)
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


def from_spec(spec: dict[str, Any], source: Any = None) -> VAE:
    """Rebuild a model from its :attr:`VAE.spec` (as stored in a checkpoint ``source``)."""
    problems = spec_problems(spec)
    if problems:
        where = f"{source}: the" if source else "the checkpoint's"
        raise ZooError(
            f"{where} model description is damaged ({'; '.join(problems)}); give a checkpoint written by zoo"
        )
    components = spec.get("components", {})
    missing = [k for k in COMPONENT_KINDS if not (components.get(k) or {}).get("id")]
    if missing:
        raise ZooError(
            f"this model was composed from unregistered {', '.join(missing)} object(s) and cannot be rebuilt "
            "by id; rebuild it in Python and load the weights with model.load_state_dict(checkpoint['model'])"
        )
    require_plugins({"components": components})
    model = compose(
        **{k: component_id(k, components[k]) for k in COMPONENT_KINDS},
        latent_size=spec["latent_size"],
        data_shape=spec["data_shape"],
        **{f"{k}_options": components[k].get("options", {}) for k in COMPONENT_KINDS},
    )
    for key in ("recipe", "objective"):
        if key in spec:
            model.spec[key] = spec[key]
    return model
