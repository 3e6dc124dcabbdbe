"""Recipes written as TOML files: reading one (every mistake a one-line error naming the file and
the key) and writing a recipe back out (``zoo info MODEL --toml``)."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from zoo.errors import ZooError, is_count
from zoo.plain_data import to_plain
from zoo.recipe import (
    MAX_LATENT_SIZE,
    OPTION_KINDS,
    Recipe,
    Training,
    _short,
    _training_settings,
    check_id,
)

_FILE_TOP_KEYS = ("id", "description", "dataset", "latent_size")
_FILE_TABLES = (*OPTION_KINDS, "training", "reference", "pretrained")


def recipe_from_file(path: str | Any) -> Recipe:
    """Read a recipe written as TOML (see ``zoo info MODEL --toml``); every mistake is a
    :class:`ZooError` naming the file and the key, raised before anything is built."""
    from pathlib import Path

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    p = Path(path)
    if not p.exists():
        raise ZooError(f"recipe file {p} does not exist; write one with 'zoo info MODEL --toml > {p.name}'")
    if not p.is_file():
        raise ZooError(f"recipe file {p} is not a regular file")
    if p.stat().st_size > 1_000_000:
        raise ZooError(f"recipe file {p} is larger than 1 MB; a recipe is a few lines of TOML")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ZooError(f"{p}: not a text file; a recipe is TOML (see 'zoo info MODEL --toml')") from None
    except tomllib.TOMLDecodeError as exc:
        raise ZooError(f"{p}: invalid TOML: {exc}") from None
    except RecursionError:
        raise ZooError(f"{p}: invalid TOML: arrays or tables nest too deeply for a recipe") from None
    except ValueError as exc:  # an integer over 4,300 digits, a date out of range
        raise ZooError(f"{p}: invalid TOML: {' '.join(str(exc).split())[:120]}") from None
    except OSError as exc:
        raise ZooError(f"cannot read recipe file {p}: {exc.strerror or exc}") from None
    return recipe_from_mapping(data, source=str(p), default_id=_kebab(p.stem) or "recipe")


def _kebab(text: str) -> str:
    import re

    return "-".join(filter(None, re.split(r"[^a-z0-9]+", text.lower())))


def recipe_from_mapping(data: dict[str, Any], *, source: str = "recipe", default_id: str = "recipe") -> Recipe:
    """A :class:`Recipe` from the nested mapping a recipe file holds; every problem at once."""
    problems: list[str] = []
    unknown = [k for k in data if k not in _FILE_TOP_KEYS and k not in _FILE_TABLES]
    for key in unknown:
        problems.append(f"unknown key {key!r} (valid: {', '.join((*_FILE_TOP_KEYS, *_FILE_TABLES))})")
    fields: dict[str, Any] = {"id": data.get("id", default_id), "description": data.get("description", "")}
    for key, kind in (("id", str), ("description", str), ("dataset", str)):
        if key in data and not isinstance(data[key], kind):
            problems.append(f"{key} must be a string (got {_short(data[key])})")
    if isinstance(fields["id"], str):
        try:
            check_id(fields["id"])  # ids from files are checked like ids from plugins: they name run folders
        except ZooError as exc:
            problems.append(str(exc))
            fields["id"] = default_id
    if "dataset" not in data:
        problems.append("dataset is missing (a data set id, see 'zoo list --kind dataset')")
    else:
        fields["dataset"] = data["dataset"]
    latent = data.get("latent_size")
    if latent is None:
        problems.append("latent_size is missing")
    elif not is_count(latent) or latent > MAX_LATENT_SIZE:
        problems.append(f"latent_size must be a positive integer, at most {MAX_LATENT_SIZE} (got {_short(latent)})")
    else:
        fields["latent_size"] = latent
    for kind in OPTION_KINDS:
        table = data.get(kind)
        if table is None:
            if kind in ("encoder", "decoder"):
                problems.append(f'[{kind}] is missing (a table with id = "..." and its options)')
            continue
        if not isinstance(table, dict):
            problems.append(f'{kind} must be a table ([{kind}] with id = "..."), got {table!r}')
            continue
        component_id = table.get("id")
        if not isinstance(component_id, str) or not component_id:
            problems.append(f"[{kind}] needs id = \"<registered id>\" (see 'zoo list --kind {kind}')")
            continue
        fields[kind] = component_id
        try:
            fields[f"{kind}_options"] = to_plain({k: v for k, v in table.items() if k != "id"}, kind)
        except ZooError as exc:
            problems.append(str(exc))
    fields.setdefault("prior", "standard-normal")
    fields.setdefault("likelihood", "bernoulli")
    training = data.get("training", {})
    if not isinstance(training, dict):
        problems.append(f"training must be a table ([training]), got {training!r}")
        training = {}
    settings = _training_settings(training, problems)
    fields["training"] = Training(**settings)
    problems += [f"training.{p}" for p in fields["training"].problems()]
    for table_name in ("reference", "pretrained"):
        table = data.get(table_name, {})
        if not isinstance(table, dict):
            problems.append(f"{table_name} must be a table ([{table_name}]), got {table!r}")
            continue
        try:
            fields[table_name] = to_plain(dict(table), table_name)
        except ZooError as exc:
            problems.append(str(exc))
    if fields.get("pretrained"):
        from zoo.pretrained import index_problems

        problems += [f"pretrained: {p}" for p in index_problems(fields["pretrained"])]
    if problems:
        raise ZooError(f"{source}: " + "; ".join(problems))
    return Recipe(**fields)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return (
            repr(value)
            if not isinstance(value, float) or math.isfinite(value)
            else ("nan" if value != value else ("inf" if value > 0 else "-inf"))
        )
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise ZooError(f"cannot write {value!r} ({type(value).__name__}) to TOML")


def _toml_key(key: str) -> str:
    import re

    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def recipe_to_toml(recipe: Recipe) -> str:
    """``recipe`` as a recipe file: ``zoo train FILE.toml`` trains it, after any edits."""
    lines = [f"# zoo recipe; train it with: zoo train {recipe.id}.toml", f"id = {_toml_value(recipe.id)}"]
    if recipe.description:
        lines.append(f"description = {_toml_value(recipe.description)}")
    lines += [f"dataset = {_toml_value(recipe.dataset)}", f"latent_size = {recipe.latent_size}"]
    for kind in OPTION_KINDS:
        lines += ["", f"[{kind}]", f"id = {_toml_value(getattr(recipe, kind))}"]
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in getattr(recipe, f"{kind}_options").items()]
    lines += ["", "[training]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in dataclasses.asdict(recipe.training).items()]
    for table_name in ("reference", "pretrained"):
        table = getattr(recipe, table_name)
        if table:
            lines += ["", f"[{table_name}]"]
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"
