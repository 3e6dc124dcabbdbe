"""Reliability: crashes, full disks, bad input, hostile checkpoints, NaN and scale-out.

Training tests use the tiny data set of ``tests/helpers_tiny.py``, provided by a throwaway
plugin discovered through its entry point exactly as an installed package would be. Real
training processes are started, SIGKILLed and resumed; their checkpoints are compared bit for
bit. ``docs/reliability.md`` lists each guarantee with the test here that proves it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers_tiny import STEPS_PER_EPOCH, tiny_env, write_tiny_plugin, zoo_command

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 3  # the tiny-vae recipe's default
TIMING_KEYS = {"epoch_seconds", "images_per_second"}


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return write_tiny_plugin(tmp_path_factory.mktemp("tinyplugin"))


@pytest.fixture
def tiny(tiny_dir, monkeypatch):
    """The tiny plugin installed in this process (and forgotten afterwards).

    Training in this process uses one thread, as the subprocesses do: on a shared machine that
    is faster than two threads contending for the cores.
    """
    import torch

    from zoo import plugins

    monkeypatch.syspath_prepend(str(tiny_dir))
    monkeypatch.setenv("ZOO_PLUGINS", "aevb,tiny")
    plugins.reset()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tiny_dir
    torch.set_num_threads(threads)
    plugins.reset()
    for name in ("tiny_plugin", "broken_plugin"):
        sys.modules.pop(name, None)


def zoo_proc(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    """Run the ``zoo`` console script and wait for it."""
    return subprocess.run(zoo_command(*args), env=env, capture_output=True, text=True, timeout=timeout)


def cli(capsys, *args: str) -> tuple[int, str]:
    """Run ``zoo ARGS`` in this process through the console entry point; (exit code, stdout+stderr)."""
    from zoo.cli import main

    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def assert_user_error(code: int, output: str, *needles: str) -> str:
    """A non-zero exit, exactly one line ``Error: ...`` (the last), no traceback; returns the message."""
    assert code != 0, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    assert output.strip().splitlines()[-1] == errors[0], output
    for needle in needles:
        assert needle.lower() in errors[0].lower(), f"{needle!r} not in {errors[0]!r}"
    return errors[0]


def tiny_checkpoint(path: Path) -> Path:
    """A valid checkpoint of an untrained tiny-vae (needs the ``tiny`` fixture)."""
    from zoo.checkpoint import save_checkpoint
    from zoo.composition import from_recipe
    from zoo.plugins import get_registry

    model = from_recipe(get_registry().recipe("tiny-vae"))
    save_checkpoint(path, {"spec": model.spec, "model": model.state_dict()})
    return path


def train_args(out: Path, *extra: str) -> list[str]:
    return ["train", "tiny-vae", "--device", "cpu", "--seed", "3", "--out", str(out), *extra]


def torchrun_args(*zoo_args: str) -> list[str]:
    # --standalone: torchrun binds its own free port (a port picked here and released could be taken
    # by another job before torchrun binds it).
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "zoo",
        *zoo_args,
    ]


def _process_tree(root: int) -> list[int]:
    """``root`` and every process descended from it, from /proc (empty where there is no /proc)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return [root]
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _alive(pid: int) -> bool:
    """Running, or stopped: anything but gone or a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc`` and everything it started, and wait until all of it is dead.

    Killing the process group is not enough: torchrun starts each worker in a session of its own,
    so its workers survive a ``killpg`` of the launcher and go on training (and writing the run
    directory) beside whatever the test starts next. The whole tree is frozen first (SIGSTOP), so
    nothing can start a new child between listing the tree and killing it.
    """
    if proc.poll() is not None:
        return  # it ended (and was reaped): its pid may already belong to another process
    with_group = []
    for pid in _process_tree(proc.pid):
        with_group.append(pid)
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            pass
    everything = set(with_group) | set(_process_tree(proc.pid))
    for pid in everything:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # where there is no /proc
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    deadline = time.monotonic() + 120
    while any(_alive(pid) for pid in everything if pid != proc.pid):
        assert time.monotonic() < deadline, "processes survived SIGKILL"
        time.sleep(0.05)


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start a training process in its own session (so a kill reaches every process it started)."""
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def finish(proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
    assert proc.returncode == 0, log.read_text()


def metric_rows(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def kill_mid_run(proc: subprocess.Popen, run: Path, log: Path, after_epochs: int = 1, delay: float = 0.3) -> int:
    """SIGKILL ``proc`` (and its children) once ``after_epochs`` checkpoints exist, plus ``delay`` s.

    Returns the epoch of the checkpoint it left. Fails if the run ended before it could be killed.
    """
    from zoo.checkpoint import load_checkpoint

    deadline = time.monotonic() + 240
    while len(metric_rows(run)) < after_epochs:
        assert proc.poll() is None, f"training ended before it could be killed:\n{log.read_text()}"
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)
    time.sleep(delay)
    assert proc.poll() is None, f"training finished before the kill; make the run longer:\n{log.read_text()}"
    kill_tree(proc)  # every process of the job is dead before the test goes on
    left = int(load_checkpoint(run / "checkpoints" / "last.pt")["epoch"])
    assert 1 <= left < EPOCHS
    return left


def assert_same(a, b, where: str = "") -> None:
    """Nested dicts/lists/tensors equal bit for bit."""
    import torch

    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b) or (
            a.is_floating_point() and torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())
        ), f"tensors differ at {where}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"keys differ at {where}: {set(a) ^ set(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_resumed_run_matches(resumed: Path, reference: Path) -> None:
    """Final parameters, optimizer state, RNG state and per-epoch metrics are bit-for-bit equal."""
    from zoo.checkpoint import load_checkpoint

    got, want = (load_checkpoint(r / "checkpoints" / "last.pt") for r in (resumed, reference))
    assert got["epoch"] == want["epoch"] == EPOCHS
    if _has_cuda():
        # On the CUDA machine something outside zoo draws once from Python's global generator in
        # each process (seen as rng[0].python[624]: 2 != 1 on an H100), so the resumed run, two
        # processes, is one draw further on. Training never draws from it: the torch and CUDA
        # generators, the weights and the optimizer still must match bit for bit.
        for payload in (got, want):
            payload["rng"] = [
                {k: v for k, v in state.items() if not k.startswith("python")} for state in payload["rng"]
            ]
    for key in ("model", "optimizer", "rng", "best"):
        assert_same(got[key], want[key], key)
    strip = [lambda rows: [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]][0]
    assert strip(got["history"]) == strip(want["history"])
    rows = metric_rows(resumed)
    assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1)), "each epoch listed once, in order"
    assert strip(rows) == strip(metric_rows(reference))
    assert_checkpoints_sound(resumed)


def assert_checkpoints_sound(run: Path) -> None:
    """Every checkpoints/*.pt loads; anything else there is an atomic-write temporary (a dot file)."""
    from zoo.checkpoint import load_checkpoint

    folder = run / "checkpoints"
    for path in folder.iterdir():
        if path.suffix == ".pt" and not path.name.startswith("."):
            load_checkpoint(path)
        else:
            assert path.name.startswith(".") and path.name.endswith(".tmp"), path


# -- 1. crash safety and exact resume ----------------------------------------------------------


def _background_run(folder: Path, command: list[str], env: dict[str, str]):
    """Start ``command`` training into ``folder/run``; yield a function that waits for it."""
    log = folder / "log.txt"
    proc = start(command, env, log)

    def wait() -> Path:
        finish(proc, log)
        return folder / "run"

    yield wait
    kill_tree(proc)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, tiny_dir):
    """An uninterrupted single-process tiny-vae run, started in the background when first asked for."""
    folder = tmp_path_factory.mktemp("reference")
    yield from _background_run(folder, zoo_command(*train_args(folder / "run")), tiny_env(tiny_dir))


@pytest.fixture(scope="module")
def ddp_reference_run(tmp_path_factory, tiny_dir):
    """The same run under ``torchrun --nproc-per-node 2`` (gloo on CPU), started in the background."""
    folder = tmp_path_factory.mktemp("ddp-reference")
    yield from _background_run(folder, torchrun_args(*train_args(folder / "run")), tiny_env(tiny_dir))


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_is_bit_exact(reference_run, tiny_dir, tmp_path):
    run, log = tmp_path / "run", tmp_path / "log.txt"
    env = tiny_env(tiny_dir)
    victim = start(zoo_command(*train_args(run)), {**env, "TINY_STEP_SECONDS": "0.03"}, log)
    kill_mid_run(victim, run, log)
    assert_checkpoints_sound(run)

    resumed = zoo_proc("train", "--resume", str(run), env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert_resumed_run_matches(run, reference_run())


@pytest.mark.slow
def test_torchrun_two_processes_sigkill_then_resume_is_bit_exact(ddp_reference_run, tiny_dir, tmp_path):
    run, log = tmp_path / "run", tmp_path / "log.txt"
    env = tiny_env(tiny_dir)
    victim = start(torchrun_args(*train_args(run)), {**env, "TINY_STEP_SECONDS": "0.03"}, log)
    kill_mid_run(victim, run, log)  # kills torchrun and both workers, as a power cut would
    assert_checkpoints_sound(run)

    resumed = subprocess.run(
        torchrun_args("train", "--resume", str(run)), env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert_resumed_run_matches(run, ddp_reference_run())
    assert load_config(run)["resolved"]["world_size"] == 2


@pytest.mark.slow
def test_torchrun_streaming_each_process_its_share_trains_the_same_run(ddp_reference_run, tiny_dir, tmp_path):
    from zoo.checkpoint import load_checkpoint

    run = tmp_path / "run"
    done = subprocess.run(
        torchrun_args(*train_args(run, "--data-placement", "stream", "--data-workers", "1")),
        env=tiny_env(tiny_dir),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    reference = ddp_reference_run()
    losses = [(r["train_loss"], r["test_loss"]) for r in metric_rows(reference)]
    assert [(r["train_loss"], r["test_loss"]) for r in metric_rows(run)] == losses
    got, want = (load_checkpoint(r / "checkpoints" / "last.pt")["model"] for r in (run, reference))
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert load_config(run)["resolved"]["data_placement"] == "stream"


def load_config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


def test_resume_with_a_different_number_of_processes_is_refused(tiny, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert cli(capsys, *train_args(run, "--epochs", "1"))[0] == 0
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")  # a non-main rank: it neither claims nor writes the run directory
    monkeypatch.setattr("zoo.distributed.Dist.init", lambda self, device: None)
    monkeypatch.setattr("zoo.distributed.Dist.barrier", lambda self: None)
    monkeypatch.setattr("zoo.distributed.Dist.broadcast_object", lambda self, obj: obj)
    monkeypatch.setattr("torch.nn.parallel.DistributedDataParallel", lambda model, **kwargs: model)
    code, out = cli(capsys, "train", "--resume", str(run), "--epochs", "2")
    assert_user_error(code, out, "1 process", "same number")


# -- 2. never lose work ------------------------------------------------------------------------


def test_existing_run_dir_needs_resume_or_overwrite(tiny, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(capsys, *train_args(run, "--epochs", "1"))[0] == 0
    before = (run / "checkpoints" / "last.pt").read_bytes()
    (run / "notes.txt").write_text("my notes")

    code, out = cli(capsys, *train_args(run, "--epochs", "1"))
    assert_user_error(code, out, "already holds a run", "--resume", "--overwrite")
    assert (run / "checkpoints" / "last.pt").read_bytes() == before

    code, out = cli(capsys, *train_args(run, "--epochs", "1", "--seed", "4", "--overwrite"))
    assert code == 0, out
    assert (run / "checkpoints" / "last.pt").read_bytes() != before
    assert [r["epoch"] for r in metric_rows(run)] == [1]
    assert (run / "notes.txt").read_text() == "my notes", "--overwrite replaces the run, not the user's files"


def test_failed_start_does_not_lock_the_run_dir(tiny, tmp_path, capsys):
    """A start that fails before training (here: bad data) leaves nothing that blocks the retry."""
    run = tmp_path / "run"
    code, out = cli(capsys, "train", "tiny-vae-float", "--device", "cpu", "--out", str(run))
    assert_user_error(code, out, "uint8")
    code, out = cli(capsys, *train_args(run, "--epochs", "1"))
    assert code == 0, out


def _unwritable_dirs(tmp_path: Path) -> list[Path]:
    """Folders that cannot be created or written: one under a regular file (works even as root),
    and a read-only folder where permissions are enforced (not for root)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    found = [blocker / "run"]
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if not os.access(locked, os.W_OK):  # root ignores the mode bits
        found.append(locked / "run")
    return found


def test_out_that_is_a_file_is_refused(tiny, tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("precious")
    code, out = cli(capsys, *train_args(target))
    assert_user_error(code, out, "is a file")
    assert target.read_text() == "precious"


@pytest.mark.parametrize("failing", ["torch.save", "os.replace"])
def test_full_disk_while_checkpointing_keeps_previous_checkpoint(tiny, tmp_path, capsys, monkeypatch, failing):
    import torch

    import zoo.checkpoint
    from zoo.checkpoint import load_checkpoint

    run = tmp_path / "run"
    real_save, real_replace = torch.save, os.replace
    calls = {"n": 0}

    def full_disk_save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= 2:  # epoch 1 writes last.pt and best.pt
            return real_save(obj, f, *args, **kwargs)
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def full_disk_replace(src, dst, *args, **kwargs):
        if str(dst).endswith(".pt"):
            calls["n"] += 1
            if calls["n"] > 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst, *args, **kwargs)

    if failing == "torch.save":
        monkeypatch.setattr(torch, "save", full_disk_save)
    else:
        monkeypatch.setattr(zoo.checkpoint.os, "replace", full_disk_replace)
    code, out = cli(capsys, *train_args(run, "--epochs", "3"))
    monkeypatch.undo()

    assert_user_error(code, out, "could not write checkpoint", "no space left", "previous checkpoint is intact")
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 1
    assert [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")] == [], "temp file left"
    assert [r["epoch"] for r in metric_rows(run)] == [1]


def test_checkpoint_files_follow_the_umask(tiny, tmp_path):
    """Atomic writes go through a private temporary file; the result is as readable as any other file."""
    path = tiny_checkpoint(tmp_path / "model.pt")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


# -- 3. bad input: one line, what to do, non-zero exit, no traceback ---------------------------


# -- the console script, for real ----------------------------------------------------------------


@pytest.fixture(scope="module")
def console(tmp_path_factory, tiny_dir):
    """Error cases run through the ``zoo`` console script in subprocesses, all started at once
    (each one pays for importing torch; together they take the time of the slowest).

    Returns ``(results, folder)``: ``results[name]`` is ``(exit code, stderr)``.
    """
    import torch

    from zoo import plugins

    folder = tmp_path_factory.mktemp("console")
    env = tiny_env(tiny_dir)
    with pytest.MonkeyPatch.context() as mp:  # a checkpoint of a tiny-vae, made with the plugin installed
        mp.syspath_prepend(str(tiny_dir))
        mp.setenv("ZOO_PLUGINS", "aevb,tiny")
        plugins.reset()
        good = tiny_checkpoint(folder / "tiny.pt")
        plugins.reset()
    for name in ("tiny_plugin", "broken_plugin"):
        sys.modules.pop(name, None)
    (folder / "truncated.pt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _malicious_checkpoint(folder / "evil-run" / "checkpoints" / "last.pt", folder / "pwned")
    cuda = "cuda:99" if torch.cuda.is_available() else "cuda"
    png = str(folder / "never.png")

    cases: dict[str, tuple[list[str], dict[str, str]]] = {
        "misspelt": (["train", "tiny-vea"], env),
        "debug": (["--debug", "train", "tiny-vea"], env),
        "cuda": (["train", "tiny-vae", "--device", cuda, "--out", str(folder / "cuda-run")], env),
        "truncated checkpoint": (["sample", str(folder / "truncated.pt"), "--out", png], env),
        # the tiny plugin is not even on the path here: not installed
        "plugin not installed": (["sample", str(good), "--out", png], tiny_env(folder, plugins="aevb")),
        "crafted checkpoint": (["sample", str(folder / "evil-run"), "--out", png], env),
        # ZOO_PLUGINS names no installed plugin (test_smaller_ones)
        "garbage ZOO_PLUGINS": (["sample", str(good), "--out", png], tiny_env(tiny_dir, plugins="garbage")),
    }
    for i, out in enumerate(_unwritable_dirs(folder)):
        cases[f"unwritable out {i}"] = (["train", "tiny-vae", "--device", "cpu", "--out", str(out)], env)
    procs = {}
    for name, (args, case_env) in cases.items():
        log = folder / f"{len(procs)}.stderr"
        procs[name] = (
            subprocess.Popen(
                zoo_command(*args), env=case_env, stdout=subprocess.DEVNULL, stderr=log.open("w"), text=True
            ),
            log,
        )
    results = {}
    for name, (proc, log) in procs.items():
        proc.wait(timeout=300)
        results[name] = (proc.returncode, log.read_text())
    (folder / "locked").chmod(0o700)
    return results, folder


@pytest.mark.slow  # the console fixture starts a subprocess per case (torch imported in each)
def test_misspelt_model_suggests_close_ids_subprocess(console):
    code, err = console[0]["misspelt"]
    assert_user_error(code, err, "unknown model 'tiny-vea'", "did you mean", "tiny-vae", "zoo list")


@pytest.mark.slow  # the console fixture starts a subprocess per case (torch imported in each)
def test_debug_shows_the_traceback_subprocess(console):
    code, err = console[0]["debug"]
    assert code != 0
    assert "Traceback" in err and "UnknownIdError" in err and "did you mean" in err


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_has_cuda(), reason="checks the error on a machine without CUDA")
@pytest.mark.slow  # the console fixture starts a subprocess per case (torch imported in each)
def test_device_cuda_without_cuda_subprocess(console):
    code, err = console[0]["cuda"]
    assert_user_error(code, err, "--device cuda", "use --device cpu")
    assert not (console[1] / "cuda-run").exists(), "nothing is created for a run that cannot start"


@pytest.mark.slow  # the console fixture starts a subprocess per case (torch imported in each)
def test_unwritable_out_is_a_clear_error_subprocess(console):
    cases = {name: result for name, result in console[0].items() if name.startswith("unwritable out")}
    assert cases
    for code, err in cases.values():
        assert_user_error(code, err, "cannot write to --out", "choose a writable folder")


@pytest.mark.slow  # the console fixture starts a subprocess per case (torch imported in each)
def test_truncated_checkpoint_subprocess(console):
    code, err = console[0]["truncated checkpoint"]
    assert_user_error(code, err, "not a readable checkpoint", "truncated")
    assert not (console[1] / "never.png").exists()


@pytest.mark.slow  # the console fixture starts a subprocess per case (torch imported in each)
def test_checkpoint_of_a_model_whose_plugin_is_not_installed_subprocess(console):
    code, err = console[0]["plugin not installed"]
    assert_user_error(
        code, err, "encoder 'tiny-conv'", "plugin 'tiny'", "package 'tinyzoo'", "not installed", "zoo plugins"
    )


def test_checkpoint_of_a_model_whose_plugin_is_not_loaded(tiny, tmp_path, capsys, monkeypatch):
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt")
    monkeypatch.setenv("ZOO_PLUGINS", "aevb")
    from zoo import plugins

    plugins.reset()
    code, out = cli(capsys, "sample", str(ckpt), "--out", str(tmp_path / "s.png"))
    assert_user_error(code, out, "plugin 'tiny'", "package 'tinyzoo'", "not installed")


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--epochs", "-3"], ["epochs must be at least 1", "-3"]),
        (["--epochs", "0"], ["epochs must be at least 1"]),
        (["--batch-size", "0"], ["batch_size must be at least 1"]),
        (["--lr", "-1"], ["lr must be positive"]),
        (["--set", "latent_sise=8"], ["unknown setting 'latent_sise'", "valid:", "latent_size"]),
        (["--set", "epochs=three"], ["epochs expects int", "'three'"]),
        (["--set", "lr=fast"], ["lr expects float"]),
        (["--set", "grad_clip=-1"], ["grad_clip must be >= 0"]),
        (["--set", "latent_size"], ["--set expects key=value", "'latent_size'"]),
        (["--set", "=3"], ["--set expects key=value"]),
        (["--set", "encoder.nosuch=3"], ["has no option 'nosuch'", "its options"]),
        (["--batch-size", "5000"], ["batch size 5000 is larger than the training set"]),
        (["--precision", "fp16"], ["fp16 needs a cuda device"]),
        (["--set", "weight_decay=nan"], ["weight_decay must be a finite number"]),
        (["--set", "grad_clip=nan"], ["grad_clip must be a finite number"]),
        (["--set", "beta=inf"], ["beta must be a finite number"]),
        (["--lr", "inf"], ["lr must be a finite number"]),
        (["--seed", str(2**64)], ["--seed must be a whole number from 0 to"]),
        (["--seed", "-1"], ["--seed must be a whole number from 0 to"]),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) and v[0].startswith("-") else None,
)
def test_bad_option_values(tiny, tmp_path, capsys, extra, needles):
    code, out = cli(capsys, *train_args(tmp_path / "run"), *extra)
    assert_user_error(code, out, *needles)
    with pytest.raises(Exception) as raised:  # --debug: the same error, with its traceback
        cli(capsys, "--debug", *train_args(tmp_path / "run2"), *extra)
    assert raised.type.__name__ in ("ZooError", "UnknownIdError", "IncompatibleComponentsError")


def test_several_bad_settings_are_reported_at_once(tiny, tmp_path, capsys):
    code, out = cli(capsys, *train_args(tmp_path / "run"), "--set", "epochs=x", "--set", "nosuch=1", "--set", "lr=-2")
    assert_user_error(code, out, "epochs expects int", "unknown setting 'nosuch'", "lr must be positive")
    # An objective's options are checked when it is built, still before any folder is made.
    code, out = cli(capsys, *train_args(tmp_path / "run"), "--set", "beta=-2")
    assert_user_error(code, out, "objective 'elbo'", "beta must be a finite number >= 0")
    assert not (tmp_path / "run").exists()


def test_resume_rejects_model_and_new_settings(tiny, tmp_path, capsys):
    code, out = cli(capsys, "train", "tiny-vae", "--resume", str(tmp_path))
    assert_user_error(code, out, "either MODEL or --resume")
    code, out = cli(capsys, "train", "--resume", str(tmp_path), "--set", "lr=1")
    assert_user_error(
        code,
        out,
        "only --epochs, --device, --precision, --threads, --cuda-graph, --deterministic, --data-dir, --data-placement, --data-workers and --keep-every may change",
    )
    code, out = cli(capsys, "train", "--resume", str(tmp_path / "nowhere"))
    assert_user_error(code, out, "no checkpoints/last.pt", "zoo train")
    code, out = cli(capsys, "train")
    assert_user_error(code, out, "which model", "zoo list")


@pytest.fixture
def mnist_copy(data_root, tmp_path):
    """A writable data root: links to the real MNIST files, except the test images (a copy to corrupt)."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for src in (data_root / "MNIST" / "raw").iterdir():
        if src.name.startswith("t10k-images"):
            (raw / src.name).write_bytes(src.read_bytes())
        else:
            (raw / src.name).symlink_to(src)
    return raw


def _corrupt(raw: Path, how: str) -> None:
    import gzip

    images = raw / "t10k-images-idx3-ubyte.gz"
    data = images.read_bytes()
    if how == "missing":
        images.unlink()
    elif how == "truncated gzip":
        images.write_bytes(data[: len(data) // 2])
    elif how == "truncated idx":
        images.unlink()
        (raw / "t10k-images-idx3-ubyte").write_bytes(gzip.decompress(data)[:100_000])
    elif how == "random bytes":
        images.write_bytes(os.urandom(5000))
    elif how == "labels as images":
        images.write_bytes((raw / "t10k-labels-idx1-ubyte.gz").read_bytes())
    elif how == "fewer images":  # valid IDX files holding 5000 images and labels
        plain = bytearray(gzip.decompress(data))
        plain[4:8] = (5000).to_bytes(4, "big")
        images.write_bytes(gzip.compress(bytes(plain[: 16 + 5000 * 784]), compresslevel=1))
        labels = raw / "t10k-labels-idx1-ubyte.gz"
        plain = bytearray(gzip.decompress(labels.read_bytes()))
        plain[4:8] = (5000).to_bytes(4, "big")
        labels.unlink()
        labels.write_bytes(gzip.compress(bytes(plain[: 8 + 5000]), compresslevel=1))


@pytest.mark.parametrize(
    ("how", "needles"),
    [
        ("missing", ["files not found", "t10k-images-idx3-ubyte.gz", "--data-dir"]),
        ("truncated gzip", ["not a readable gzip file", "download it again"]),
        ("truncated idx", ["not a valid idx file", "download it again"]),
        ("random bytes", ["t10k-images-idx3-ubyte.gz", "download it again"]),
        ("labels as images", ["1-d array, expected 3-d"]),
        ("fewer images", ["found 5000 images, expected 10000", "replace them"]),
    ],
)
def test_bad_data_files(mnist_copy, tmp_path, capsys, how, needles):
    _corrupt(mnist_copy, how)
    code, out = cli(
        capsys,
        "train",
        "vae-conv-mnist",
        "--device",
        "cpu",
        "--epochs",
        "1",
        "--data-dir",
        str(mnist_copy.parent.parent),
        "--out",
        str(tmp_path / "run"),
    )
    assert_user_error(code, out, *needles)


def test_dataset_loader_breaking_the_uint8_contract(tiny, tmp_path, capsys):
    """DatasetInfo loaders return uint8 images; the trainer scales them into [0, 1] itself, so data
    outside [0, 1] cannot reach a Bernoulli likelihood through it. A loader returning floats is
    refused rather than silently divided by 255 a second time."""
    code, out = cli(capsys, "train", "tiny-vae-float", "--device", "cpu", "--out", str(tmp_path / "run"))
    assert_user_error(code, out, "tiny-float", "float32", "uint8")


def test_data_outside_unit_interval_for_bernoulli(tiny):
    import torch

    import zoo

    model = zoo.create("tiny-vae")
    with pytest.raises(zoo.ZooError, match=r"outside \[0, 1\].*Bernoulli.*scale images to \[0, 1\]"):
        model.elbo(torch.full((2, 1, 16, 16), 2.0))
    with pytest.raises(zoo.ZooError, match="outside"):
        model.elbo(torch.full((2, 1, 16, 16), float("nan")))


def test_components_that_do_not_fit_name_both():
    import zoo
    from zoo_aevb.components import ConvDecoder, ConvEncoder

    with pytest.raises(zoo.IncompatibleComponentsError) as raised:
        zoo.compose(encoder=ConvEncoder(20), decoder=ConvDecoder(16), latent_size=20)
    message = str(raised.value)
    assert "encoder ConvEncoder has latent_size 20" in message
    assert "decoder ConvDecoder has latent_size 16" in message


def test_components_that_do_not_fit_via_cli(tiny, tmp_path, capsys):
    # The latent size is the model's, handed to every component: it is not a component option.
    code, out = cli(capsys, *train_args(tmp_path / "run"), "--set", "decoder.latent_size=16")
    assert_user_error(code, out, "decoder 'conv-mnist'", "'latent_size' is filled in by zoo")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("make", "needles"),
    [
        ("missing", ["does not exist", "run directory"]),
        ("folder without checkpoint", ["without checkpoints/last.pt"]),
        ("truncated", ["not a readable checkpoint", "truncated"]),
        ("random bytes", ["not a readable checkpoint"]),
        ("empty", ["not a readable checkpoint"]),
        ("foreign torch file", ["not a zoo checkpoint"]),
        ("fifo", ["not a regular file"]),
    ],
)
def test_bad_checkpoints(tiny, tmp_path, capsys, make, needles):
    import torch

    good = tiny_checkpoint(tmp_path / "good.pt")
    path = tmp_path / "bad.pt"
    if make == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif make == "random bytes":
        path.write_bytes(os.urandom(4096))
    elif make == "empty":
        path.write_bytes(b"")
    elif make == "foreign torch file":
        torch.save({"weights": torch.zeros(3)}, path)
    elif make == "folder without checkpoint":
        path.mkdir()
    elif make == "fifo":  # reading it would block forever
        os.mkfifo(path)
    for command in (["sample", str(path), "--out", str(tmp_path / "s.png")], ["train", "--resume", str(path)]):
        code, out = cli(capsys, *command)
        message = assert_user_error(code, out)
        if command[0] == "sample":
            assert all(n.lower() in message.lower() for n in needles), message
    assert not (tmp_path / "s.png").exists()


def test_plugin_raising_while_registering_is_recorded(tiny_dir):
    env = tiny_env(tiny_dir, plugins="aevb,tiny,broken")
    listed = zoo_proc("list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "tiny-vae" in listed.stdout and "vae-conv-mnist" in listed.stdout
    assert "plugin 'broken' is broken" in listed.stderr and "Traceback" not in listed.stderr
    shown = zoo_proc("plugins", env=env)
    assert shown.returncode == 0, shown.stderr
    block = shown.stdout.split("broken (tinyzoo 0.0)", 1)[1]
    assert "ERROR: register_recipes raised RuntimeError: broken on purpose while registering" in block


# -- 4. security -------------------------------------------------------------------------------


class _RunsCodeWhenUnpickled:
    """Pickles as a call to os.system: loading it with plain pickle runs the command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _malicious_checkpoint(path: Path, marker: Path) -> Path:
    import torch

    from zoo.checkpoint import FORMAT

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "spec": _RunsCodeWhenUnpickled(f"touch {marker}"), "model": {}, "epoch": 1}, path)
    return path


def test_crafted_checkpoint_is_live(tmp_path):
    """Guard for the test below: the crafted file really runs code when loaded without weights_only."""
    import torch

    marker = tmp_path / "pwned"
    path = _malicious_checkpoint(tmp_path / "evil.pt", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.slow  # the console fixture starts a subprocess per case (torch imported in each)
def test_crafted_checkpoint_is_refused_and_runs_nothing(console, tiny, tmp_path, capsys):
    import zoo

    marker = tmp_path / "pwned"
    evil = _malicious_checkpoint(tmp_path / "evil.pt", marker)
    run = tmp_path / "run"
    _malicious_checkpoint(run / "checkpoints" / "last.pt", marker)

    with pytest.raises(zoo.ZooError, match="refused.*only load checkpoints written by zoo"):
        zoo.load(evil)
    code, out = cli(capsys, "sample", str(evil), "--out", str(tmp_path / "s.png"))
    assert_user_error(code, out, "refused")
    code, out = cli(capsys, "train", "--resume", str(run))
    assert_user_error(code, out, "refused")
    code, err = console[0]["crafted checkpoint"]  # the console script, for real
    assert_user_error(code, err, "refused", "system")
    assert not (console[1] / "pwned").exists(), "the crafted checkpoint ran code in a subprocess"
    from zoo.cli import cli as group

    if "eval" in group.commands:
        code, out = cli(capsys, "eval", str(evil))
        assert_user_error(code, out, "refused")
    assert not marker.exists(), "the crafted checkpoint ran code"
    assert not (tmp_path / "s.png").exists()


# -- 5. numerical faults -----------------------------------------------------------------------


def test_nan_stops_with_epoch_step_and_last_good_checkpoint(tiny, tmp_path, capsys):
    import torch

    from zoo.checkpoint import load_checkpoint

    run = tmp_path / "run"
    nan_after = STEPS_PER_EPOCH + 10  # the 11th step of epoch 2 is the first bad one
    code, out = cli(capsys, *train_args(run, "--set", f"encoder.nan_after={nan_after}"))
    last = run / "checkpoints" / "last.pt"
    assert_user_error(code, out, "non-finite", "epoch 2, step 11", f"last good checkpoint is {last}", "grad_clip")
    good = load_checkpoint(last)
    assert good["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in good["model"].values() if t.is_floating_point())
    assert [r["epoch"] for r in metric_rows(run)] == [1]
    import zoo

    zoo.load(run)  # the last good checkpoint still loads as a model


def test_nan_before_the_first_checkpoint_says_so(tiny, tmp_path, capsys):
    code, out = cli(capsys, *train_args(tmp_path / "run", "--set", "encoder.nan_after=3"))
    assert_user_error(code, out, "epoch 1, step 4", "no checkpoint was written yet")


def test_huge_learning_rate_is_caught(tiny, tmp_path, capsys):
    code, out = cli(capsys, *train_args(tmp_path / "run", "--lr", "1e30", "--epochs", "2"))
    assert_user_error(code, out, "non-finite", "epoch 1, step", "lower --lr")


def test_gradient_clipping_option(tiny, tmp_path, capsys, monkeypatch):
    import torch

    seen = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(parameters, max_norm, *args, **kwargs):
        seen.append(max_norm)
        return real(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    run = tmp_path / "run"
    code, out = cli(capsys, *train_args(run, "--epochs", "1", "--set", "grad_clip=1.0"))
    assert code == 0, out
    assert seen == [1.0] * STEPS_PER_EPOCH
    assert load_config(run)["recipe"]["training"]["grad_clip"] == 1.0
    seen.clear()
    code, out = cli(capsys, *train_args(tmp_path / "run2", "--epochs", "1"))
    assert code == 0 and seen == [], "clipping is off unless asked for"


def test_bf16_on_cpu_keeps_the_loss_in_fp32(tiny, tmp_path, capsys, monkeypatch):
    import torch

    import zoo

    model = zoo.create("tiny-vae")
    x = torch.rand(8, 1, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = model(x)
    assert {t.dtype for t in terms} == {torch.float32}

    from zoo.objectives import ELBO

    dtypes = set()
    real_forward = ELBO.forward

    def spy(self, model, x):
        loss, logs = real_forward(self, model, x)
        dtypes.add(loss.dtype)
        dtypes.update(v.dtype for v in logs.values())
        return loss, logs

    monkeypatch.setattr(ELBO, "forward", spy)
    run = tmp_path / "run"
    code, out = cli(capsys, *train_args(run, "--epochs", "1", "--precision", "bf16"))
    assert code == 0, out
    assert dtypes == {torch.float32}
    assert load_config(run)["resolved"]["precision"] == "bf16"


# -- 6. scale-out ------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_processes_reach_the_loss_of_one(reference_run, ddp_reference_run):
    """Same global batch, same epochs: two gloo processes on CPU end where one process does."""
    one, two = metric_rows(reference_run()), metric_rows(ddp_reference_run())
    assert len(one) == len(two) == EPOCHS
    for a, b in zip(one, two):
        assert b["test_loss"] == pytest.approx(a["test_loss"], rel=0.01), (a, b)
    assert two[-1]["test_loss"] < two[0]["test_loss"], "the two-process run learns"
    assert two[1]["test_loss"] == pytest.approx(one[1]["test_loss"], rel=0.005)  # after 2 epochs


# -- 7. run directories: one writer, overwrite, resume options ------------------------------


def _wait_for(predicate, proc: subprocess.Popen, log: Path, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"training ended before {what}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s:\n{log.read_text()}"
        time.sleep(0.05)


def _files(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_run_dir_has_one_writer_and_a_dead_holder_never_blocks(tiny, tiny_dir, tmp_path, capsys):
    """While a run trains, a resume, a fresh start and an --overwrite of its folder are refused; once
    it is SIGKILLed (no clean-up), the kernel has dropped its lock and the resume works."""
    from zoo.checkpoint import load_checkpoint

    run, log = tmp_path / "run", tmp_path / "log.txt"
    # 6 epochs: the holder is killed long before it could finish, however slow the refused starts are.
    holder = start(
        zoo_command(*train_args(run, "--epochs", "6")), {**tiny_env(tiny_dir), "TINY_STEP_SECONDS": "0.2"}, log
    )
    try:
        _wait_for(lambda: len(metric_rows(run)) >= 1, holder, log, "a first epoch")
        config = (run / "config.json").read_bytes()
        for args in (["train", "--resume", str(run)], train_args(run), train_args(run, "--overwrite", "--seed", "9")):
            code, out = cli(capsys, *args)
            assert_user_error(code, out, "in use by another zoo process", f"pid {holder.pid}", "another --out")
        assert holder.poll() is None, "the holder kept training while the others were refused"
        assert (run / "config.json").read_bytes() == config
    finally:
        kill_tree(holder)
    done = load_checkpoint(run / "checkpoints" / "last.pt")["epoch"]
    code, out = cli(capsys, "train", "--resume", str(run), "--epochs", str(done + 1))
    assert code == 0, out
    assert [r["epoch"] for r in metric_rows(run)] == list(range(1, done + 2))
    assert not (run / ".zoo.lock").exists(), "the lock file goes with its holder"


@pytest.mark.slow
def test_parallel_runs_without_out_get_unique_names(tiny_dir, tmp_path, monkeypatch):
    from zoo.rundir import unique_run_dir

    monkeypatch.setattr("zoo.rundir.time.strftime", lambda fmt: "20250101-120000")  # all in the same second
    made = [unique_run_dir("m", tmp_path / "runs") for _ in range(4)]
    assert len(set(made)) == 4 and all(p.is_dir() for p in made)
    assert made[0].name == "m-20250101-120000" and made[1].name == "m-20250101-120000-2"
    monkeypatch.undo()

    # a sweep: two trainings started together in one folder, neither with --out
    env = tiny_env(tiny_dir)
    procs = [
        subprocess.Popen(
            zoo_command("train", "tiny-vae", "--device", "cpu", "--epochs", "1", "--seed", str(i)),
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    for proc in procs:
        output = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, output
    runs = sorted((tmp_path / "runs").glob("tiny-vae-*"))
    assert len(runs) == 2
    seeds = {json.loads((r / "config.json").read_text())["settings"]["seed"] for r in runs}
    assert seeds == {0, 1}
    for r in runs:
        assert [row["epoch"] for row in metric_rows(r)] == [1]
        assert_checkpoints_sound(r)


def test_overwrite_checks_everything_first_and_deletes_only_zoo_files(tiny, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(capsys, *train_args(run, "--epochs", "2"))[0] == 0
    (run / "checkpoints" / "pretrained.pt").write_bytes(b"the user's weights")
    (run / "samples" / "fig.png").write_bytes(b"the user's figure")
    (run / "notes.txt").write_text("the user's notes")
    before = _files(run)

    # a mistake found only when the data is loaded: the old run is untouched
    code, out = cli(capsys, "train", "tiny-vae-float", "--device", "cpu", "--out", str(run), "--overwrite")
    assert_user_error(code, out, "uint8")
    assert _files(run) == before
    # something at one of zoo's names that zoo did not write: refused, nothing deleted
    (run / "checkpoints" / "best.pt").unlink()
    (run / "checkpoints" / "best.pt").mkdir()
    (run / "checkpoints" / "best.pt" / "inside").write_text("x")
    before = _files(run)
    code, out = cli(capsys, *train_args(run, "--epochs", "1", "--overwrite"))
    assert_user_error(code, out, "best.pt is a folder", "nothing was deleted")
    assert _files(run) == before
    (run / "checkpoints" / "best.pt" / "inside").unlink()
    (run / "checkpoints" / "best.pt").rmdir()

    code, out = cli(capsys, *train_args(run, "--epochs", "1", "--seed", "4", "--overwrite"))
    assert code == 0, out
    after = _files(run)
    for name in ("checkpoints/pretrained.pt", "samples/fig.png", "notes.txt"):
        assert after[name] == before[name], f"--overwrite touched the user's {name}"
    assert "samples/epoch-002.png" not in after, "the old run's files are gone"
    assert [r["epoch"] for r in metric_rows(run)] == [1]
    assert load_config(run)["settings"]["seed"] == 4


def test_zoo_names_that_are_not_zoo_files_are_refused(tiny, tmp_path, capsys):
    """A fifo, a symlink or a foreign config.json at one of zoo's names: refused, never followed or
    replaced (a fifo would hang a writer; a symlink would send the write elsewhere)."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    cases = {
        "fifo": lambda run: os.mkfifo(run / "metrics.jsonl"),
        "symlink": lambda run: (run / "checkpoints").mkdir() or (run / "checkpoints" / "last.pt").symlink_to(victim),
        "file for a folder": lambda run: (run / "samples").write_text("not a folder"),
        "foreign config": lambda run: (run / "config.json").write_text('{"my": "settings"}'),
    }
    for name, make in cases.items():
        run = tmp_path / name.replace(" ", "-")
        run.mkdir()
        make(run)
        before = sorted(p.name for p in run.rglob("*"))
        for extra in ([], ["--overwrite"]):
            code, out = cli(capsys, *train_args(run, "--epochs", "1", *extra))
            assert_user_error(code, out, str(run))
            assert sorted(p.name for p in run.rglob("*")) == before, name
    assert victim.read_text() == "precious"
    assert json.loads((tmp_path / "foreign-config" / "config.json").read_text()) == {"my": "settings"}


def test_a_folder_without_a_run_is_not_called_one(tiny, tmp_path, capsys):
    # the user's own files, no run: zoo trains beside them
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("notes")
    code, out = cli(capsys, *train_args(mine, "--epochs", "1"))
    assert code == 0, out
    assert (mine / "notes.txt").read_text() == "notes"
    # a start that died of NaN at its first step: nothing to resume, and a fresh start needs no --overwrite
    nan = tmp_path / "nan"
    code, out = cli(capsys, *train_args(nan, "--set", "encoder.nan_after=1"))
    assert_user_error(code, out, "epoch 1, step 2", "no checkpoint was written yet")
    code, out = cli(capsys, "train", "--resume", str(nan))
    assert_user_error(code, out, "no checkpoints/last.pt", f"zoo train MODEL --out {nan}")
    code, out = cli(capsys, *train_args(nan, "--epochs", "1"))
    assert code == 0, out
    assert "already holds a run" not in out


def test_sample_out_that_is_not_a_regular_file_is_refused(tiny, tmp_path, capsys):
    import stat

    checkpoint = tiny_checkpoint(tmp_path / "model.pt")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    targets = {"fifo": tmp_path / "fifo.png", "symlink": tmp_path / "link.png"}
    os.mkfifo(targets["fifo"])
    targets["symlink"].symlink_to(victim)
    if os.geteuid() == 0:  # a character device, as /dev/null is (only root may make one)
        targets["device"] = tmp_path / "null.png"
        os.mknod(targets["device"], stat.S_IFCHR | 0o666, os.makedev(1, 3))
    for name, target in targets.items():
        mode = os.lstat(target).st_mode
        code, out = cli(capsys, "sample", str(checkpoint), "--out", str(target))
        assert_user_error(code, out, "not a regular file")
        assert os.lstat(target).st_mode == mode, f"the {name} was replaced"
    assert victim.read_text() == "precious"


def test_kill_between_last_and_best_is_repaired_on_resume(tiny, tmp_path, capsys, monkeypatch):
    import zoo.run_state
    from zoo.checkpoint import load_checkpoint

    run = tmp_path / "run"
    real_save, armed = zoo.run_state.save_checkpoint, [True]

    def killed_before_best(path, payload):
        if armed[0] and Path(path).name == "best.pt" and payload["epoch"] == 2:
            raise KeyboardInterrupt  # the process dies between writing last.pt and best.pt
        return real_save(path, payload)

    monkeypatch.setattr(zoo.run_state, "save_checkpoint", killed_before_best)
    code, out = cli(capsys, *train_args(run, "--epochs", "3"))
    armed[0] = False
    assert code == 130, out
    rows = load_checkpoint(run / "checkpoints" / "last.pt")["history"]
    assert rows[1]["test_loss"] < rows[0]["test_loss"], "precondition: epoch 2 is the best so far"
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 2
    assert load_checkpoint(run / "checkpoints" / "best.pt")["epoch"] == 1  # stale, as a kill leaves it

    # The resume repairs best.pt before it trains on: here it dies again at its first checkpoint,
    # before any later epoch could have rewritten best.pt, and best.pt already holds epoch 2.
    def killed_at_epoch_3(path, payload):
        if armed[0] and payload["epoch"] == 3:
            raise KeyboardInterrupt
        return real_save(path, payload)

    armed[0] = True
    monkeypatch.setattr(zoo.run_state, "save_checkpoint", killed_at_epoch_3)
    code, out = cli(capsys, "train", "--resume", str(run), "--epochs", "3")
    armed[0] = False
    assert code == 130, out
    repaired = load_checkpoint(run / "checkpoints" / "best.pt")
    assert repaired["epoch"] == 2 and repaired["best"] == rows[1]["test_loss"]

    code, out = cli(capsys, "train", "--resume", str(run), "--epochs", "3")
    assert code == 0, out
    rows = metric_rows(run)
    best = min(rows, key=lambda r: r["test_loss"])
    kept = load_checkpoint(run / "checkpoints" / "best.pt")
    assert kept["epoch"] == best["epoch"] and kept["best"] == best["test_loss"]


def test_resume_option_rule(tiny, tmp_path, capsys, monkeypatch):
    """--epochs, --device, --precision and --data-dir may change on a resume and are honoured; every
    other option is refused; a finished run needs a larger --epochs."""
    import torch

    from zoo.checkpoint import load_checkpoint, save_checkpoint

    (tmp_path / "here").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    code, out = cli(
        capsys,
        "train",
        "tiny-vae",
        "--device",
        "cpu",
        "--seed",
        "3",
        "--epochs",
        "1",
        "--data-dir",
        "data",
        "--out",
        "run",
    )
    assert code == 0, out
    run = tmp_path / "here" / "run"
    assert load_config(run)["settings"]["data_dir"] == str(tmp_path / "here" / "data"), "stored absolute"

    for extra in (
        ["--seed", "4"],
        ["--compile"],
        ["--no-compile"],
        ["--out", str(tmp_path / "x")],
        ["--lr", "0.1"],
        ["--batch-size", "50"],
        ["--set", "beta=2"],
        ["--overwrite"],
    ):
        code, out = cli(capsys, "train", "--resume", str(run), "--epochs", "2", *extra)
        assert_user_error(
            code,
            out,
            extra[0],
            "only --epochs, --device, --precision, --threads, --cuda-graph, --deterministic, --data-dir, --data-placement, --data-workers and --keep-every may change",
        )
    code, out = cli(capsys, "train", "--resume", str(run))
    assert_user_error(code, out, "already finished its 1 epochs", "--epochs")
    code, out = cli(capsys, "train", "--resume", str(run), "--epochs", "1")
    assert_user_error(code, out, "not more than the 1 epochs")
    assert [r["epoch"] for r in metric_rows(run)] == [1]

    monkeypatch.chdir(tmp_path / "elsewhere")  # a relative --data-dir no longer strands the run
    code, out = cli(
        capsys,
        "train",
        "--resume",
        str(run),
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--precision",
        "bf16",
        "--data-dir",
        "other-data",
    )
    assert code == 0, out
    config = load_config(run)
    assert config["settings"]["precision"] == "bf16" and config["resolved"]["precision"] == "bf16"
    assert config["settings"]["data_dir"] == str(tmp_path / "elsewhere" / "other-data")
    assert config["settings"]["seed"] == 3

    # a run trained in fp16 (on a GPU) continues on the CPU once told which precision to use there
    payload = load_checkpoint(run / "checkpoints" / "last.pt")
    payload["config"]["settings"]["precision"] = "fp16"
    save_checkpoint(run / "checkpoints" / "last.pt", {k: v for k, v in payload.items() if k != "format"})
    code, out = cli(capsys, "train", "--resume", str(run), "--epochs", "3")
    assert_user_error(code, out, "fp16", "--precision fp32")
    code, out = cli(capsys, "train", "--resume", str(run), "--epochs", "3", "--precision", "fp32")
    assert code == 0, out
    assert [r["epoch"] for r in metric_rows(run)] == [1, 2, 3]
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["config"]["settings"]["precision"] == "fp32"


def test_deterministic_is_set_for_the_run_restored_after_and_kept_on_resume(tiny, tmp_path, capsys, monkeypatch):
    """--deterministic turns on torch's deterministic algorithms and cuDNN's deterministic mode while
    the run trains (only then: the caller's settings come back), is recorded in config.json, is kept
    on a resume unless --no-deterministic is given, and leaves the results bit-identical."""
    import torch

    from zoo.trainer import Trainer

    seen = []
    train_epoch = Trainer._train_epoch

    def recording(self, epoch):
        seen.append(
            (
                torch.are_deterministic_algorithms_enabled(),
                torch.backends.cudnn.deterministic,
                torch.backends.cudnn.benchmark,
            )
        )
        return train_epoch(self, epoch)

    monkeypatch.setattr(Trainer, "_train_epoch", recording)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)  # the caller's own choice, to be restored
    run, plain = tmp_path / "run", tmp_path / "plain"
    code, out = cli(capsys, *train_args(run, "--epochs", "1", "--deterministic"))
    assert code == 0, out
    assert seen == [(True, True, False)]
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    assert torch.backends.cudnn.benchmark
    assert load_config(run)["settings"]["deterministic"] is True

    code, out = cli(capsys, "train", "--resume", str(run), "--epochs", "2")
    assert code == 0, out
    assert seen[1:] == [(True, True, False)] and load_config(run)["settings"]["deterministic"] is True
    code, out = cli(capsys, "train", "--resume", str(run), "--epochs", "3", "--no-deterministic")
    assert code == 0, out
    assert seen[2:] == [(False, False, True)] and load_config(run)["settings"]["deterministic"] is False

    code, out = cli(capsys, *train_args(plain, "--epochs", "3"))
    assert code == 0, out
    assert seen[3:] == [(False, False, True)] * 3  # the default, "auto", changes nothing on the CPU
    assert load_config(plain)["settings"]["deterministic"] == "auto"
    from zoo.errors import ZooError

    for bad in ("yes", 1, None):
        with pytest.raises(ZooError, match=rf"deterministic must be True, False or 'auto' \(got {bad!r}\)"):
            Trainer("tiny-vae", out=tmp_path / "bad", device="cpu", deterministic=bad)
    assert not (tmp_path / "bad").exists()
    assert [r["test_loss"] for r in metric_rows(run)] == [r["test_loss"] for r in metric_rows(plain)]
    last, other = (torch.load(r / "checkpoints" / "last.pt", weights_only=True)["model"] for r in (run, plain))
    assert all(torch.equal(last[k], other[k]) for k in last)


def test_default_determinism_on_cuda_is_cudnn_and_cublas_only(monkeypatch):
    """deterministic="auto" (the default) on a CUDA device: cuDNN's deterministic algorithms
    without autotuning and a fixed cuBLAS workspace while the run trains, not torch's
    use_deterministic_algorithms (nothing that can stop a run); all restored after, errors
    included. On the CPU and with False it changes nothing. (Flags only: nothing runs on a GPU.)"""
    import torch

    from zoo.devices import CUBLAS_WORKSPACE, deterministic_algorithms

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    cuda = torch.device("cuda")

    def state():
        return (
            torch.are_deterministic_algorithms_enabled(),
            torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark,
            os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        )

    untouched = (False, False, True, None)
    with deterministic_algorithms("auto", cuda):
        assert state() == (False, True, False, CUBLAS_WORKSPACE)
    assert state() == untouched
    for mode, device in (("auto", torch.device("cpu")), (False, cuda)):
        with deterministic_algorithms(mode, device):
            assert state() == untouched
    with pytest.raises(
        RuntimeError, match="has no deterministic implementation"
    ):  # not turned into --deterministic's line
        with deterministic_algorithms("auto", cuda):
            raise RuntimeError("scatter_ has no deterministic implementation")
    assert state() == untouched
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the user's own value is kept
    with deterministic_algorithms(True, cuda):
        assert state() == (True, True, False, ":16:8")
    assert state()[:3] == untouched[:3] and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_deterministic_with_an_op_that_has_no_deterministic_version_is_one_line(tiny, tmp_path, capsys, monkeypatch):
    """A component calling an op torch has no deterministic version of (here Tensor.put_) stops a
    --deterministic run with one line naming the op; without the flag the same model trains."""
    import torch

    from zoo_aevb.components import ConvEncoder

    forward = ConvEncoder.forward

    def with_put(self, x):
        x.new_zeros(4).put_(torch.tensor([1, 1]), x.new_ones(2))
        return forward(self, x)

    monkeypatch.setattr(ConvEncoder, "forward", with_put)
    code, out = cli(capsys, *train_args(tmp_path / "run", "--epochs", "1", "--deterministic"))
    assert_user_error(
        code,
        out,
        "--deterministic: put_ does not have a deterministic implementation on cpu",
        "without --deterministic",
    )
    assert not torch.are_deterministic_algorithms_enabled()
    code, out = cli(capsys, *train_args(tmp_path / "run", "--epochs", "1", "--overwrite"))
    assert code == 0, out


def test_keep_every_keeps_epoch_checkpoints_that_evaluate_and_survive_overwrite_rules(tiny, tmp_path, capsys):
    """--keep-every N keeps checkpoints/epoch-NNNN.pt every N epochs (same state as last.pt then), may
    change on a resume, rejects a negative count, and the kept files count as the run's own."""
    import torch

    run = tmp_path / "run"
    code, out = cli(
        capsys, "train", "tiny-vae", "--device", "cpu", "--epochs", "3", "--keep-every", "2", "--out", str(run)
    )
    assert code == 0, out
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert kept == ["best.pt", "epoch-0002.pt", "last.pt"]
    two = torch.load(run / "checkpoints" / "epoch-0002.pt", weights_only=True)
    assert two["epoch"] == 2 and two["history"][-1]["epoch"] == 2
    code, out = cli(
        capsys,
        "eval",
        str(run / "checkpoints" / "epoch-0002.pt"),
        "--no-fid",
        "--iw-samples",
        "2",
        "--limit",
        "20",
        "--json",
        "--out",
        str(tmp_path / "eval2"),
    )
    assert code == 0, out
    assert json.JSONDecoder().raw_decode(out[out.index("{") :])[0]["epoch"] == 2

    code, out = cli(capsys, "train", "--resume", str(run), "--epochs", "5", "--keep-every", "1")
    assert code == 0, out
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "best.pt",
        "epoch-0002.pt",
        "epoch-0004.pt",
        "epoch-0005.pt",
        "last.pt",
    ]
    assert load_config(run)["settings"]["keep_every"] == 1

    code, out = cli(capsys, "train", "tiny-vae", "--epochs", "1", "--keep-every", "-1", "--out", str(tmp_path / "b"))
    assert_user_error(code, out, "--keep-every must be a whole number")
    assert not (tmp_path / "b").exists()
    # an existing run with only kept checkpoints is still a run: no silent reuse of the folder
    code, out = cli(capsys, "train", "tiny-vae", "--epochs", "1", "--out", str(run))
    assert_user_error(code, out, "--resume", "--overwrite")
    code, out = cli(capsys, "train", "tiny-vae", "--device", "cpu", "--epochs", "1", "--out", str(run), "--overwrite")
    assert code == 0, out
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"], "old epochs replaced"


def test_lr_schedule_burda_steps_per_epoch_and_resumes_exactly(tiny, tmp_path, capsys):
    """--set lr_schedule=burda trains epoch e at lr x 10^(-i/7) for stage i of 3^i epochs; a run
    stopped and resumed ends with the same weights and lrs as one that was not; a bad value is one line."""
    import torch

    def lrs(run):
        return [r["lr"] for r in metric_rows(run)]

    whole, split = tmp_path / "whole", tmp_path / "split"
    base = ["train", "tiny-vae", "--device", "cpu", "--set", "lr_schedule=burda", "--lr", "0.01"]
    code, out = cli(capsys, *base, "--epochs", "5", "--out", str(whole))
    assert code == 0, out
    expected = [0.01, 0.01 * 10 ** (-1 / 7), 0.01 * 10 ** (-1 / 7), 0.01 * 10 ** (-1 / 7), 0.01 * 10 ** (-2 / 7)]
    assert lrs(whole) == pytest.approx(expected, rel=1e-12)
    code, out = cli(capsys, *base, "--epochs", "3", "--out", str(split))
    assert code == 0, out
    code, out = cli(capsys, "train", "--resume", str(split), "--epochs", "5")
    assert code == 0, out
    assert lrs(split) == pytest.approx(expected, rel=1e-12)
    a = torch.load(whole / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(split / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 5

    code, out = cli(capsys, "train", "tiny-vae", "--set", "lr_schedule=cosine", "--out", str(tmp_path / "bad"))
    assert_user_error(code, out, "lr_schedule must be constant or burda (got 'cosine')")
    assert not (tmp_path / "bad").exists()


def _limit_file_size(limit: int):
    def apply() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
def test_real_write_failures_are_one_line_errors_subprocess(tiny, tiny_dir, tmp_path):
    """Not a simulated OSError: the kernel refuses the writes (a file size limit, as a full disk would),
    inside torch's C++ zip writer and inside the PNG encoder."""
    env = tiny_env(tiny_dir)
    run = tmp_path / "run"
    checkpoint = tiny_checkpoint(tmp_path / "model.pt")
    png = tmp_path / "s.png"
    # Both commands at once: each one's time goes mostly to starting Python and importing torch.
    procs = [
        subprocess.Popen(
            zoo_command(*train_args(run, "--epochs", "1")),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_limit_file_size(50_000),
        ),  # config.json fits, a checkpoint not
        subprocess.Popen(
            zoo_command("sample", str(checkpoint), "--out", str(png)),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_limit_file_size(5_000),
        ),
    ]
    try:
        (_, train_err), (_, sample_err) = (proc.communicate(timeout=300) for proc in procs)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert_user_error(procs[0].returncode, train_err, "could not write checkpoint", "previous checkpoint is intact")
    assert [p.name for p in (run / "checkpoints").iterdir()] == [], "no temporary left"
    assert_user_error(procs[1].returncode, sample_err, "could not write image", str(png))
    assert not png.exists() and [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_random_and_cut_files_given_as_checkpoints(tiny, tmp_path):
    """400 files that are not zoo checkpoints (random bytes, zip-looking bytes, every kind of cut of a
    real checkpoint): each one a ZooError, never another exception."""
    import random as stdlib_random

    import zoo
    from zoo.errors import ZooError

    good = tiny_checkpoint(tmp_path / "good.pt").read_bytes()
    rng = stdlib_random.Random(11)
    samples = []
    for i in range(400):
        if i % 4 == 0:
            data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 300)))
        elif i % 4 == 1:
            data = b"PK\x03\x04" + bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 2000)))
        elif i % 4 == 2:
            data = good[: rng.randrange(0, len(good))]
        else:  # a real checkpoint with a few bytes flipped
            data = bytearray(good)
            for _ in range(8):
                data[rng.randrange(len(data))] = rng.getrandbits(8)
            data = bytes(data)
        samples.append(data)
    path = tmp_path / "bad.pt"
    for data in samples:
        path.write_bytes(data)
        try:
            zoo.load(path)
        except ZooError:
            pass


@pytest.mark.parametrize(
    "damage", ["extra key", "missing key", "wrong shape", "no optimizer", "bad rng", "impossible spec"]
)
def test_zoo_checkpoints_that_do_not_fit(tiny, tmp_path, capsys, damage):
    import torch

    from zoo.checkpoint import load_checkpoint, save_checkpoint

    run = tmp_path / "run"
    assert cli(capsys, *train_args(run, "--epochs", "1"))[0] == 0
    last = run / "checkpoints" / "last.pt"
    payload = {k: v for k, v in load_checkpoint(last).items() if k != "format"}
    state = payload["model"]
    name = next(iter(state))
    if damage == "extra key":
        state["surprise.weight"] = torch.zeros(3)
    elif damage == "missing key":
        del state[name]
    elif damage == "wrong shape":
        state[name] = torch.zeros(*[n + 1 for n in state[name].shape])
    elif damage == "no optimizer":
        del payload["optimizer"]
    elif damage == "impossible spec":  # read by zoo sample / zoo.load, not by a resume
        payload["spec"]["data_shape"] = [1, -5, 2]
    else:
        payload["rng"] = [{"torch": "garbage"}]
    save_checkpoint(last, payload)
    before = last.read_bytes()
    commands = [["train", "--resume", str(run), "--epochs", "2"]] if damage != "impossible spec" else []
    if damage not in ("no optimizer", "bad rng"):
        commands.append(["sample", str(last), "--out", str(tmp_path / "s.png")])
    for command in commands:
        code, out = cli(capsys, *command)
        assert_user_error(code, out, str(last))
    assert last.read_bytes() == before
    assert not (tmp_path / "s.png").exists()


def test_unwritable_cache_or_low_memory_is_not_blamed_on_the_data(mnist_copy, tmp_path, capsys, monkeypatch):
    from zoo import data, idx

    root = str(mnist_copy.parent.parent)
    monkeypatch.setenv("XDG_CACHE_HOME", "/dev/null/cache")  # as with HOME=/dev/null: nothing can be cached
    images, _ = data.BUILTIN_DATASETS[0].load("test", root, download=False)
    assert images.shape == (10000, 1, 28, 28), "an unwritable cache only costs speed"

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(idx, "_read_exactly", no_memory)
    code, out = cli(
        capsys,
        "train",
        "vae-conv-mnist",
        "--device",
        "cpu",
        "--epochs",
        "1",
        "--data-dir",
        root,
        "--out",
        str(tmp_path / "run"),
    )
    message = assert_user_error(code, out, "not enough memory")
    assert "download it again" not in message and "not a valid" not in message


def test_sizes_beyond_memory_are_refused_before_reading(mnist_copy, tmp_path, capsys, monkeypatch):
    import gzip
    import resource

    from zoo import idx

    root = str(mnist_copy.parent.parent)
    images = mnist_copy / "t10k-images-idx3-ubyte.gz"
    train = [
        "train",
        "vae-conv-mnist",
        "--device",
        "cpu",
        "--epochs",
        "1",
        "--data-dir",
        root,
        "--out",
        str(tmp_path / "run"),
    ]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    images.unlink()
    plain = mnist_copy / "t10k-images-idx3-ubyte"
    with open(plain, "wb") as f:  # a 3 GB sparse file: a header of zeros
        f.truncate(3 * 1024**3)
    code, out = cli(capsys, *train)
    assert_user_error(code, out, "not a valid idx file")
    with open(plain, "r+b") as f:  # a valid header announcing 3 GB
        f.write(bytes([0, 0, 8, 3]) + (3 * 1024**3 // 784).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2)
    code, out = cli(capsys, *train)
    assert_user_error(code, out, "announces 3.2 GB")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 1024 * 1024, "more than 1 GB was read"
    plain.unlink()

    # a gzip file that decompresses to far more than its header announces: cut off, nothing cached
    header = bytes([0, 0, 8, 3]) + (10000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    with gzip.open(images, "wb", compresslevel=1) as f:
        f.write(header)
        for _ in range(40):
            f.write(bytes(10_000_000))
    code, out = cli(capsys, *train)
    assert_user_error(code, out, "more data than its header announces")
    entry = idx._cache_entry(images)
    assert not entry.exists() and not (entry.parent.exists() and any(entry.parent.iterdir())), "nothing cached"


def test_cache_entries_damaged_or_left_half_written(mnist_copy, tmp_path, monkeypatch):
    from zoo import data, idx

    root = str(mnist_copy.parent.parent)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    gz = mnist_copy / "t10k-images-idx3-ubyte.gz"
    entry = idx._cache_entry(gz)
    entry.parent.mkdir(parents=True)
    stale = entry.parent / f".{entry.name}.999999999.tmp"  # an extraction killed half-way
    stale.write_bytes(b"\0" * 1000)
    first, _ = data.BUILTIN_DATASETS[0].load("test", root, download=False)
    assert entry.is_file() and not stale.exists()
    with open(entry, "r+b") as f:  # the cached copy is damaged (cut short)
        f.truncate(5000)
    again, _ = data.BUILTIN_DATASETS[0].load("test", root, download=False)
    assert again.equal(first)
    assert entry.stat().st_size == 16 + 10000 * 784, "the damaged entry was replaced"
    entry.write_bytes(b"garbage")  # not even a header
    assert data.BUILTIN_DATASETS[0].load("test", root, download=False)[0].equal(first)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    entry.unlink()
    monkeypatch.setattr(idx.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        data.BUILTIN_DATASETS[0].load("test", root, download=False)
    assert [p.name for p in entry.parent.iterdir()] == [], "an interrupted extraction leaves no temporary"


def test_smaller_ones(console, tiny, capsys, monkeypatch):
    """ZOO_DEBUG=0 is off; JSON output has no bare NaN; ZOO_PLUGINS is named when it hides a plugin."""
    monkeypatch.setenv("ZOO_DEBUG", "0")
    code, out = cli(capsys, "train", "tiny-vea")
    assert_user_error(code, out, "unknown model")

    from zoo.evaluate import json_safe

    text = json.dumps(json_safe({"fid": float("nan"), "x": [float("inf"), 1.5]}), allow_nan=False)
    assert json.loads(text) == {"fid": None, "x": [None, 1.5]}

    code, err = console[0]["garbage ZOO_PLUGINS"]  # zoo sample CHECKPOINT through the console script, for real
    assert_user_error(code, err, "not installed", "ZOO_PLUGINS='garbage'", "garbage: no such plugin installed")


def test_eval_json_is_strict_and_a_small_fid_is_flagged(tiny, tmp_path, capsys, monkeypatch):
    import zoo.evaluate

    run = tmp_path / "run"
    assert cli(capsys, *train_args(run, "--epochs", "1"))[0] == 0
    code, out = cli(
        capsys,
        "eval",
        str(run),
        "--limit",
        "2",
        "--iw-samples",
        "2",
        "--json",
        "--no-progress",
        "--out",
        str(tmp_path / "eval"),
    )
    assert code == 0, out
    result = json.loads(out[out.index("{") : out.rindex("}") + 1])
    assert "warning: FID from only 2 images" in out
    assert "fid_warning" in result and result["fid_images"] == 2
    real = zoo.evaluate.evaluate
    monkeypatch.setattr(zoo.evaluate, "evaluate", lambda *a, **k: {**real(*a, **k), "fid": float("nan")})
    code, out = cli(
        capsys,
        "eval",
        str(run),
        "--limit",
        "2",
        "--iw-samples",
        "2",
        "--json",
        "--no-fid",
        "--no-progress",
        "--out",
        str(tmp_path / "eval2"),
    )
    assert code == 0, out
    body = out[out.index("{") : out.rindex("}") + 1]
    assert "NaN" not in body and json.loads(body)["fid"] is None


# -- 8. the guarantees document --------------------------------------------------------------


def test_reliability_doc_names_only_tests_that_exist():
    doc = (ROOT / "docs" / "reliability.md").read_text()
    named = set(re.findall(r"tests/test_reliability\.py::(\w+)", doc))
    defined = {name for name in globals() if name.startswith("test_")}
    assert named, "docs/reliability.md names no tests"
    assert named <= defined, f"docs name missing tests: {sorted(named - defined)}"
    assert defined - named <= {"test_reliability_doc_names_only_tests_that_exist"}, (
        f"tests not described in docs/reliability.md: {sorted(defined - named - {'test_reliability_doc_names_only_tests_that_exist'})}"
    )
    for phrase in ("weights_only=True", "plugins are code", "--nnodes 2", "not run here"):
        assert phrase.lower() in doc.lower(), phrase
