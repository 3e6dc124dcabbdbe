"""The registry: every component, recipe and data set the loaded plugins provide, by kind and id."""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import re
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import PluginError, UnknownIdError, ZooError, suggest

KINDS = ("encoder", "decoder", "prior", "likelihood", "objective", "recipe", "dataset", "sampler")
#: A model's prior given as ``sampler:ID`` is the registered sampler ``ID`` (see :meth:`Registry.component`).
SAMPLER_PREFIX = "sampler:"
ID_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


@dataclass
class Entry:
    """One registered thing. ``factory`` may be a ``"module:attribute"`` string, imported on first use."""

    kind: str
    id: str
    factory: Any
    plugin: str
    description: str = ""

    def load(self) -> Any:
        """The factory itself (importing it when it was registered as a string)."""
        if isinstance(self.factory, str):
            module_name, _, attr = self.factory.partition(":")
            try:
                obj: Any = importlib.import_module(module_name)
                for part in attr.split("."):
                    obj = getattr(obj, part)
            except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's
                raise PluginError(
                    f"plugin {self.plugin!r} registered {self.kind} {self.id!r} as {self.factory!r}, "
                    f"which cannot be imported ({type(exc).__name__}: {exc}); reinstall or fix the plugin"
                ) from exc
            self.factory = obj
            _check_factory(self.kind, self.id, obj, self.plugin)
        return self.factory

    @property
    def factory_name(self) -> str:
        f = self.factory
        if isinstance(f, str):
            return f
        return f"{getattr(f, '__module__', '?')}:{getattr(f, '__qualname__', type(f).__name__)}"


@dataclass
class PluginInfo:
    """What ``zoo plugins`` shows about one plugin."""

    name: str
    version: str | None = None
    distribution: str | None = None
    source: str = "entry point"
    error: str | None = None
    registered: list[tuple[str, str]] = field(default_factory=list)
    traceback: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "distribution": self.distribution,
            "source": self.source,
            "error": self.error,
            "registered": {kind: [i for k, i in self.registered if k == kind] for kind in KINDS},
        }


def _interface(kind: str) -> type | None:
    if kind in ("recipe", "dataset"):
        return None
    import zoo.interfaces as interfaces

    return getattr(interfaces, kind.capitalize())


def _check_factory(kind: str, id: str, factory: Any, plugin: str) -> None:
    """Reject what cannot possibly be a ``kind``; a function factory is checked when called."""
    if kind == "recipe":
        from zoo.recipe import Recipe

        ok, expected = isinstance(factory, Recipe), "a zoo.Recipe"
    elif kind == "dataset":
        from zoo.data import DatasetInfo

        ok, expected = isinstance(factory, DatasetInfo), "a zoo.DatasetInfo"
    else:
        interface = _interface(kind)
        expected = f"a subclass of zoo.{interface.__name__} or a function returning one"
        if inspect.isclass(factory):
            ok = issubclass(factory, interface)
        else:
            ok = callable(factory) and not isinstance(factory, interface)
    if not ok:
        raise PluginError(f"plugin {plugin!r} registered {kind} {id!r} as {factory!r}, which is not {expected}")


class Registry:
    """Everything registered by the loaded plugins.

    Built once per process by :func:`zoo.plugins.get_registry`; tests build their own.
    """

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self.conflicts: dict[tuple[str, str], list[str]] = {}
        self.plugins: dict[str, PluginInfo] = {}

    # -- filling -------------------------------------------------------------------------------
    def add(self, kind: str, id: str, factory: Any, *, plugin: str, description: str = "") -> None:
        """Register ``factory`` as ``kind`` ``id`` on behalf of ``plugin``; raises PluginError."""
        if kind not in KINDS:
            raise PluginError(f"plugin {plugin!r}: unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
        if not isinstance(id, str) or not ID_PATTERN.match(id):
            raise PluginError(
                f"plugin {plugin!r} registered {kind} id {id!r}, which is not kebab-case "
                "(lower-case letters and digits separated by single hyphens, e.g. 'vae-conv-mnist')"
            )
        if isinstance(factory, str):
            if not re.match(r"^[\w.]+:[\w.]+$", factory):
                raise PluginError(
                    f"plugin {plugin!r} registered {kind} {id!r} as {factory!r}; a lazy factory must be "
                    "written 'package.module:attribute'"
                )
        else:
            _check_factory(kind, id, factory, plugin)
        if kind in ("recipe", "dataset") and getattr(factory, "id", id) != id:
            raise PluginError(f"plugin {plugin!r} registered {kind} {factory.id!r} under the id {id!r}")
        existing = self.entries[kind].get(id)
        if existing is not None:
            owners = self.conflicts.setdefault((kind, id), [existing.plugin])
            owners.append(plugin)
            raise PluginError(
                f"{kind} id {id!r} is registered by both plugin {existing.plugin!r} and plugin {plugin!r}; "
                "uninstall one of them or load only one (ZOO_PLUGINS=...)"
            )
        self.entries[kind][id] = Entry(kind, id, factory, plugin, description)
        if plugin in self.plugins:
            self.plugins[plugin].registered.append((kind, id))

    def remove_plugin(self, plugin: str) -> None:
        """Drop everything ``plugin`` registered (used when it fails half-way)."""
        for kind in KINDS:
            for id in [i for i, e in self.entries[kind].items() if e.plugin == plugin]:
                del self.entries[kind][id]
        if plugin in self.plugins:
            self.plugins[plugin].registered.clear()

    # -- lookup --------------------------------------------------------------------------------
    def ids(self, kind: str, pattern: str | None = None) -> list[str]:
        ids = sorted(self.entries[kind])
        if pattern:
            ids = [i for i in ids if fnmatch.fnmatchcase(i, pattern)]
        return ids

    def get(self, kind: str, id: str) -> Entry:
        """The entry for ``kind`` ``id``, or an error that says what to try instead."""
        if kind not in KINDS:
            raise ZooError(f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
        owners = self.conflicts.get((kind, id))
        if owners:
            raise ZooError(
                f"{kind} id {id!r} is registered by more than one plugin ({', '.join(repr(o) for o in owners)}); "
                "uninstall all but one, or load only one with ZOO_PLUGINS=..."
            )
        entry = self.entries[kind].get(id)
        if entry is not None:
            return entry
        message = f"unknown {'model' if kind == 'recipe' else kind} {id!r}"
        close = suggest(id, self.entries[kind])
        if close:
            message += f"; did you mean {' or '.join(repr(c) for c in close)}?"
        else:
            message += "."
        message += f" Run 'zoo list{'' if kind == 'recipe' else ' --kind ' + kind}' to see what is available"
        broken = [p.name for p in self.plugins.values() if p.error]
        if broken:
            message += f"; plugin(s) {', '.join(repr(b) for b in broken)} failed to load (see 'zoo plugins')"
        else:
            message += " and 'zoo plugins' for the installed plugins"
        raise UnknownIdError(message, kind=kind, id=id)

    def component(self, kind: str, id: str) -> Entry:
        """The entry a model's ``kind`` component ``id`` names: a prior id may also name a sampler (a
        post-hoc prior written into a model by ``zoo fit-prior``); priors are looked up first, and
        ``sampler:ID`` names the sampler ``ID`` even where a prior has the same id."""
        if kind == "prior" and isinstance(id, str):
            if id.startswith(SAMPLER_PREFIX):
                return self.get("sampler", id[len(SAMPLER_PREFIX) :])
            if id not in self.entries["prior"] and id in self.entries["sampler"]:
                return self.get("sampler", id)
        return self.get(kind, id)

    def recipe(self, id: str):
        return self.get("recipe", id).load()
