"""The benchmark scripts still run, through the same code paths the figures in docs/benchmarks.md
came from (timings themselves are not tested: the machine is shared and noisy)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import requires_data

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@requires_data
def test_epoch_time_reports_the_first_epoch_with_start_up(data_root, tmp_path):
    """One zoo epoch on real MNIST: the row has a finite test loss, and 'to epoch 1' (the command's
    start to its epoch 1 line) lies between the epoch itself and the whole command."""
    out = tmp_path / "epoch.json"
    # Without OMP_NUM_THREADS, as the script means zoo to run: zoo chooses its thread count itself (two
    # threads fixed beside other work on a 2-core machine made this epoch ten times slower).
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "epoch_time.py"),
            "--data-dir",
            str(data_root),
            "--epochs",
            "1",
            "--skip-seed",
            "--skip-pythae",
            "--json-out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["system"] == "zoo" and 100 < row["test_loss"] < 200
    assert row["first_epoch_s"] < row["to_epoch_1_s"] < row["command_s"]
    assert "to epoch 1 s" in proc.stdout


def test_gpu_check_script_parses_and_refuses_an_unknown_mode(tmp_path):
    script = ROOT / "bench" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    (tmp_path / ".gpu-data").mkdir()
    proc = subprocess.run(
        ["bash", str(script), "nonsense"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=dict(os.environ, OUT=str(tmp_path / "out")),
        timeout=60,
    )
    assert (
        proc.returncode == 2
        and "usage: bench/gpu_check.sh all | bench|startup|test|resume|variants|cpu ..." in proc.stderr
    )
    proc = subprocess.run(
        ["bash", str(script), "test"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=dict(os.environ, OUT=str(tmp_path / "out"), ZOO_GPU_DATA="missing"),
        timeout=60,
    )
    assert proc.returncode == 2 and "no missing folder" in proc.stderr


@pytest.mark.slow
def test_resume_check_finds_a_cpu_resume_bit_identical(tmp_path):
    """bench/resume_check.py (the GPU check of bit-exact resumption) on the tiny plugin."""
    from helpers_tiny import tiny_env, write_tiny_plugin

    env = tiny_env(write_tiny_plugin(tmp_path / "plugin"), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "resume_check.py"),
            "--recipe",
            "tiny-vae",
            "--device",
            "cpu",
            "--modes",
            "default,off,deterministic",
            "--rerun",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 3, proc.stdout
    for line, mode in zip(lines, ("default", "off", "deterministic")):
        assert re.fullmatch(
            rf"resume on cpu \({mode}\): bit-identical \(straight run: \d+\.\d\d, \d+\.\d\d s/epoch\)"
            r"; rerun: bit-identical",
            line,
        ), line


def test_resume_check_names_what_differs():
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("resume_check", ROOT / "bench" / "resume_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    a = {"model": {"w": torch.ones(3), "b": torch.zeros(2)}, "optimizer": {"state": {0: {"step": torch.tensor(4.0)}}}}
    b = {
        "model": {"w": torch.tensor([1.0, 1.5, 1.0]), "b": torch.zeros(2)},
        "optimizer": {"state": {0: {"step": torch.tensor(4.0)}}},
    }
    assert module.compare(a, a) == []
    assert module.compare(a, b) == [(".model.w", 0.5)]
    b["model"]["extra"] = torch.zeros(1)
    assert (".model.extra", float("inf")) in module.compare(a, b)
    for bad in ("bogus", "", "default,fast"):  # --modes names the modes it takes
        with pytest.raises(SystemExit) as exit_info:
            module.main(["--modes", bad])
        assert exit_info.value.code == 2


@requires_data
def test_export_families_exports_runs_and_prints_their_index_entries(data_root, tmp_path, capsys):
    """bench/export_families.py: each run exported under OUT/<model id> with its card, and the
    index entry printed (the file's SHA-256, the card's figure and the quick one)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import export_families
    finally:
        sys.path.remove(str(ROOT / "bench"))
    from test_sharing import untrained_checkpoint

    from zoo.exported import read_config, sha256_of

    checkpoint = untrained_checkpoint(tmp_path / "model.pt")
    args = [str(checkpoint), "--out", str(tmp_path / "weights"), "--data-dir", str(data_root), "--iw-samples", "3"]
    args += ["--limit", "12", "--quick-samples", "2", "--quick-limit", "10", "--threads", "1"]
    assert export_families.main(args) == 0
    out = capsys.readouterr().out
    entries = json.loads(out[out.index("{") :])
    folder = tmp_path / "weights" / "vae-conv-mnist"
    entry = entries["vae-conv-mnist"]
    assert entry["sha256"] == sha256_of(folder / "model.safetensors")
    config = read_config(folder)
    assert entry["metrics"]["test_nll_iw"] == round(config["metrics"]["test_nll_iw"], 2)
    assert entry["metrics"]["iw_samples"] == 3 and entry["metrics"]["n_images"] == 12
    assert entry["metrics"]["quick"]["iw_samples"] == 2 and entry["metrics"]["quick"]["n_images"] == 10
    assert sorted(p.name for p in (tmp_path / "weights").iterdir()) == ["vae-conv-mnist"]  # no scratch left


@pytest.mark.parametrize("recipe", ["vae-conv-mnist", "ae-conv-mnist", "wae-mmd-conv-mnist"])
def test_pythae_families_plain_networks_compute_the_zoo_networks_function(recipe):
    """bench/pythae_families.py gives pythae the zoo networks' layers as plain nn.Sequential stacks:
    the same function as the zoo components (which compute some layers another way on the CPU)."""
    pytest.importorskip("pythae", reason="pythae is not installed (pip install --no-deps 'pythae==0.1.2')")
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import pythae_families
    finally:
        sys.path.remove(str(ROOT / "bench"))
    import torch

    import zoo

    torch.manual_seed(0)
    model = zoo.create(recipe)
    assert pythae_families.plain_networks_fit(model)
    x, z = torch.rand(5, 1, 28, 28), torch.randn(5, model.latent_size)
    outputs = []
    for plain in (True, False):
        encoder, decoder = pythae_families._wrap(model, (1, 28, 28), plain)
        encoded = encoder(x)
        codes = [encoded.embedding] + ([] if model.encoder.deterministic else [encoded.log_covariance])
        outputs.append([*codes, decoder(z).reconstruction])
    for got, expected in zip(*outputs):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
