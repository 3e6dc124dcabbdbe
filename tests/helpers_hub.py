"""A local Hugging Face cache holding an exported folder, laid out as ``huggingface_hub`` lays out
what it downloads (``models--OWNER--NAME/{blobs,snapshots/COMMIT,refs/BRANCH}``), so tests load
``hf://`` names through huggingface_hub itself with ``HF_HUB_OFFLINE=1`` and no network."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_cache(
    root: Path, folder: Path, repo_id: str = "owner/name", commit: str = COMMIT, branch: str = "main"
) -> Path:
    """Put the files of ``folder`` into the cache ``root`` as ``repo_id`` at ``commit`` (``branch``
    pointing at it); returns ``root``."""
    owner, name = repo_id.split("/")
    repo = root / f"models--{owner}--{name}"
    blobs, snapshot, refs = repo / "blobs", repo / "snapshots" / commit, repo / "refs"
    for d in (blobs, snapshot, refs):
        d.mkdir(parents=True, exist_ok=True)
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        data = path.read_bytes()
        blob = blobs / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / path.name
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, snapshot))
    (refs / branch).write_text(commit)
    return root


def offline_hub(monkeypatch, root: Path) -> None:
    """Point huggingface_hub at the cache ``root`` and forbid the network (``HF_HUB_OFFLINE=1``)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
