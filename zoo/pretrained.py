"""The pretrained index: the published weights a recipe names, found and checked.

A recipe's ``pretrained`` table names its weights by the SHA-256 of their ``model.safetensors``,
the Hub repository (``repo``, ``owner/name``) and ``revision`` they are published at, and the
``metrics`` measured on them. :func:`pretrained_folder` finds them: first the exported folder
``<weights root>/<recipe id>`` (the ``weights/`` folder of a zoo source tree, or ``$ZOO_WEIGHTS``),
then the Hub through huggingface_hub's cache; either way the file's SHA-256 must be the index's.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from zoo.errors import ZooError

ENV = "ZOO_WEIGHTS"
_SHA256 = re.compile(r"[0-9a-f]{64}")
KEYS = ("sha256", "repo", "revision", "metrics")


def index_problems(entry: dict[str, Any]) -> list[str]:
    """What is wrong with a recipe's ``pretrained`` table (an empty list when it is usable)."""
    from zoo.hub import check_repo_id, parse_hub_name

    found = [f"unknown key {k!r} (valid: {', '.join(KEYS)})" for k in entry if k not in KEYS]
    if not isinstance(entry.get("sha256"), str) or not _SHA256.fullmatch(entry["sha256"]):
        found.append("sha256 must be the 64 lower-case hex digits of the weights file's SHA-256")
    if "repo" in entry:
        try:
            check_repo_id(entry["repo"])
        except ZooError as exc:
            found.append(str(exc))
    if "revision" in entry:
        if "repo" not in entry:
            found.append("revision is given without repo")
        elif isinstance(entry["revision"], str):
            try:
                parse_hub_name(f"hf://{entry['repo']}@{entry['revision']}")
            except ZooError as exc:
                found.append(str(exc))
        else:
            found.append("revision must be a string")
    if "metrics" in entry and not isinstance(entry["metrics"], dict):
        found.append("metrics must be a table")
    return found


def weights_root() -> Path:
    """Where shipped weights live: ``$ZOO_WEIGHTS``, else the ``weights/`` folder beside the zoo package."""
    given = os.environ.get(ENV, "").strip()
    return Path(given).expanduser() if given else Path(__file__).resolve().parents[1] / "weights"


def with_weights() -> list[str]:
    """Ids of the registered recipes that name published weights."""
    from zoo.plugins import get_registry

    registry = get_registry()
    return [i for i in registry.ids("recipe") if registry.recipe(i).pretrained]


def hub_name(entry: dict[str, Any]) -> str | None:
    """The ``hf://`` name of an index entry's weights, or None when they are not on the Hub."""
    if not entry.get("repo"):
        return None
    return f"hf://{entry['repo']}" + (f"@{entry['revision']}" if entry.get("revision") else "")


def pretrained_folder(recipe) -> Path:
    """The exported folder holding ``recipe``'s published weights, their SHA-256 checked."""
    from zoo.exported import WEIGHTS, is_exported, sha256_of
    from zoo.hub import download

    entry = recipe.pretrained
    if not entry:
        listed = ", ".join(with_weights()) or "none"
        raise ZooError(f"{recipe.id} has no published weights (pretrained index); models with weights: {listed}")
    expected = entry["sha256"]
    local = weights_root() / recipe.id
    name = hub_name(entry)
    if is_exported(local):
        folder = local
    elif name:
        folder = download(name)
    else:
        raise ZooError(
            f"the weights of {recipe.id} are not on the Hub and {local} does not hold them; set {ENV} to the "
            "weights/ folder of a zoo source tree"
        )
    digest = sha256_of(folder / WEIGHTS)
    if digest != expected:
        raise ZooError(
            f"{folder / WEIGHTS} is not the file the pretrained index of {recipe.id} names (sha256 "
            f"{digest[:12]}... instead of {expected[:12]}...); restore it, or export the index's weights again"
        )
    return folder


def load_pretrained(model, recipe) -> None:
    """Load ``recipe``'s published weights into ``model`` (built from that recipe)."""
    from zoo.checkpoint import load_weights
    from zoo.exported import WEIGHTS, read_weights

    folder = pretrained_folder(recipe)
    load_weights(
        model,
        read_weights(folder),
        f"the published weights {folder / WEIGHTS}",
        described=f"zoo.create({recipe.id!r}) builds",
        remedy="give no overrides that change the model, or export the weights again",
    )


def describe(recipe) -> str:
    """One line for ``zoo info``: where the weights are, their SHA-256 and what was measured on them."""
    entry = recipe.pretrained
    local = weights_root() / recipe.id
    where = [f"zoo.create({recipe.id!r}, pretrained=True)"]
    if (local / "config.json").is_file():
        where.append(str(local) if os.environ.get(ENV, "").strip() else f"weights/{recipe.id}")
    if hub_name(entry):
        where.append(hub_name(entry))
    m = entry.get("metrics") or {}
    measured = ""
    if m.get("test_nll_iw") is not None:
        measured = (
            f"; test IW-NLL {m['test_nll_iw']} (K={m.get('iw_samples')}, {m.get('n_images')} images, "
            f"seed {m.get('seed', 0)}) after {m.get('epochs', '?')} epochs"
        )
    return f"{', '.join(where)}; sha256 {entry['sha256'][:12]}...{measured}"
