"""A model's spec, the record that lets zoo rebuild it: how each component is written down by id
(:func:`identify`), and what stops a spec from being rebuilt (damage, plugins that are not
installed, components that are not registered)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from zoo.errors import ZooError, is_count
from zoo.factories import CONTEXT_NAMES
from zoo.interfaces import constructor_options
from zoo.recipe import COMPONENT_KINDS

if TYPE_CHECKING:
    from zoo.model import VAE


def source_record(entry: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The record of a component built by the registry ``entry`` with ``options``: id, options, plugin,
    distribution and version."""
    from zoo.plugins import get_registry

    info = get_registry().plugins.get(entry.plugin)
    record = {
        "id": entry.id,
        "options": options,
        "plugin": entry.plugin,
        "distribution": getattr(info, "distribution", None),
        "version": getattr(info, "version", None),
    }
    if entry.kind == "sampler":  # a model's prior that is a sampler: rebuilt as one even if a prior shares its id
        record["kind"] = "sampler"
    return record


def component_id(kind: str, record: dict[str, Any]) -> str:
    """The id :func:`zoo.compose` takes for a spec's component ``record``: ``sampler:ID`` for a
    prior recorded as a sampler."""
    if kind == "prior" and record.get("kind") == "sampler":
        return f"sampler:{record['id']}"
    return record["id"]


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
    registry = get_registry()
    kinds = (kind, "sampler") if kind == "prior" else (kind,)  # a fitted sampler is the model's prior
    matches = [
        e
        for k in kinds
        for e in registry.entries[k].values()
        if e.factory is cls or (isinstance(e.factory, str) and e.factory == name)
    ]
    if not matches:
        return {
            "id": None,
            "class": name,
            "problem": f"its class {name} is not registered as a {kind} (zoo.register({kind!r}, ID, CLASS) or a plugin)",
        }
    entry = matches[0]
    recorded = constructor_options(obj)
    if recorded is None:
        return {"id": None, "class": name, "problem": f"{name} did not record its constructor arguments"}
    options = {k: v for k, v in recorded.items() if k not in CONTEXT_NAMES and k not in COMPONENT_KINDS}
    if not _plain(options):
        bad = [k for k, v in options.items() if not _plain(v)]
        return {
            "id": None,
            "class": name,
            "problem": f"its option(s) {', '.join(bad)} are not plain data (numbers, strings, lists, dicts)",
        }
    return source_record(entry, options)


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
            + ". Register each class with zoo.register(KIND, ID, CLASS) (or in a plugin) or compose the model from ids"
        )


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
        if not isinstance(c, dict) or not isinstance(c.get("id"), str):
            continue
        if kind == "prior" and c.get("kind") == "sampler":  # a prior fitted by zoo fit-prior
            found = c["id"] in registry.entries["sampler"]
        else:
            found = c["id"] in registry.entries.get(kind, {}) or (
                kind == "prior" and c["id"] in registry.entries["sampler"]
            )
        if found:
            continue
        where = c.get("distribution")
        version = f" {c['version']}" if c.get("version") else ""
        provider = (
            f"package {where!r}{version}: pip install {where}"
            if where
            else f"registered in the training process: call zoo.register({kind!r}, {c['id']!r}, ...) before loading"
            if c.get("plugin") == "in-process"
            else "no package recorded: install the plugin that registers it"
        )
        lines.append(f"{kind} {c['id']!r} (plugin {c.get('plugin')!r}, {provider})")
    return lines


def require_plugins(spec: dict[str, Any], what: str = "this checkpoint") -> None:
    """Raise a :class:`ZooError` naming every component (and objective) of ``spec`` that no loaded
    plugin provides, each with its plugin and package."""
    absent = missing_components(spec)
    if absent:
        raise ZooError(
            f"{what} needs plugins that are not installed: {'; '.join(absent)}. Install them and check 'zoo plugins'"
        )


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
            if (
                not isinstance(c, dict)
                or not isinstance(c.get("options", {}), dict)
                or not isinstance(c.get("id"), (str, type(None)))
            ):
                found.append(f"'spec.components.{kind}' is damaged")
    latent = spec.get("latent_size")
    if not is_count(latent):
        found.append("'spec.latent_size' is missing or not a positive integer")
    shape = spec.get("data_shape")
    if not isinstance(shape, (list, tuple)) or not shape or not all(is_count(d) for d in shape):
        found.append("'spec.data_shape' is missing or not a list of positive integers")
    return found
