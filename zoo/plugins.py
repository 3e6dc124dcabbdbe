"""Plugin discovery and the process-wide registry.

Plugins are Python modules (or objects) with :data:`zoo.hookimpl`-decorated functions named
after the hooks in :mod:`zoo.hookspecs`. Installed packages announce them in the entry-point
group ``zoo``::

    [project.entry-points.zoo]
    my-models = "my_models.plugin"

Each entry point is loaded on its own: one that fails to import, uses a hook name that does not
exist, or raises while registering is recorded with its error (``zoo plugins`` shows it) and
everything else keeps working.

Environment variables:

``ZOO_PLUGINS``
    Comma-separated entry-point names to load; everything else installed is ignored.
    Set it to an empty string to load no installed plugins at all.
``ZOO_DISABLE_PLUGINS``
    Comma-separated entry-point names not to load.
``ZOO_TRACE_PLUGINS``
    When set, every hook call is reported on standard error.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterable, Iterator
from importlib import metadata
from typing import Any

import pluggy

from zoo import hookspecs
from zoo.registry import KINDS, PluginInfo, Registry

ENTRY_POINT_GROUP = "zoo"
#: Modules inside zoo itself that are plugins too (the built-in data sets and objectives).
DEFAULT_PLUGINS = ("zoo.data", "zoo.builtins")

#: hook name -> registry kind
REGISTER_HOOKS = {
    "register_encoders": "encoder",
    "register_decoders": "decoder",
    "register_priors": "prior",
    "register_likelihoods": "likelihood",
    "register_objectives": "objective",
    "register_recipes": "recipe",
    "register_datasets": "dataset",
    "register_samplers": "sampler",
}

_registry: Registry | None = None
_manager: pluggy.PluginManager | None = None


def _names_from_env(var: str) -> set[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def selection_note() -> str | None:
    """A sentence naming ``ZOO_PLUGINS`` / ``ZOO_DISABLE_PLUGINS`` when they leave installed plugins out,
    for errors about ids or plugins that were not found (the variable, not a missing package, may be why)."""
    parts = []
    installed = sorted({ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)})
    only = _names_from_env("ZOO_PLUGINS")
    if only is not None:
        unknown = sorted(only - set(installed))
        left_out = [name for name in installed if name not in only]
        if unknown or left_out:
            text = f"ZOO_PLUGINS={os.environ['ZOO_PLUGINS']!r} loads only the plugins it names"
            if unknown:
                text += f" ({', '.join(unknown)}: no such plugin installed)"
            parts.append(text)
    skip = _names_from_env("ZOO_DISABLE_PLUGINS")
    if skip and skip & set(installed):
        parts.append(
            f"ZOO_DISABLE_PLUGINS={os.environ['ZOO_DISABLE_PLUGINS']!r} turns off {', '.join(sorted(skip & set(installed)))}"
        )
    if not parts:
        return None
    return (
        "; ".join(parts)
        + f"; installed plugins: {', '.join(installed) or 'none'} (unset the variable to load them all)"
    )


def _trace(message: str) -> None:
    if os.environ.get("ZOO_TRACE_PLUGINS"):
        print(f"zoo-trace: {message}", file=sys.stderr)


def _describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _register_one(pm: pluggy.PluginManager, plugin: Any, name: str, info: PluginInfo, registry: Registry) -> None:
    try:
        pm.register(plugin, name=name)
        pm.check_pending()
    except Exception as exc:  # noqa: BLE001 - a bad plugin must not stop the rest
        if pm.is_registered(plugin):
            pm.unregister(plugin)
        message = _describe_error(exc)
        if isinstance(exc, pluggy.PluginValidationError) and "unknown hook" in message:
            known = ", ".join(n for n in dir(hookspecs) if n.startswith("register_"))
            message += f" (the hooks are: {known})"
        info.error = message
    registry.plugins[name] = info


def build(
    plugins: Iterable[tuple[str, Any]] = (),
    *,
    entry_points: bool = True,
    defaults: bool = True,
) -> tuple[Registry, pluggy.PluginManager]:
    """Build a fresh registry and plugin manager.

    ``plugins`` are extra ``(name, module_or_object)`` pairs (tests use them); ``entry_points``
    loads installed plugins (honouring ``ZOO_PLUGINS`` / ``ZOO_DISABLE_PLUGINS``); ``defaults``
    loads zoo's own :data:`DEFAULT_PLUGINS`.
    """
    import importlib

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = Registry()

    if defaults:
        for module_name in DEFAULT_PLUGINS:
            _register_one(
                pm,
                importlib.import_module(module_name),
                module_name,
                PluginInfo(module_name, source="built-in"),
                registry,
            )

    if entry_points:
        only = _names_from_env("ZOO_PLUGINS")
        skip = _names_from_env("ZOO_DISABLE_PLUGINS") or set()
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if (only is not None and ep.name not in only) or ep.name in skip or ep.name in registry.plugins:
                continue
            dist = getattr(ep, "dist", None)
            info = PluginInfo(
                ep.name,
                version=dist.version if dist else None,
                distribution=dist.metadata["Name"] if dist else None,
            )
            _trace(f"loading entry point {ep.name} = {ep.value}")
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - record it, keep going
                info.error = _describe_error(exc)
                info.traceback = traceback.format_exc()  # type: ignore[attr-defined]
                registry.plugins[ep.name] = info
                continue
            _register_one(pm, plugin, ep.name, info, registry)

    for name, plugin in plugins:
        _register_one(pm, plugin, name, PluginInfo(name, source="manual"), registry)

    _fill(registry, pm)
    return registry, pm


def call_hook(pm: pluggy.PluginManager, hook_name: str, registry: Registry | None = None, **kwargs: Any) -> None:
    """Call ``hook_name`` on every plugin separately, so one that raises is recorded, not fatal."""
    caller = getattr(pm.hook, hook_name)
    for impl in caller.get_hookimpls():  # registration order (pluggy itself calls them last-first)
        _trace(f"{impl.plugin_name}.{hook_name}()")
        try:
            impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
        except Exception as exc:  # noqa: BLE001
            if registry is not None and impl.plugin_name in registry.plugins:
                info = registry.plugins[impl.plugin_name]
                info.error = _join(info.error, f"{hook_name} raised {_describe_error(exc)}")
            else:
                print(
                    f"zoo: plugin {impl.plugin_name!r} failed in {hook_name}: {_describe_error(exc)}", file=sys.stderr
                )


def _join(old: str | None, new: str) -> str:
    return new if not old else f"{old}; {new}"


def _fill(registry: Registry, pm: pluggy.PluginManager) -> None:
    from zoo.errors import PluginError

    failed: set[str] = set()
    for hook_name, kind in REGISTER_HOOKS.items():
        # Registration order, so the plugin loaded first keeps a contested id and the later one
        # is the one reported (pluggy's own calls run last-registered first).
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            name = impl.plugin_name
            info = registry.plugins.setdefault(name, PluginInfo(name, source="manual"))
            if name in failed:
                continue

            def register(id: str, factory: Any = None, *, description: str = "", _kind=kind, _info=info) -> None:
                if _kind in ("recipe", "dataset") and factory is None and not isinstance(id, str):
                    id, factory = getattr(id, "id", None), id  # register(recipe)
                    description = description or getattr(factory, "description", "")
                try:
                    registry.add(_kind, id, factory, plugin=_info.name, description=description)
                except PluginError as exc:
                    _info.error = _join(_info.error, str(exc))

            _trace(f"{name}.{hook_name}(register)")
            try:
                impl.function(**{arg: register for arg in impl.argnames})
            except Exception as exc:  # noqa: BLE001 - the plugin is broken, drop what it half-registered
                info.error = _join(info.error, f"{hook_name} raised {_describe_error(exc)}")
                failed.add(name)
                registry.remove_plugin(name)


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _registry, _manager
    if _registry is None:
        from zoo.in_process import replay

        _registry, _manager = build()
        replay(_registry)  # what zoo.register added in this process
    return _registry


def get_plugin_manager() -> pluggy.PluginManager:
    get_registry()
    assert _manager is not None
    return _manager


def reset() -> None:
    """Forget the process-wide registry; the next lookup rebuilds it (after installing a plugin)."""
    global _registry, _manager
    _registry = _manager = None


@contextlib.contextmanager
def using(registry: Registry, pm: pluggy.PluginManager | None = None) -> Iterator[Registry]:
    """Make ``registry`` the process-wide one for the duration of a ``with`` block (tests)."""
    global _registry, _manager
    saved = _registry, _manager
    _registry, _manager = registry, pm
    try:
        yield registry
    finally:
        _registry, _manager = saved


__all__ = ["ENTRY_POINT_GROUP", "DEFAULT_PLUGINS", "KINDS", "build", "get_registry", "reset", "using", "call_hook"]
