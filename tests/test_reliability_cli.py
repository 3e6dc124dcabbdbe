"""Reliability of the commands and the Python API: one rule per input for every command, every
output checked before the work, clean stops, and one-line errors from the API too.

Uses the tiny plugin and helpers of ``tests/test_reliability.py``; ``docs/reliability.md``
(its last section) names each test here beside the promise it keeps.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers_tiny import tiny_env, zoo_command
from test_reliability import (  # noqa: F401 - tiny_dir and tiny are the fixtures of that file
    assert_user_error,
    cli,
    kill_tree,
    tiny,
    tiny_checkpoint,
    tiny_dir,
    train_args,
)

ROOT = Path(__file__).resolve().parents[1]


def quick_run(capsys, out: Path, *extra: str) -> Path:
    """A tiny-vae run of a few steps in ``out``."""
    code, output = cli(capsys, *train_args(out, "--max-steps", "2", "--no-progress", *extra))
    assert code == 0, output
    return out


# -- one seed rule for train, sample and eval ------------------------------------------------


@pytest.mark.parametrize("seed", [str(2**70), "-1", str(2**32)])
def test_one_seed_rule_for_train_sample_and_eval(tiny, tmp_path, capsys, seed):
    ckpt = tiny_checkpoint(tmp_path / "model.pt")
    for args in (
        ["sample", ckpt, "--seed", seed, "--out", tmp_path / "s.png"],
        ["eval", ckpt, "--seed", seed, "--no-fid", "--limit", "10", "--out", tmp_path / "ev"],
        train_args(tmp_path / "run", "--seed", seed, "--max-steps", "1"),
    ):
        code, output = cli(capsys, *map(str, args))
        assert_user_error(code, output, "--seed", "from 0 to 4294967295")
    assert not (tmp_path / "s.png").exists() and not (tmp_path / "ev").exists() and not (tmp_path / "run").exists()


def test_seed_check_is_shared_and_typed():
    from zoo.errors import ZooError
    from zoo.plan import MAX_SEED, RunSettings, check_seed

    assert check_seed(MAX_SEED) == MAX_SEED and check_seed(0) == 0
    with pytest.raises(ValueError) as raised:
        check_seed(-1)
    assert isinstance(raised.value, ZooError)
    with pytest.raises(TypeError):
        check_seed("3")
    assert RunSettings(seed=-1).problems() and RunSettings(seed=2**70).problems()
    assert not RunSettings(seed=MAX_SEED).problems()


# -- threads bounded by the machine ----------------------------------------------------------


@pytest.mark.parametrize("threads", ["100000", "20000"])
def test_threads_beyond_the_machine_are_refused_by_train_and_eval(tiny, tmp_path, capsys, threads):
    ckpt = tiny_checkpoint(tmp_path / "model.pt")
    limit = str(4 * (os.cpu_count() or 1))
    for args in (
        ["eval", ckpt, "--threads", threads, "--no-fid", "--limit", "10", "--out", tmp_path / "ev"],
        train_args(tmp_path / "run", "--threads", threads, "--max-steps", "1"),
    ):
        code, output = cli(capsys, *map(str, args))
        assert_user_error(code, output, "--threads", f"from 1 to {limit}")
    assert not (tmp_path / "run").exists() and not (tmp_path / "ev").exists()


def test_threads_rule_is_one_check(tiny):
    from zoo.plan import RunSettings
    from zoo.threads import check_thread_count, max_threads

    assert max_threads() == 4 * (os.cpu_count() or 1)
    check_thread_count(max_threads())
    with pytest.raises(ValueError, match="--threads"):
        check_thread_count(max_threads() + 1)
    assert RunSettings(threads=max_threads() + 1).problems()
    assert not RunSettings(threads=max_threads()).problems()


def test_a_run_resumed_on_a_smaller_machine_chooses_its_threads_again(tiny, tmp_path, capsys, monkeypatch):
    """The thread count a run chose is kept on resume, unless this machine is too small for it."""
    import zoo.threads

    out = tmp_path / "run"
    code, output = cli(capsys, *train_args(out, "--epochs", "1", "--no-progress"))
    assert code == 0, output
    monkeypatch.setattr(zoo.threads, "max_threads", lambda: 0)  # every count is too many here
    code, output = cli(capsys, "train", "--resume", str(out), "--epochs", "2", "--no-progress")
    assert code == 0, output


def test_threads_100000_subprocess_is_one_line_and_leaves_no_lock(tiny_dir, tmp_path):
    """The real process, as a user runs it: no segfault (exit 139), no .zoo.lock left behind."""
    out = tmp_path / "run"
    proc = subprocess.run(
        zoo_command(*train_args(out, "--threads", "100000", "--max-steps", "1")),
        env=tiny_env(tiny_dir),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert_user_error(proc.returncode, proc.stdout + proc.stderr, "--threads")
    assert proc.returncode == 1
    assert not out.exists()


# -- zoo eval: bounded K, outputs checked before the work ------------------------------------


def test_eval_iw_samples_beyond_the_bound_is_refused_up_front(tiny, tmp_path, capsys, monkeypatch):
    import zoo.evaluate

    def never(*args, **kwargs):
        raise AssertionError("the estimate started")

    monkeypatch.setattr(zoo.evaluate, "importance_weighted", never)
    ckpt = tiny_checkpoint(tmp_path / "model.pt")
    code, output = cli(
        capsys, "eval", str(ckpt), "--iw-samples", "10000000000", "--no-fid", "--out", str(tmp_path / "ev")
    )
    assert_user_error(code, output, "--iw-samples", str(zoo.evaluate.MAX_IW_SAMPLES))
    with pytest.raises(ValueError, match="--iw-samples"):
        zoo.evaluate.evaluate(ckpt, iw_samples=10**10, fid=False, out=tmp_path / "ev")
    assert not (tmp_path / "ev").exists()


@pytest.mark.parametrize("where", ["under-a-file", "metrics-is-a-folder", "read-only"])
def test_eval_out_that_cannot_be_written_fails_before_the_estimate(tiny, tmp_path, capsys, monkeypatch, where):
    import zoo.evaluate
    from zoo.errors import ZooError

    calls = []
    real = zoo.evaluate.importance_weighted

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(zoo.evaluate, "importance_weighted", counted)
    ckpt = tiny_checkpoint(tmp_path / "model.pt")
    if where == "under-a-file":
        (tmp_path / "file").write_text("mine")
        out = tmp_path / "file" / "ev"
    elif where == "metrics-is-a-folder":
        out = tmp_path / "ev"
        (out / "metrics.json").mkdir(parents=True)
    else:
        out = tmp_path / "ev"
        out.mkdir()
        # root ignores permission bits: make the folder read-only with an immutable temporary instead
        monkeypatch.setattr(
            "tempfile.NamedTemporaryFile",
            lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied")),
        )
    code, output = cli(capsys, "eval", str(ckpt), "--iw-samples", "2", "--no-fid", "--limit", "10", "--out", str(out))
    assert_user_error(code, output, str(out))
    assert calls == [], "the estimate ran before the output was checked"
    assert not (tmp_path / "file").is_file() or (tmp_path / "file").read_text() == "mine"
    monkeypatch.undo()
    # a new folder is still made, and removed again when the evaluation fails after the check

    def failing(*args, **kwargs):
        raise ZooError("the estimate failed")

    monkeypatch.setattr(zoo.evaluate, "importance_weighted", failing)
    code, output = cli(capsys, "eval", str(ckpt), "--no-fid", "--limit", "10", "--out", str(tmp_path / "b"))
    assert_user_error(code, output, "the estimate failed")
    assert not (tmp_path / "b").exists()
    monkeypatch.undo()
    out = tmp_path / "a" / "ev"
    code, output = cli(capsys, "eval", str(ckpt), "--iw-samples", "2", "--no-fid", "--limit", "10", "--out", str(out))
    assert code == 0, output
    assert json.loads((out / "metrics.json").read_text())["iw_samples"] == 2


# -- the Python API: the same one-line errors, typed -----------------------------------------


@pytest.mark.parametrize(
    "options, kind, needle",
    [
        ({"out": 123}, TypeError, "out must be a folder path"),
        ({"data_dir": 123}, TypeError, "data_dir must be a folder path"),
        ({"overrides": [1]}, TypeError, "overrides must be a dict"),
        ({"out": ""}, ValueError, "--out is empty"),
        ({"out": "  "}, ValueError, "--out is empty"),
    ],
)
def test_api_arguments_are_typed_one_line_errors(tiny, tmp_path, monkeypatch, options, kind, needle):
    import zoo
    from zoo.errors import ZooError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(kind, match=re.escape(needle)) as raised:
        zoo.Trainer("tiny-vae", device="cpu", **options)
    assert isinstance(raised.value, ZooError)
    assert "\n" not in str(raised.value)
    assert list(tmp_path.iterdir()) == [], "a refused Trainer left files behind"


@pytest.mark.parametrize("run, kind", [(None, TypeError), (123, TypeError), ("", ValueError)])
def test_api_resume_of_no_path_is_a_typed_error(tiny, run, kind):
    import zoo
    from zoo.errors import ZooError

    with pytest.raises(kind, match="run directory") as raised:
        zoo.Trainer.resume(run)
    assert isinstance(raised.value, ZooError)


@pytest.mark.parametrize("spec, kind", [(None, TypeError), (123, TypeError), ("gpu9", ValueError)])
def test_resolve_device_gives_typed_zoo_errors(spec, kind):
    from zoo.devices import resolve_device
    from zoo.errors import ZooError

    with pytest.raises(kind) as raised:
        resolve_device(spec)
    assert isinstance(raised.value, ZooError) and "device" in str(raised.value)


def test_out_empty_on_the_command_line_trains_nowhere(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, output = cli(capsys, "train", "tiny-vae", "--device", "cpu", "--max-steps", "1", "--out", "")
    assert_user_error(code, output, "--out is empty")
    assert list(tmp_path.iterdir()) == []


# -- stops, kills and leftovers ----------------------------------------------------------------


def test_fit_twice_is_refused_and_leaves_the_run_intact(tiny, tmp_path, capsys):
    import zoo
    from zoo.errors import ZooError

    out = tmp_path / "run"
    trainer = zoo.Trainer("tiny-vae", overrides={"epochs": 1}, device="cpu", out=out, progress=False)
    trainer.fit()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ZooError, match="already run fit") as raised:
        trainer.fit()
    assert "\n" not in str(raised.value)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not (out / ".zoo.lock").exists()
    # the run is still whole: it resumes
    zoo.Trainer.resume(out, epochs=2, progress=False).fit()
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_resume_removes_temporaries_left_by_a_kill_during_a_checkpoint_write(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    code, output = cli(capsys, *train_args(out, "--epochs", "1", "--no-progress"))
    assert code == 0, output
    left = [
        out / "checkpoints" / ".best.pt.k1ll3d.tmp",
        out / "checkpoints" / ".last.pt.ab_12.tmp",
        out / ".metrics.jsonl.x.tmp",
    ]
    for path in left:
        path.write_bytes(b"half a checkpoint")
    mine = out / "checkpoints" / "notes.tmp"  # not a zoo temporary: kept
    mine.write_text("mine")
    code, output = cli(capsys, "train", "--resume", str(out), "--epochs", "2", "--no-progress")
    assert code == 0, output
    assert not [p for p in left if p.exists()], "temporaries survived a successful resume"
    assert mine.read_text() == "mine"


def _wait_for_line(proc: subprocess.Popen, log: Path, pattern: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, log.read_text()):
        assert proc.poll() is None, f"the run ended first:\n{log.read_text()}"
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


@pytest.mark.slow  # trains in a subprocess, then resumes it
def test_sigterm_stops_cleanly_releases_the_lock_and_the_run_resumes(tiny_dir, tmp_path):
    out = tmp_path / "run"
    env = tiny_env(tiny_dir, TINY_STEP_SECONDS="0.02")
    log = tmp_path / "log.txt"
    proc = subprocess.Popen(
        zoo_command(*train_args(out, "--epochs", "8", "--no-progress")),
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for_line(proc, log, r"epoch 1/8:")
        assert (out / ".zoo.lock").exists()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        kill_tree(proc)
    output = log.read_text()
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert "Traceback" not in output and "Terminated" in output, output
    assert not (out / ".zoo.lock").exists(), "SIGTERM left the lock file"
    assert not list(out.rglob(".*.tmp"))
    resumed = subprocess.run(
        zoo_command("train", "--resume", str(out), "--epochs", "3", "--no-progress"),
        env=tiny_env(tiny_dir),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]


def test_sigterm_before_anything_was_written_removes_the_folder_it_made(tiny, tmp_path):
    """In-process: the handler is installed while the lock is held and restored after; a SIGTERM
    while the run starts leaves no empty folder and no lock."""
    import zoo
    from zoo.rundir import RunTerminated

    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "new" / "run"
    trainer = zoo.Trainer("tiny-vae", device="cpu", max_steps=2, out=out, progress=False)
    assert signal.getsignal(signal.SIGTERM) is not before
    real_build = trainer._build

    def build_then_sigterm():
        os.kill(os.getpid(), signal.SIGTERM)
        real_build()

    trainer._build = build_then_sigterm
    with pytest.raises(RunTerminated):
        trainer.fit()
    assert signal.getsignal(signal.SIGTERM) is before
    assert not out.exists()


# -- TensorBoard: a convenience that never fails a run ---------------------------------------


def test_tensorboard_write_failure_is_one_warning_and_the_run_goes_on(tiny, tmp_path, capsys, monkeypatch):
    pytest.importorskip("tensorboard")
    import errno

    from tensorboard.summary.writer import record_writer

    def full_disk(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(record_writer.RecordWriter, "write", full_disk)
    out = tmp_path / "run"
    code, output = cli(capsys, *train_args(out, "--epochs", "2", "--no-progress"))
    assert code == 0, output
    assert "Traceback" not in output and "Exception in thread" not in output, output
    warnings = [line for line in output.splitlines() if "TensorBoard" in line]
    assert len(warnings) == 1 and "No space left on device" in warnings[0], output
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2]


def test_non_utf8_out_trains_without_tensorboard_and_no_unicode_error(tiny, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    out = tmp_path / os.fsdecode(b"run-\xff")
    code, output = cli(capsys, *train_args(out, "--max-steps", "2", "--no-progress"))
    assert code == 0, output
    assert "UnicodeEncodeError" not in output and "Traceback" not in output, output
    assert "UTF-8" in output
    assert (out / "checkpoints" / "last.pt").is_file() and not (out / ".zoo.lock").exists()


def test_reliability_doc_names_every_test_here():
    doc = (ROOT / "docs" / "reliability.md").read_text()
    named = set(re.findall(r"tests/test_reliability_cli\.py::(\w+)", doc))
    defined = {name for name in globals() if name.startswith("test_")}
    assert named <= defined, f"docs name missing tests: {sorted(named - defined)}"
    missing = defined - named - {"test_reliability_doc_names_every_test_here"}
    assert not missing, f"tests not described in docs/reliability.md: {sorted(missing)}"


@pytest.mark.parametrize(
    "path, device, kind",
    [(None, "cpu", TypeError), (123, "cpu", TypeError), ("", "cpu", TypeError), ("RUN", "gpu9", ValueError)],
)
def test_load_gives_typed_one_line_errors(tmp_path, path, device, kind):
    import zoo
    from zoo.errors import ZooError

    if path == "RUN":
        path = tmp_path  # never read: the device is refused first
    with pytest.raises(kind) as raised:
        zoo.load(path, device=device)
    assert isinstance(raised.value, ZooError) and "\n" not in str(raised.value)
