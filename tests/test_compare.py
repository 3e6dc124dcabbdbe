"""zoo compare: a table of runs from their config and metrics, and a plot of their learning curves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers_cli import run_zoo as run


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A beta sweep written the way a user would, as three runs of one model (trained once for the
    module: the tests only read these runs; one that writes into a run works on its own copy)."""
    from helpers_spanning import _plugin

    from zoo import plugins
    from zoo.cli import main

    root = tmp_path_factory.mktemp("sweep")
    registry, pm = plugins.build(plugins=[("spanning", _plugin())])
    assert registry.plugins["spanning"].error is None, registry.plugins["spanning"].error
    runs = []
    with plugins.using(registry, pm), pytest.MonkeyPatch.context() as mp:
        mp.setattr("zoo.threads._cpu_ticks", lambda: None)  # as conftest's autouse fixture does for each test
        for beta in (1, 2, 4):
            out = root / f"beta{beta}"
            args = [
                "train",
                "tiny-vamp",
                "--device",
                "cpu",
                "--epochs",
                "2",
                "--out",
                str(out),
                "--set",
                "objective=elbo",
                "--set",
                f"beta={beta}",
                "--no-progress",
            ]
            try:
                main(args)
            except SystemExit as exc:
                assert exc.code in (0, None), f"zoo {' '.join(args)} exited with {exc.code}"
            runs.append(out)
    return runs


def test_compare_prints_one_row_per_run(span, sweep, capsys):
    code, out, err = run(capsys, "compare", *sweep)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["run", "model", "objective", "test", "epochs"]
    rows = lines[2:]
    assert len(rows) == 3
    for row, beta in zip(rows, (1, 2, 4)):
        assert "tiny-vamp" in row and f"elbo(beta={beta})" in row
        assert row.split()[3:5] == ["-ELBO", "2"]  # what the test loss is; epochs
    data = json.loads(run(capsys, "compare", *sweep, "--json")[1])
    for entry, path in zip(data, sweep):
        history = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
        assert entry["last_neg_elbo"] == pytest.approx(history[-1]["test_loss"])
        assert entry["best_neg_elbo"] == pytest.approx(min(r["test_loss"] for r in history))
        assert entry["iw_nll"] is None and entry["seconds_per_epoch"] > 0
        assert entry["test_measure"] == "-ELBO"


def test_compare_shows_the_iw_nll_once_zoo_eval_has_scored_a_run(span, sweep, tmp_path, capsys):
    sweep = [Path(shutil.copytree(run_dir, tmp_path / run_dir.name)) for run_dir in sweep]  # zoo eval writes into it
    code, _, err = run(capsys, "eval", sweep[0], "--iw-samples", "5", "--limit", "20", "--no-fid", "--device", "cpu")
    assert code == 0, err
    scored = json.loads((sweep[0] / "eval" / "metrics.json").read_text())
    data = json.loads(run(capsys, "compare", *sweep, "--json")[1])
    assert data[0]["iw_nll"] == pytest.approx(scored["test_nll_iw"]) and data[0]["iw_samples"] == 5
    assert data[1]["iw_nll"] is None


def test_compare_plots_the_learning_curves(span, sweep, tmp_path, capsys):
    from PIL import Image

    png = tmp_path / "curves.png"
    code, _, err = run(capsys, "compare", *sweep, "--plot", png)
    assert code == 0, err
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] >= 600 and image.size[1] >= 400
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 10  # lines, text, a legend: not blank


def test_compare_errors(span, sweep, tmp_path, capsys):
    code, _, err = run(capsys, "compare", sweep[0], tmp_path / "nothing")
    assert code == 1 and "does not exist" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "compare", tmp_path / "empty")
    assert code == 1 and "is not a zoo run" in err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    code, _, err = run(capsys, "compare", tmp_path / "bad")
    assert code == 1 and "not valid JSON" in err
    code, _, err = run(capsys, "compare", sweep[0], "--plot", tmp_path)
    assert code != 0
    code, _, err = run(capsys, "compare", sweep[0], "--plot", tmp_path / "x.png", "--metric", "nosuch")
    assert code == 1 and "no run has a finite 'nosuch'" in err


def test_runs_write_tensorboard_event_files(span, sweep):
    pytest.importorskip("tensorboard", reason="the optional tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = sweep[0] / "tensorboard"
    events = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"test/loss", "test/recon", "test/kl", "train/loss", "train/kl"} <= set(tags["scalars"])
    assert {"samples", "reconstructions"} <= set(tags["images"])
    history = [json.loads(line) for line in (sweep[0] / "metrics.jsonl").read_text().splitlines()]
    logged = [(e.step, e.value) for e in events.Scalars("test/loss")]
    assert [step for step, _ in logged] == [1, 2]
    assert [value for _, value in logged] == pytest.approx([row["test_loss"] for row in history])


def test_without_tensorboard_nothing_changes(span, tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard") or name.startswith("tensorboard"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    code, _, err = run(capsys, "train", "tiny-vamp", "--device", "cpu", "--out", tmp_path / "r", "--no-progress")
    assert code == 0, err
    assert not (tmp_path / "r" / "tensorboard").exists()
    assert "warning" not in err.lower() and "error" not in err.lower()
