"""One object owns a run directory: it claims it, locks it, writes into it and replaces it.

Every rule about a run directory lives here, not in the trainer:

* **One writer at a time.** A process that trains into a run (a fresh start, ``--overwrite`` or
  ``--resume``) holds an exclusive ``fcntl.flock`` on ``RUN/.zoo.lock`` from before it looks at the
  folder until it ends. A second process is refused with a one-line error naming the holder's
  pid. The kernel drops the lock when its holder dies, however it dies, so a crashed run never
  blocks the next one. The lock file is removed by its holder when it is done.
* **zoo's files only.** zoo writes ``config.json``, ``metrics.jsonl``, ``checkpoints/last.pt``,
  ``checkpoints/best.pt``, ``samples/epoch-NNN.png`` and ``reconstructions/epoch-NNN.png``,
  ``tensorboard/events.out.tfevents.*`` when tensorboard is installed (and, for a moment,
  dot-file temporaries beside them). ``--overwrite`` deletes those names and
  nothing else, and only regular files: anything else at one of those names (a folder, a
  symbolic link, a fifo) is refused before anything is deleted, as is a ``config.json`` that
  zoo did not write.
* **Validate, then delete.** Claiming checks everything; the old run's files are deleted by
  :meth:`RunDir.begin`, which the trainer calls only once the model is built and the data is
  loaded, so a mistake (bad data, say) leaves the old run as it was.
* **Unique default names.** ``runs/MODEL-YYYYMMDD-HHMMSS`` is created with an exclusive
  ``mkdir``; if another process took that name in the same second, ``-2``, ``-3``... follow.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import time
from pathlib import Path
from typing import Any

from zoo.checkpoint import atomic_write
from zoo.errors import ZooError

LOCK_NAME = ".zoo.lock"
SUBDIRS = ("checkpoints", "samples", "reconstructions")
#: Written only when the optional tensorboard package is installed (zoo/tracking.py).
TENSORBOARD = "tensorboard"
_EVENTS = re.compile(r"events\.out\.tfevents\.[\w.-]+")
_TOP_FILES = ("config.json", "metrics.jsonl")
_IMAGE = re.compile(r"epoch-\d{3,}\.png")
_CHECKPOINT = re.compile(r"(last|best|epoch-\d{4,})\.pt")
#: atomic_write's temporaries: ``.NAME.RANDOM.tmp`` beside ``NAME``
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[A-Za-z0-9_]+\.tmp")


def kept_checkpoint_name(epoch: int) -> str:
    """The file ``--keep-every`` keeps for ``epoch`` (``epoch-0010.pt``): sorts by name in epoch order."""
    return f"epoch-{epoch:04d}.pt"


def _is_zoo_name(folder: str, name: str) -> bool:
    if folder == "":
        return name in _TOP_FILES
    if folder == "checkpoints":
        return bool(_CHECKPOINT.fullmatch(name))
    if folder == TENSORBOARD:
        return bool(_EVENTS.fullmatch(name))
    return folder in ("samples", "reconstructions") and bool(_IMAGE.fullmatch(name))


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a fifo"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_output_file(path: str | os.PathLike, what: str = "--out") -> Path:
    """``path`` may be written over: it does not exist yet, or it is a regular file (not a symlink)."""
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise ZooError(f"cannot write {what} {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise ZooError(
            f"{what} {path} exists and is {_kind(mode)}, not a regular file; zoo only replaces "
            "regular files, so choose another path"
        )
    return path


def unique_run_dir(model_id: str, parent: str | os.PathLike = "runs") -> Path:
    """Create and return a new folder ``parent/MODEL-YYYYMMDD-HHMMSS[-N]`` no other process holds."""
    base = Path(parent) / f"{model_id}-{time.strftime('%Y%m%d-%H%M%S')}"
    for n in range(1, 10_000):
        candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            continue
        except OSError as exc:
            raise ZooError(
                f"cannot create the run directory {candidate}: {exc.strerror or exc}; "
                "choose a writable folder with --out"
            ) from None
    raise ZooError(f"too many runs named {base}-N; choose a folder with --out")


class RunTerminated(KeyboardInterrupt):
    """SIGTERM arrived while this process held a run: it stops as on Ctrl-C, through every
    ``finally`` (the lock is released, temporaries are removed, an empty folder it made goes)."""


def _on_sigterm(signum, frame) -> None:
    raise RunTerminated("terminated by SIGTERM")


class RunDir:
    """A run directory this process writes: see the module docstring for the rules."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None
        self._previous_sigterm: Any = None  # the handler to restore on release (None: none was replaced)
        self._created = False  # this process created the folder (so a failed start may remove it)
        self._overwrite = False
        self._begun = False

    # -- the lock --------------------------------------------------------------------------------
    @property
    def locked(self) -> bool:
        return self._lock_fd is not None

    def lock(self) -> None:
        """Take the run's exclusive lock, or fail with a one-line error if another process holds it."""
        import fcntl

        path = self.path / LOCK_NAME
        while True:
            try:
                mode = os.lstat(path).st_mode
                if not stat.S_ISREG(mode):
                    raise ZooError(f"{path} is {_kind(mode)}, not zoo's lock file; move it away")
            except FileNotFoundError:
                pass
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise ZooError(
                    f"cannot write to --out {self.path}: {exc.strerror or exc}; choose a writable folder"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = ""
                try:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                except OSError:
                    pass
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                    who = f" (pid {holder})" if holder.isdigit() else ""
                    raise ZooError(
                        f"run directory {self.path} is in use by another zoo process{who}; wait for it to end, "
                        "or choose another --out"
                    ) from None
                raise ZooError(f"cannot lock run directory {self.path}: {exc.strerror or exc}") from None
            # The holder we waited for may have removed the file and another process made a new one:
            # our lock is only worth something on the file that is at the path now.
            try:
                same = os.lstat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self._lock_fd = fd
            self._catch_sigterm()
            return

    def _catch_sigterm(self) -> None:
        """While the lock is held, SIGTERM (a scheduler's or ``kill``'s polite stop) raises
        :class:`RunTerminated` instead of ending the process at once, so the run is left as by
        Ctrl-C: unlocked, resumable. Only the main thread can set a handler; elsewhere nothing changes."""
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        try:
            previous = signal.getsignal(signal.SIGTERM)
            if previous is not _on_sigterm:
                signal.signal(signal.SIGTERM, _on_sigterm)
                self._previous_sigterm = previous
        except (ValueError, OSError):  # no signals here (an embedded interpreter)
            pass

    def _restore_sigterm(self) -> None:
        import signal
        import threading

        if self._previous_sigterm is None or threading.current_thread() is not threading.main_thread():
            return
        try:
            if signal.getsignal(signal.SIGTERM) is _on_sigterm:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
        except (ValueError, OSError):
            pass
        self._previous_sigterm = None

    def release(self) -> None:
        """Drop the lock (and remove the lock file, and the folder if this process made it and it stayed empty)."""
        if self._lock_fd is None:
            return
        path = self.path / LOCK_NAME
        try:
            if os.lstat(path).st_ino == os.fstat(self._lock_fd).st_ino:
                os.unlink(path)
        except OSError:
            pass
        os.close(self._lock_fd)
        self._lock_fd = None
        self._restore_sigterm()
        if self._created and not self._begun:
            for sub in SUBDIRS:
                try:
                    (self.path / sub).rmdir()
                except OSError:
                    pass
            try:
                self.path.rmdir()
            except OSError:
                pass

    def __del__(self) -> None:  # a Trainer that is never fitted still lets go of the folder
        try:
            self.release()
        except Exception:  # noqa: BLE001 - at interpreter exit anything may be gone already
            pass

    # -- what is in it -----------------------------------------------------------------------------
    def _entries(self) -> list[tuple[Path, int]]:
        """zoo's names in the folder (any kind of entry), with their ``lstat`` modes; temporaries too."""
        found = []
        for folder in ("", *SUBDIRS, TENSORBOARD):
            where = self.path / folder if folder else self.path
            if folder:
                try:
                    mode = os.stat(where).st_mode  # a symlink to a folder is allowed for a subfolder
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise ZooError(f"cannot read {where}: {exc.strerror or exc}") from None
                if not stat.S_ISDIR(mode):
                    raise ZooError(
                        f"{where} is {_kind(mode)}, but zoo keeps its {folder} there; move it away "
                        "or choose another --out"
                    )
            try:
                names = os.listdir(where)
            except OSError as exc:
                raise ZooError(f"cannot read {where}: {exc.strerror or exc}") from None
            for name in names:
                temp = _TEMPORARY.fullmatch(name)
                if _is_zoo_name(folder, name) or (temp and _is_zoo_name(folder, temp.group("name"))):
                    found.append((where / name, os.lstat(where / name).st_mode))
        return found

    def _check_entries(self) -> list[Path]:
        """zoo's regular files here; anything else at one of zoo's names is refused."""
        files = []
        for path, mode in self._entries():
            if _TEMPORARY.fullmatch(path.name):
                if stat.S_ISREG(mode):
                    files.append(path)
                continue
            if not stat.S_ISREG(mode):
                raise ZooError(
                    f"{path} is {_kind(mode)}, not a file zoo wrote; move it away or choose another "
                    "--out (nothing was deleted)"
                )
            files.append(path)
        config = self.path / "config.json"
        if config in files and not _is_zoo_config(config):
            raise ZooError(f"{config} was not written by zoo; choose another --out (nothing was deleted)")
        return files

    def run_files(self) -> list[Path]:
        """The files that make this folder a run: checkpoints, metric rows, images (not bare leftovers
        of a start that failed before its first checkpoint)."""
        found = []
        for path in self._check_entries():
            if _TEMPORARY.fullmatch(path.name) or path.name == "config.json" or path.parent.name == TENSORBOARD:
                continue  # event files are logs: a start that failed early may leave one
            if path.name == "metrics.jsonl":
                try:
                    if not path.read_text(errors="replace").strip():
                        continue
                except OSError:
                    pass
            found.append(path)
        return found

    # -- a fresh start -----------------------------------------------------------------------------
    def claim(self, *, overwrite: bool = False, created: bool = False) -> None:
        """Make, lock and check the folder for a fresh run; nothing is deleted yet (see :meth:`begin`)."""
        self._created = created
        try:
            mode = os.stat(self.path).st_mode
        except FileNotFoundError:
            mode = None
        except OSError as exc:
            raise ZooError(
                f"cannot write to --out {self.path}: {exc.strerror or exc}; choose a writable folder"
            ) from None
        if mode is not None and not stat.S_ISDIR(mode):
            what = "a file" if stat.S_ISREG(mode) else _kind(mode)
            raise ZooError(f"--out {self.path} is {what}; choose a folder for the run")
        if mode is None:
            try:
                self.path.mkdir(parents=True)
                self._created = True
            except FileExistsError:
                pass
            except OSError as exc:
                raise ZooError(
                    f"cannot write to --out {self.path}: {exc.strerror or exc}; choose a writable folder"
                ) from None
        self.lock()
        try:
            held = self.run_files()
            if held and not overwrite:
                shown = ", ".join(str(p.relative_to(self.path)) for p in held[:3])
                raise ZooError(
                    f"run directory {self.path} already holds a run ({shown}); continue it with "
                    f"'zoo train --resume {self.path}', choose another --out, or pass --overwrite to replace it"
                )
            for sub in SUBDIRS:
                (self.path / sub).mkdir(exist_ok=True)
        except ZooError:
            self.release()
            raise
        except OSError as exc:
            self.release()
            raise ZooError(
                f"cannot write to --out {self.path}: {exc.strerror or exc}; choose a writable folder"
            ) from None
        self._overwrite = overwrite

    def begin(self, config: dict[str, Any]) -> None:
        """Everything is validated: delete the old run's files (``--overwrite``) and write ``config.json``."""
        assert self.locked, "claim() first"
        try:
            old = self._check_entries()  # again: the user may have changed the folder since claim()
            # Checkpoints last: a kill half-way leaves a folder that still needs --overwrite.
            for path in sorted(old, key=lambda p: p.parent.name == "checkpoints"):
                if path.name == "config.json":
                    continue  # replaced atomically below
                path.unlink(missing_ok=True)
            self.write_config(config)
            atomic_write(self.path / "metrics.jsonl", lambda f: None)
        except OSError as exc:
            raise ZooError(
                f"cannot write to --out {self.path}: {exc.strerror or exc}; choose a writable folder"
            ) from None
        self._begun = True

    # -- a resume ----------------------------------------------------------------------------------
    def claim_for_resume(self) -> None:
        """Lock an existing run to continue it."""
        try:
            mode = os.stat(self.path).st_mode
        except OSError:
            mode = None
        if mode is None or not stat.S_ISDIR(mode):
            raise ZooError(f"{self.path} is not a run directory; give the folder of a run (runs/...)")
        self.lock()
        self._begun = True
        try:
            for path in self._check_entries():
                if _TEMPORARY.fullmatch(path.name):
                    # Left by a process killed mid-write (the lock says none is writing now): nothing reads them.
                    path.unlink(missing_ok=True)
        except ZooError as exc:
            self.release()
            text = str(exc)
            if "choose another --out" in text:  # the advice for a new run; a resume keeps its folder
                raise ZooError(
                    text.replace("choose another --out", "restore the run's own files before resuming")
                ) from None
            raise
        except OSError as exc:
            self.release()
            raise ZooError(f"cannot write to the run directory {self.path}: {exc.strerror or exc}") from None

    # -- writing ---------------------------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        text = json.dumps(config, indent=2)
        _write(self.path / "config.json", text.encode())

    def rewrite_metrics(self, rows: list[dict[str, Any]]) -> None:
        _write(self.path / "metrics.jsonl", "".join(_json_line(row) for row in rows).encode())

    def append_metrics(self, row: dict[str, Any]) -> None:
        path = self.path / "metrics.jsonl"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise ZooError(f"{path} is not a regular file; move it away")
                os.write(fd, _json_line(row).encode())
            finally:
                os.close(fd)
        except OSError as exc:
            raise ZooError(
                f"could not write {path}: {exc.strerror or exc}; free some space or choose another "
                "--out (the last checkpoint is intact)"
            ) from None


def _json_line(row: dict[str, Any]) -> str:
    return json.dumps(row) + "\n"


def _write(path: Path, data: bytes) -> None:
    try:
        atomic_write(path, lambda f: f.write(data))
    except OSError as exc:
        raise ZooError(
            f"could not write {path}: {exc.strerror or exc}; free some space or choose another --out "
            "(the previous version is intact)"
        ) from None


def _is_zoo_config(path: Path) -> bool:
    from zoo.plain_data import read_json_file

    try:
        data = read_json_file(path, "config.json", max_bytes=10_000_000)
    except ZooError:  # unreadable, damaged, too large or too deep: not a config zoo wrote
        return False
    return isinstance(data, dict) and "recipe" in data and "versions" in data
