"""The Hugging Face Hub: ``hf://owner/name[@revision]`` names resolved to a folder in
``huggingface_hub``'s cache, and ``zoo push``'s upload of an exported folder.

Everything that talks to the Hub goes through ``huggingface_hub`` (the optional extra
``zoo[hub]``): its cache, its offline mode (``HF_HUB_OFFLINE=1``), its token (``hf auth login`` or
``HF_TOKEN``). zoo reads the folders it returns like any exported folder (:mod:`zoo.exported`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from zoo.errors import ZooError, first_line

PREFIX = "hf://"
#: An owner or a repository name: letters, digits, '-', '_', '.'; no '..' or '--', no '.' or '-' at either end.
_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
#: A branch, tag or commit: no '..', no control characters, no leading '/' or '-'.
_REVISION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}")
#: What ``zoo`` downloads of a repository: what rebuilding the model needs, and its card.
DOWNLOADED = ("config.json", "model.safetensors", "README.md")


def is_hub_name(value: Any) -> bool:
    """Whether ``value`` is a string naming a Hub model (``hf://...``)."""
    return isinstance(value, str) and value.startswith(PREFIX)


def check_repo_id(repo_id: Any, where: str = "repository") -> str:
    """``repo_id`` if it is ``owner/name`` with plain parts (no path tricks: '..', '/', '\\', '~')."""
    parts = repo_id.split("/") if isinstance(repo_id, str) else []
    if len(parts) != 2 or not all(_PART.fullmatch(p) for p in parts) or any(".." in p or "--" in p for p in parts):
        raise ZooError(
            f"{where} {repo_id!r} is not a Hub repository id; give owner/name (letters, digits, '-', '_', '.', "
            "without '..', '--' or a leading or trailing '.' or '-')"
        )
    return repo_id


def parse_hub_name(name: str) -> tuple[str, str | None]:
    """``hf://owner/name[@revision]`` as ``(repo_id, revision or None)``."""
    if not is_hub_name(name):
        raise ZooError(f"{name!r} is not a Hub model name; write hf://owner/name or hf://owner/name@revision")
    rest = name[len(PREFIX) :]
    repo_id, sep, revision = rest.partition("@")
    check_repo_id(repo_id, where=f"in {name!r}, the repository")
    if sep and (not _REVISION.fullmatch(revision) or ".." in revision or "//" in revision or revision.endswith("/")):
        raise ZooError(
            f"in {name!r}, the revision {revision!r} is not a branch, tag or commit name; "
            "write hf://owner/name@main, @v1.0 or @<commit hash>"
        )
    return repo_id, (revision if sep else None)


def require_hub(what: str = "hf:// names"):
    """The ``huggingface_hub`` module, or a one-line error saying how to install it."""
    try:
        import huggingface_hub
    except ImportError:
        raise ZooError(f"{what}: the huggingface_hub package is not installed; pip install 'zoo[hub]'") from None
    return huggingface_hub


def offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is on, read now (huggingface_hub reads it once, when imported)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return bool(constants.HF_HUB_OFFLINE) or value in ("1", "true", "yes", "on")


def download(name: str) -> Path:
    """The folder of ``hf://owner/name[@revision]`` in huggingface_hub's cache, downloaded when the
    cache lacks it and the Hub can be reached (offline, ``HF_HUB_OFFLINE=1``, only the cache is read)."""
    import zoo

    repo_id, revision = parse_hub_name(name)
    hub = require_hub()
    from huggingface_hub import errors

    try:
        folder = hub.snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=list(DOWNLOADED),
            cache_dir=os.environ.get("HF_HUB_CACHE") or None,
            local_files_only=offline(),
            library_name="zoo",
            library_version=zoo.__version__,
        )
    except errors.HFValidationError as exc:
        raise ZooError(
            f"{name!r} is not a valid Hub name ({first_line(exc)}); write hf://owner/name[@revision]"
        ) from None
    except errors.RevisionNotFoundError:
        raise ZooError(
            f"{name}: the repository has no revision {revision!r}; give an existing branch, tag or commit"
        ) from None
    except errors.RepositoryNotFoundError:
        raise ZooError(
            f"{name}: no such model repository on the Hub (or it is private or gated: log in with 'hf auth login')"
        ) from None
    except getattr(errors, "IncompleteSnapshotError", ()):  # huggingface_hub 1.x and later
        raise ZooError(
            f"{name}: the Hugging Face cache holds only part of it and the Hub cannot be reached; connect to "
            "the network once to complete the download"
        ) from None
    except errors.LocalEntryNotFoundError:
        at = f" at revision {revision!r}" if revision else ""
        raise ZooError(
            f"{name}: {repo_id}{at} is not in the Hugging Face cache and the Hub cannot be reached "
            "(offline, or HF_HUB_OFFLINE=1); connect to the network once to download it"
        ) from None
    except errors.HfHubHTTPError as exc:
        raise ZooError(f"{name}: the Hub refused the download ({first_line(exc)})") from None
    except OSError as exc:
        raise ZooError(f"{name}: could not download it ({exc.strerror or first_line(exc)})") from None
    return Path(folder)


def default_name(name: str) -> str:
    """A file-name-safe name for a Hub model (``owner--name[--revision]``), for default output folders."""
    repo_id, revision = parse_hub_name(name)
    text = repo_id.replace("/", "--") + (f"--{revision}" if revision else "")
    return re.sub(r"[^A-Za-z0-9._-]", "-", text)


def push(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    message: str | None = None,
) -> str:
    """Upload an exported ``folder``'s files (those :data:`zoo.exported.FILES` names, nothing else) to
    the Hub model repository ``repo_id`` with the user's token; creates the repository if needed.
    Returns the commit's URL."""
    from zoo.exported import FILES, is_exported

    check_repo_id(repo_id)
    if revision is not None:
        parse_hub_name(f"{PREFIX}{repo_id}@{revision}")
    folder = Path(folder)
    if not is_exported(folder):
        raise ZooError(
            f"{folder} is not an exported model (config.json and model.safetensors); run 'zoo export RUN DIR' first"
        )
    hub = require_hub("zoo push")
    from huggingface_hub import errors

    if offline():
        raise ZooError("cannot push while HF_HUB_OFFLINE is set; unset it and connect to the network")
    if hub.get_token() is None:
        raise ZooError("no Hugging Face token: log in with 'hf auth login' or set HF_TOKEN, then push again")
    files = [name for name in FILES if (folder / name).is_file()]
    api = hub.HfApi(library_name="zoo")
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            repo_type="model",
            revision=revision,
            allow_patterns=files,
            commit_message=message or f"Upload {folder.name} with zoo",
        )
    except errors.HfHubHTTPError as exc:
        raise ZooError(
            f"the Hub refused the upload to {repo_id} ({first_line(exc)}); check the token's write access"
        ) from None
    except OSError as exc:
        raise ZooError(
            f"could not upload to {repo_id} ({exc.strerror or first_line(exc)}); check the network"
        ) from None
    return str(getattr(info, "commit_url", info))
