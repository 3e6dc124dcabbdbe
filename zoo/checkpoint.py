"""Checkpoints: self-describing, written atomically, loaded without unpickling arbitrary objects.

A checkpoint is a ``torch.save``'d dict of plain data (tensors, numbers, strings, lists, dicts):
``format``, ``spec`` (what :func:`zoo.composition.from_spec` needs to rebuild the model:
component ids, options, the plugins that provide them, latent size, data shape, recipe),
``model`` (state dict), and for training checkpoints ``optimizer``, ``epoch``, ``rng`` and
``history``. It is always read with ``torch.load(weights_only=True)``, which refuses pickled code.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from zoo.errors import ZooError, first_line

FORMAT = "zoo-checkpoint-v1"


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it over ``path``.

    A crash at any moment leaves either the old file or the new one, never a half-written one.
    """
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        # Renaming over a symlink, a device or a fifo would replace it (as root, /dev/null too).
        raise ZooError(
            f"{path} exists and is not a regular file; zoo only replaces regular files it wrote, "
            "so move it away or choose another path"
        )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); give the result the mode a plain open() would.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plain data and tensors only) to ``path`` atomically."""
    import torch

    from zoo.plain_data import first_unstorable

    payload = {"format": FORMAT, **payload}
    # Verified before anything is written: a checkpoint that load_checkpoint (weights_only=True)
    # would refuse never replaces a good one. Only the plain part is walked; tensors are leaves.
    bad = first_unstorable(payload)
    if bad is not None:
        raise ZooError(
            f"cannot write checkpoint {path}: it would hold {bad}, which zoo could not load back "
            "(checkpoints hold tensors and plain data only); the previous checkpoint is intact"
        )
    try:
        atomic_write(path, lambda f: torch.save(payload, f))
    except OSError as exc:
        raise ZooError(
            f"could not write checkpoint {path}: {exc.strerror or exc}; free some space or choose another --out "
            "(the previous checkpoint is intact)"
        ) from None
    except RuntimeError as exc:
        # torch's zip writer reports a failed write (a full disk, a file size limit) as a RuntimeError
        # ("PytorchStreamWriter failed writing file ...", "unexpected pos ...").
        if "PytorchStreamWriter" not in str(exc) and "unexpected pos" not in str(exc):
            raise
        raise ZooError(
            f"could not write checkpoint {path}: the write failed (disk full or file too large: "
            f"{first_line(exc)}); free some space or choose another --out (the previous checkpoint is intact)"
        ) from None


def resolve_checkpoint_path(path: str | os.PathLike) -> Path:
    """A checkpoint file, the ``checkpoints/last.pt`` of a run directory, an exported folder
    (:mod:`zoo.exported`), or the cached folder of a Hub model ``hf://owner/name[@revision]``."""
    from zoo.exported import is_exported
    from zoo.hub import download, is_hub_name

    if is_hub_name(path):
        folder = download(path)
        if not is_exported(folder):
            raise ZooError(
                f"{path} holds no zoo model (config.json and model.safetensors); give a model exported by zoo"
            )
        return folder
    p = Path(path)
    if is_exported(p):
        return p
    if p.is_dir():
        candidate = p / "checkpoints" / "last.pt"
        if not candidate.is_file():
            raise ZooError(
                f"{p} is a folder without checkpoints/last.pt or an exported model; give a run directory, "
                "a .pt file or a folder written by 'zoo export'"
            )
        return candidate
    if not p.exists():
        raise ZooError(f"checkpoint {p} does not exist; give a run directory (runs/...) or a .pt file")
    if not p.is_file():  # a fifo would block the read forever, a device (/dev/zero) would never end
        raise ZooError(f"checkpoint {p} is not a regular file; give a run directory (runs/...) or a .pt file")
    return p


def _unpickling_reason(exc: Exception) -> str:
    """The line of torch's weights_only refusal that names the offending object."""
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(boilerplate)] or lines or [type(exc).__name__]
    return useful[0][:200]


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``); any malformed file is a :class:`ZooError`."""
    import pickle
    import zipfile

    import torch

    p = resolve_checkpoint_path(path)
    if p.is_dir():  # an exported folder (resolve_checkpoint_path returns a folder for nothing else)
        from zoo.exported import read_exported

        return read_exported(p)
    try:
        payload = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if not zipfile.is_zipfile(p):  # torch.save writes zip files; anything else is damaged or foreign
            raise ZooError(
                f"{p} is not a readable checkpoint (truncated or not a torch file); give a checkpoint written by zoo"
            ) from None
        raise ZooError(
            f"{p} was refused: it holds objects other than tensors and plain data, which could run code "
            f"when loaded ({_unpickling_reason(exc)}); only load checkpoints written by zoo"
        ) from None
    except MemoryError:
        raise ZooError(f"not enough memory to load {p}; close other programs or load it on a larger machine") from None
    except Exception as exc:  # noqa: BLE001 - any damaged or foreign file: IndexError, struct.error, KeyError...
        raise ZooError(
            f"{p} is not a readable checkpoint (truncated or not a torch file: {type(exc).__name__}: {first_line(exc)})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ZooError(f"{p} is not a zoo checkpoint (no '{FORMAT}' marker)")
    problems = _shape_problems(payload)
    if problems:
        raise ZooError(f"{p} is not a valid zoo checkpoint: {'; '.join(problems)}; give a checkpoint written by zoo")
    return payload


#: Keys of a training checkpoint (``last.pt``, ``best.pt``) and the types they must have.
TRAINING_KEYS = {"optimizer": dict, "epoch": int, "rng": list, "history": list, "config": dict}


def _shape_problems(payload: dict[str, Any]) -> list[str]:
    """What is missing or of the wrong type in a loaded checkpoint (the model's own shapes are
    checked when its weights are loaded)."""
    import torch

    found = []
    if not isinstance(payload.get("spec"), dict):
        found.append("no model description ('spec')")
    state = payload.get("model")
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        found.append("no model weights ('model' must map names to tensors)")
    return found


def training_problems(payload: dict[str, Any]) -> list[str]:
    """What a checkpoint lacks to continue training from it."""
    found = []
    for key, kind in TRAINING_KEYS.items():
        if not isinstance(payload.get(key), kind) or (kind is int and isinstance(payload.get(key), bool)):
            found.append(f"'{key}' missing or not a {kind.__name__}")
    config = payload.get("config")
    if isinstance(config, dict):
        for key in ("recipe", "settings"):
            if not isinstance(config.get(key), dict):
                found.append(f"'config.{key}' missing")
    if isinstance(payload.get("rng"), list) and not all(isinstance(s, dict) for s in payload["rng"]):
        found.append("'rng' must be a list of per-process states")
    return found


def load(path: str | os.PathLike, device: Any = "cpu"):
    """Rebuild a trained model from a checkpoint file, a run directory, an exported folder or a Hub
    model (``hf://owner/name[@revision]``, through huggingface_hub's cache), in eval mode.

    The checkpoint (or the export's config.json) alone is enough: it names the components and the
    plugins that provide them.
    A ``path`` that is not a path or an unusable ``device`` is a one-line error, as on the command line.
    """
    from zoo.devices import resolve_device
    from zoo.errors import ZooTypeError

    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise ZooTypeError(f"zoo.load takes a run directory or a checkpoint file's path, got {path!r}")
    device = resolve_device(device)
    source = resolve_checkpoint_path(path)  # once: a Hub name is looked up (or downloaded) here
    return model_from_payload(load_checkpoint(source), source=source).to(device).eval()


def model_from_payload(payload: dict[str, Any], source: str | os.PathLike | None = None):
    """The model a loaded checkpoint describes, with its trained weights (on the CPU)."""
    from zoo.composition import from_spec

    try:
        model = from_spec(payload["spec"], source)
    except ZooError:
        raise
    except Exception as exc:  # noqa: BLE001 - a spec from a damaged or foreign file, e.g. a negative size
        where = f"{source} describes" if source else "the checkpoint describes"
        raise ZooError(
            f"{where} a model zoo cannot build ({type(exc).__name__}: {first_line(exc)}); "
            "give a checkpoint written by zoo"
        ) from None
    if "export" in payload:
        from zoo.exported import WEIGHTS

        what = f"the weights in {Path(source) / WEIGHTS}" if source else "the exported weights"
        load_weights(
            model, payload["model"], what, described="its config.json describes", remedy="export the model again"
        )
    else:
        load_weights(model, payload["model"], f"the weights in {source}" if source else "the checkpoint's weights")
    return model


def load_weights(
    module,
    state: dict[str, Any],
    what: str,
    *,
    described: str = "the checkpoint describes",
    remedy: str = "give a checkpoint written by zoo for this model",
) -> None:
    """``module.load_state_dict(state)``; a mismatch is a ZooError naming the first differing tensor."""
    from zoo.exported import first_difference

    problem = first_difference(module.state_dict(), state, "the file") if isinstance(state, dict) else None
    try:
        if problem is None:
            module.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        problem = " ".join(str(exc).split())[:300]
    if problem is not None:
        raise ZooError(f"{what} do not fit the model {described} ({problem}); {remedy}") from None
