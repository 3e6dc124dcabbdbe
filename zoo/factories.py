"""Component factories: reading their options from their signatures, checking the options a
user gives, and calling them with those options plus what zoo fills in (the model's latent size,
data shape, output shape and the components they ask for)."""

from __future__ import annotations

import inspect
import math
from typing import Any

from zoo.errors import ZooError, first_line
from zoo.recipe import COMPONENT_KINDS

#: Values zoo passes to factories that name them; never user options.
CONTEXT_NAMES = ("latent_size", "data_shape", "output_shape")


def factory_parameters(factory: Any) -> dict[str, inspect.Parameter]:
    """The named parameters of a factory (a class's ``__init__`` without ``self``).

    A class whose ``__init__`` is inherited from ``torch.nn.Module`` or ``object`` takes nothing: the
    ``*args, **kwargs`` of ``nn.Module.__init__`` are not a factory's options or context."""
    if isinstance(factory, type) and getattr(factory.__init__, "__qualname__", "") in (
        "Module.__init__",
        "object.__init__",
    ):
        return {}
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
            type_name = (
                type(p.default).__name__
                if p.default is not inspect.Parameter.empty and p.default is not None
                else "any"
            )
        else:
            type_name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
        required = p.default is inspect.Parameter.empty
        found.append(
            {"name": name, "type": type_name, "required": required, "default": None if required else p.default}
        )
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
            raise ZooError(
                f"{what} option {name} expects {type(default).__name__} (default {default!r}), got {value!r}"
            )


def call_factory(factory: Any, options: dict[str, Any], context: dict[str, Any], what: str) -> Any:
    """Call ``factory`` with ``options`` plus whichever of ``context`` its signature names."""
    params = factory_parameters(factory)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    reserved = [k for k in options if k in CONTEXT_NAMES or k in COMPONENT_KINDS]
    if reserved:
        raise ZooError(
            f"{what}: {', '.join(map(repr, reserved))} {'is' if len(reserved) == 1 else 'are'} filled in by zoo "
            "(the model's latent size, data shape or components), not options; set latent_size on the model instead"
            if any(k in CONTEXT_NAMES for k in reserved)
            else f"{what}: {', '.join(map(repr, reserved))} is the model's own component, passed in by zoo, not an option"
        )
    kwargs = {k: v for k, v in context.items() if (takes_any and k in CONTEXT_NAMES) or k in params}
    unknown = [k for k in options if not takes_any and k not in params]
    if unknown:
        valid = [o["name"] for o in factory_options(factory)]
        raise ZooError(
            f"{what} has no option {', '.join(map(repr, unknown))} (its options: {', '.join(valid) or 'none'})"
        )
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


def declared_partners(factory: Any, what: str) -> dict[str, str]:
    """The components a factory must be composed with, by kind: its ``partners`` attribute, e.g.
    ``partners = {"prior": "ladder"}`` on a ladder encoder's class (or function)."""
    partners = getattr(factory, "partners", None)
    if partners is None:
        return {}
    if not isinstance(partners, dict) or not all(
        k in COMPONENT_KINDS and isinstance(v, str) and v for k, v in partners.items()
    ):
        raise ZooError(
            f"{what} declares partners {partners!r}; it must map component kinds to ids, "
            "e.g. partners = {'prior': 'ladder'}"
        )
    return dict(partners)


def partner_problems(ids: dict[str, str | None], factories: dict[str, Any]) -> list[str]:
    """One line per component whose declared partner is not the component of that kind in
    ``ids`` (kind -> id, None for an object no id names)."""
    found = []
    for kind, factory in factories.items():
        for other, wanted in declared_partners(factory, f"{kind} {ids.get(kind)!r}").items():
            if ids.get(other) != wanted:
                got = f"{other} {ids[other]!r}" if ids.get(other) else f"an unregistered {other}"
                found.append(
                    f"{kind} {ids.get(kind)!r} must be composed with {other} {wanted!r} (its declared partner), "
                    f"not {got}"
                )
    return found
