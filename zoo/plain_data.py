"""Plain data: what a run stores (recipes, configs, checkpoints) and how zoo reads it back.

A run's recipe, overrides and config are written to ``config.json`` and into every checkpoint,
which is read with ``torch.load(weights_only=True)``. Both accept plain data only: ``None``,
bools, ints, floats, strings, lists, tuples and dicts with string keys. :func:`to_plain` turns
what users naturally pass (numpy scalars from ``np.linspace``, dates from a TOML file) into plain
data when a run starts, and refuses anything else in one line naming the key.
:func:`read_json_file` and :func:`loads_json` read JSON written by zoo with limits on size,
nesting and numbers, so a damaged or hostile file is a :class:`ZooError` naming it, never a
traceback.
"""

from __future__ import annotations

import collections
import datetime
import json
import math
import os
from pathlib import Path
from typing import Any

from zoo.errors import ZooError

#: The largest magnitude of an integer zoo stores: what torch (int64) and TOML accept.
MAX_INT = 2**63 - 1
#: How deeply lists and dicts may nest in stored data and in files zoo reads.
MAX_DEPTH = 32
#: The largest JSON file zoo reads (``config.json``, ``eval/metrics.json``, ``metrics.jsonl``).
MAX_JSON_BYTES = 64 * 1024 * 1024


def _where(path: str) -> str:
    return path or "the value"


def to_plain(value: Any, where: str = "", *, depth: int = 0) -> Any:
    """``value`` as plain data: numpy scalars become Python numbers (``.item()``), dates and times
    ISO strings, tuples stay tuples; anything else, an integer beyond +-(2**63 - 1), a non-string
    dict key or nesting deeper than :data:`MAX_DEPTH` is a :class:`ZooError` naming ``where``."""
    if depth > MAX_DEPTH:
        raise ZooError(f"{_where(where)} nests lists or tables more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, (bool, str)):
        return str(value) if isinstance(value, str) and type(value) is not str else value
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()  # np.float64(2.0) -> 2.0, np.int64(3) -> 3, np.bool_ -> bool
        if isinstance(value, (bytes, complex)) or not isinstance(value, (bool, int, float, str)):
            raise ZooError(f"{_where(where)} is a numpy {type(value).__name__}, which a run cannot store")
        return to_plain(value, where, depth=depth)
    if isinstance(value, int):
        if abs(value) > MAX_INT:
            raise ZooError(f"{_where(where)} is an integer beyond +-(2**63 - 1), which a run cannot store")
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        items = [to_plain(v, f"{where}[{i}]", depth=depth + 1) for i, v in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ZooError(f"{_where(where)} has the key {key!r}, which is not a string")
            out[str(key)] = to_plain(item, f"{where}.{key}" if where else key, depth=depth + 1)
        return out
    raise ZooError(
        f"{_where(where)} is a {type(value).__name__} ({_short(value)}); a run stores numbers, strings, "
        "booleans, lists and tables only"
    )


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a foreign object's repr
        text = type(value).__name__
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."


def first_unstorable(value: Any, where: str = "") -> str | None:
    """Where ``value`` (a checkpoint payload) holds something ``torch.load(weights_only=True)`` would
    refuse: the first offending key and its type, or None. Tensors and torch's sizes, dtypes and
    devices are allowed; only the plain part is walked, so it is cheap."""
    import torch

    stack = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        if item is None or type(item) in (bool, int, float, str, bytes):
            continue
        if isinstance(item, (torch.Tensor, torch.Size, torch.dtype, torch.device)):
            continue
        if depth > 4 * MAX_DEPTH:
            return f"{_where(path)} (nested more than {4 * MAX_DEPTH} levels)"
        if type(item) in (list, tuple, set):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in reversed(list(enumerate(item))))
        elif type(item) in (dict, collections.OrderedDict):
            for key, v in reversed(list(item.items())):
                if type(key) not in (str, int, float, bool) and key is not None:
                    return f"{_where(path)} (a key of type {type(key).__module__}.{type(key).__name__})"
                stack.append((v, f"{path}.{key}" if path else str(key), depth + 1))
        else:
            return f"{_where(path)} (a {type(item).__module__}.{type(item).__name__}: {_short(item)})"
    return None


# -- reading JSON ------------------------------------------------------------------------------


def _too_deep(value: Any, limit: int) -> bool:
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            if depth >= limit:
                return True
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return False


def _int_or_inf(text: str) -> int | float:
    """JSON integers: beyond int64 they are a number too large to use, read as +-inf (a loss of
    10**400 is not finite for zoo's purposes); 4,300 digits never reach int()."""
    if len(text.lstrip("-")) > 19:
        return -math.inf if text.startswith("-") else math.inf
    value = int(text)
    if abs(value) > MAX_INT:
        return -math.inf if value < 0 else math.inf
    return value


def loads_json(text: str, source: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``text`` (from ``source``, named in errors). Integers beyond int64 read as +-inf,
    ``NaN``/``Infinity`` as floats; nesting deeper than ``max_depth``, and anything that is not
    JSON, is a :class:`ZooError`."""
    try:
        value = json.loads(text, parse_int=_int_or_inf)
    except RecursionError:
        raise ZooError(f"{source} nests lists or objects too deeply; it was not written by zoo") from None
    except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
        raise ZooError(f"{source} is not valid JSON ({first_words(exc)}); was it written by zoo?") from None
    if _too_deep(value, max_depth):
        raise ZooError(f"{source} nests lists or objects more than {max_depth} levels deep; it was not written by zoo")
    return value


def first_words(exc: BaseException, limit: int = 80) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_json_file(
    path: str | os.PathLike, what: str = "", *, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_DEPTH
) -> Any:
    """The JSON value in ``path``; a missing, unreadable, oversized, non-UTF-8, malformed or too
    deeply nested file is a one-line :class:`ZooError` naming it (``what`` says what the file
    is, e.g. "written when the run starts")."""
    p = Path(path)
    suffix = f" ({what})" if what else ""
    try:
        if not p.is_file():
            raise ZooError(f"{p} does not exist or is not a regular file{suffix}")
        if p.stat().st_size > max_bytes:
            raise ZooError(f"{p} is larger than {max_bytes // 2**20} MB; it is not a file zoo wrote")
        raw = p.read_bytes()
    except OSError as exc:
        raise ZooError(f"cannot read {p}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ZooError(f"{p} is not valid JSON (not UTF-8 text); was it written by zoo?") from None
    return loads_json(text, str(p), max_depth=max_depth)


def finite(value: Any) -> float | None:
    """``value`` as a finite float, or None (not a number, a bool, NaN, +-inf, too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
