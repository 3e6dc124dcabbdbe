"""Exported models: a folder in the Hugging Face Hub's layout, read back as a checkpoint's payload.

An exported folder holds ``model.safetensors`` (the weights, never a pickle), ``config.json`` (what
rebuilds the model: its spec, the recipe, the plugins and versions that built it, the data set and
its preprocessing, the training and the metrics) and ``README.md`` (the model card,
:mod:`zoo.model_card`), with the images the card shows. :func:`read_exported` turns such a folder
into the payload :func:`zoo.checkpoint.model_from_payload` builds a model from, after checking
that the weights file is whole and holds exactly the tensors the configured model has.
Writing one from a run is :mod:`zoo.export`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from zoo.errors import ZooError, first_line

FORMAT = "zoo-export-v1"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"
CURVE = "learning-curve.png"
SAMPLES = "samples.png"
#: Every file an export writes; ``--overwrite`` replaces these and keeps anything else in the folder.
FILES = (WEIGHTS, CONFIG, CARD, CURVE, SAMPLES)
#: The largest config.json read back (a config is a few kilobytes).
MAX_CONFIG_BYTES = 5_000_000


def is_exported(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder with an export's ``config.json`` and ``model.safetensors``."""
    p = Path(path)
    return p.is_dir() and (p / CONFIG).is_file() and (p / WEIGHTS).exists()


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, in hex (what the pretrained index records for a weights file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """An export's ``config.json``, checked to be one zoo wrote."""
    from zoo.plain_data import read_json_file

    path = Path(folder) / CONFIG
    config = read_json_file(path, CONFIG, max_bytes=MAX_CONFIG_BYTES)
    if not isinstance(config, dict) or config.get("format") != FORMAT or not isinstance(config.get("spec"), dict):
        raise ZooError(
            f"{path} is not a zoo export's config (no '{FORMAT}' format and model spec); give a folder written by 'zoo export'"
        )
    return config


def read_weights(folder: str | os.PathLike) -> dict[str, Any]:
    """The tensors of an export's ``model.safetensors`` (read with safetensors: no code can run)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS
    if not path.is_file():
        raise ZooError(f"{path} is missing or not a regular file; give a folder written by 'zoo export'")
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ZooError(
            f"{path} is not a readable safetensors file (truncated or damaged: {first_line(exc)}); "
            "export the model again or download it again"
        ) from None


def read_exported(folder: str | os.PathLike) -> dict[str, Any]:
    """The payload of an exported folder: ``spec``, ``model`` (its tensors), ``epoch`` and ``config``,
    the shape :func:`zoo.checkpoint.load_checkpoint` returns."""
    from zoo.spec import spec_problems

    config = read_config(folder)
    problems = spec_problems(config["spec"])
    if problems:
        raise ZooError(f"{Path(folder) / CONFIG}: the model description is damaged ({'; '.join(problems)})")
    return {
        "spec": config["spec"],
        "model": read_weights(folder),
        "epoch": (config.get("training") or {}).get("epochs"),
        "config": {"recipe": config.get("recipe"), "settings": {}},
        "export": config,
    }


def first_difference(expected: dict[str, Any], given: dict[str, Any], what: str) -> str | None:
    """The first tensor, in the model's order, where ``given`` (a file's tensors) differs from
    ``expected`` (the model's state dict) by presence or shape, as a sentence; ``None`` when they fit."""
    for name, tensor in expected.items():
        if name not in given:
            return f"tensor {name!r} of the model is missing from {what}"
        shapes = getattr(given[name], "shape", None), getattr(tensor, "shape", None)
        if None not in shapes and tuple(shapes[0]) != tuple(shapes[1]):  # (extra state need not be a tensor)
            return (
                f"tensor {name!r} is {list(given[name].shape)} in {what} but the configured model needs "
                f"{list(tensor.shape)}"
            )
    extra = [name for name in given if name not in expected]
    if extra:
        return f"{what} holds tensor {extra[0]!r}, which the configured model does not have"
    return None


def save_weights(state: dict[str, Any], path: str | os.PathLike) -> None:
    """``state`` as a safetensors file at ``path``, written atomically; each tensor is stored on its
    own (tensors that share memory in the model are separate in the file)."""
    import torch
    from safetensors.torch import save

    from zoo.checkpoint import atomic_write

    odd = [name for name, t in state.items() if not isinstance(t, torch.Tensor)]
    if odd:
        raise ZooError(
            f"the model's state {odd[0]!r} is not a tensor, and safetensors stores tensors only; "
            "such a model can be shared as its run's checkpoint"
        )
    tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in state.items()}
    data = save(tensors, metadata={"format": "pt", "zoo": FORMAT})
    atomic_write(path, lambda f: f.write(data))
