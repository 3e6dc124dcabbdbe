"""Registration from a script or a notebook: ``zoo.register`` adds a component, objective, recipe or
data set to this process's registry, as the plugin ``in-process``, without writing a package.

What is registered this way is kept for the life of the process (a registry rebuilt after
:func:`zoo.plugins.reset` gets it again). A model built from it trains, checkpoints and reloads
in any process that registers the same factory under the same id before loading; a process that
does not gets the usual one-line error naming what is missing. Registering an id again from the
same process replaces it (re-running a notebook cell); an id an installed plugin already holds is
refused.
"""

from __future__ import annotations

from typing import Any

from zoo.errors import PluginError, ZooError

#: The plugin name under which in-process registrations appear (``zoo plugins``, checkpoints).
PLUGIN = "in-process"

#: Everything registered in this process, in order: (kind, id, factory, description).
_REGISTERED: dict[tuple[str, str], tuple[Any, str]] = {}


def register(kind: str, id: str | None = None, factory: Any = None, *, description: str = "") -> Any:
    """Register ``factory`` as ``kind`` ``id`` in this process; returns ``factory``.

    ``kind`` is ``encoder``, ``decoder``, ``prior``, ``likelihood``, ``objective``, ``recipe`` or
    ``dataset``. Without ``factory`` it is a decorator::

        @zoo.register("encoder", "my-mlp")
        class MyEncoder(zoo.Encoder): ...

    A recipe or data set may be given alone: ``zoo.register("recipe", my_recipe)``.
    """
    from zoo.registry import KINDS

    if kind not in KINDS:
        raise ZooError(f"zoo.register: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    if factory is None and kind in ("recipe", "dataset") and id is not None and not isinstance(id, str):
        id, factory = getattr(id, "id", None), id
    if factory is None:

        def decorator(obj: Any) -> Any:
            register(kind, id, obj, description=description)
            return obj

        if not isinstance(id, str):
            raise ZooError(f"zoo.register({kind!r}, ID): give the id to register under, e.g. 'my-{kind}'")
        return decorator
    if not isinstance(id, str):
        raise ZooError(f"zoo.register: the id must be a kebab-case string such as 'my-{kind}' (got {id!r})")
    description = description or (getattr(factory, "description", "") if kind in ("recipe", "dataset") else "")
    if not description:
        doc = (getattr(factory, "__doc__", None) or "").strip()
        description = doc.splitlines()[0] if doc and not isinstance(factory, type(register)) else ""
    _add(_current_registry(), kind, id, factory, description)
    _REGISTERED[(kind, id)] = (factory, description)
    return factory


def _current_registry():
    from zoo import plugins

    return plugins.get_registry()


def _add(registry, kind: str, id: str, factory: Any, description: str) -> None:
    from zoo.registry import PluginInfo

    registry.plugins.setdefault(PLUGIN, PluginInfo(PLUGIN, source="in-process (zoo.register)"))
    existing = registry.entries[kind].get(id)
    if existing is not None:
        if existing.plugin != PLUGIN:
            raise ZooError(
                f"zoo.register: {kind} {id!r} is already registered by plugin {existing.plugin!r}; choose another id"
            )
        del registry.entries[kind][id]
        registered = registry.plugins[PLUGIN].registered
        if (kind, id) in registered:
            registered.remove((kind, id))
    try:
        registry.add(kind, id, factory, plugin=PLUGIN, description=description)
    except PluginError as exc:
        raise ZooError(f"zoo.register: {str(exc).replace(f'plugin {PLUGIN!r} ', '')}") from None


def replay(registry) -> None:
    """Add this process's registrations to a freshly built ``registry``."""
    for (kind, id), (factory, description) in _REGISTERED.items():
        try:
            _add(registry, kind, id, factory, description)
        except ZooError as exc:  # an installed plugin now holds the id: keep the plugin's
            registry.plugins[PLUGIN].error = str(exc)


def forget() -> None:
    """Drop every in-process registration (tests)."""
    _REGISTERED.clear()
