"""What a conformance check examines and how it reports: the shared :class:`Settings`, the
:class:`Subject` (the registered thing under check, built into a small model of one data shape
with :data:`PARTNERS`), and :func:`fail`, which fails the test with a pointer into the docs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

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
#: The data shapes every component is checked on: grey-level square, and colour, non-square with an
#: odd side (what a network hard-wired to one size or to one channel gets wrong).
DATA_SHAPES: tuple[tuple[int, ...], ...] = ((1, 8, 8), (3, 9, 14))
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
    data_shapes: tuple[tuple[int, ...], ...] = DATA_SHAPES
    batch_size: int = 4


def fail(message: str) -> None:
    pytest.fail(message, pytrace=False)


class Subject:
    """The registered thing a check examines, with helpers to build it and report on it."""

    def __init__(self, kind: str, target: str, settings: Settings, data_shape: tuple[int, ...] | None = None) -> None:
        self.kind, self.target, self.settings = kind, target, settings
        #: The data shape of the models this subject is built into (the first of the settings' by default).
        self.data_shape = tuple(data_shape or settings.data_shapes[0])
        #: Whether failures name the data shape (when the check runs on more than one).
        self.names_shape = False

    @property
    def slot(self) -> str:
        """The model's component this subject is: a sampler (a post-hoc prior) sits in the prior's place."""
        return "prior" if self.kind == "sampler" else self.kind

    @property
    def what(self) -> str:
        return f"{self.kind} {self.target!r}"

    def fail(self, promise: str, anchor: str | None = None, doc: str = INTERFACES_DOC) -> None:
        """Fail with ``<kind> '<id>': <promise>; see <doc>#<anchor>`` (``<kind> '<id>' on data shape
        (C, H, W): ...`` when the check runs on several shapes)."""
        where = f" on data shape {self.data_shape}" if self.names_shape else ""
        fail(f"{self.what}{where}: {promise}; see {doc}#{anchor or self.kind}")

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
        return self.call(
            "building a model with it",
            lambda: self.build_model(component_options or None),
            "how-factories-receive-their-arguments",
        )

    def build_model(self, component_options: dict[str, Any] | None = None):
        """:meth:`model` with the component's own ``component_options`` (default: the author's), unwrapped.
        The places its factory names in ``partners`` hold those components instead of :data:`PARTNERS`."""
        import zoo
        from zoo.factories import declared_partners

        ids: dict[str, str] = {}
        options: dict[str, dict[str, Any]] = {}
        declared = declared_partners(self.factory(), self.what)  # a ladder encoder's ladder prior
        for kind in COMPONENT_KINDS:
            if kind == self.slot:
                ids[kind] = f"sampler:{self.target}" if self.kind == "sampler" else self.target
                options[kind] = self.options() if component_options is None else dict(component_options)
            elif kind in declared:
                ids[kind] = declared[kind]
                options[kind] = self.options(kind, ids[kind])
            else:
                ids[kind], defaults = partner(kind)
                options[kind] = {**defaults, **self.options(kind, ids[kind])}
        return zoo.compose(
            **ids,
            latent_size=self.settings.latent_size,
            data_shape=self.data_shape,
            **{f"{k}_options": options[k] for k in COMPONENT_KINDS},
        )

    def component(self, model):
        return getattr(model, self.slot)


def partner(kind: str) -> tuple[str, dict[str, Any]]:
    from zoo.plugins import get_registry

    registry = get_registry()
    id, options = PARTNERS[kind]
    if id in registry.entries[kind]:
        return id, dict(options)
    others = registry.ids(kind)
    if not others:
        fail(f"no {kind} is registered to build a model with; install zoo's reference plugin (aevb)")
    return others[0], {}
