"""``zoo train ID --max-steps N`` (``Trainer(max_steps=N)``): a few steps, an evaluation on a few
test batches and a complete run directory, in seconds."""

from __future__ import annotations

import json

import pytest
from test_trainer import cli, cli_error, read_metrics, tiny, tiny_site, tiny_zoo  # noqa: F401 - fixtures

from zoo.errors import ZooError
from zoo.trainer import QUICK_EVAL_BATCHES, Trainer

pytestmark = pytest.mark.usefixtures("tiny")


def test_max_steps_trains_that_many_steps_and_writes_a_whole_run(tmp_path, capsys):
    run = tmp_path / "look"
    cli("train", "tiny-vae", "--max-steps", "3", "--device", "cpu", "--no-progress", "--out", run)
    rows = read_metrics(run)
    assert len(rows) == 1 and rows[0]["epoch"] == 1
    # 3 steps of the recipe's batch of 50, whatever the size of the training set
    assert rows[0]["images_per_second"] * rows[0]["epoch_seconds"] == pytest.approx(150)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["best.pt", "last.pt"]
    assert (run / "samples" / "epoch-001.png").is_file() and (run / "reconstructions" / "epoch-001.png").is_file()
    assert json.loads((run / "config.json").read_text())["settings"]["max_steps"] == 3
    # a quick look is not resumed: it says how to train the model for real
    message = cli_error(capsys, "train", "--resume", run, "--epochs", "2")
    assert "quick look (--max-steps 3)" in message and "without --max-steps" in message


def test_a_quick_look_evaluates_a_few_test_batches_only(tmp_path, monkeypatch):
    import zoo.trainer

    assert QUICK_EVAL_BATCHES >= 1
    monkeypatch.setattr(zoo.trainer, "QUICK_EVAL_BATCHES", 1)
    trainer = Trainer("tiny-vae", out=tmp_path / "look", device="cpu", progress=False, max_steps=1)
    trainer.fit()
    seen = []
    real = trainer.test_data.eval_batches

    def counting(size):
        for x in real(size):
            seen.append(len(x))
            yield x

    trainer.test_data.eval_batches = counting
    trainer.evaluate()
    assert seen == [50] and len(trainer.test_data) == 100  # one batch of the training batch size, of 100 images


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "3"])
def test_bad_max_steps_is_one_line_and_writes_nothing(tmp_path, bad):
    with pytest.raises(ZooError, match="--max-steps must be a whole number of steps, at least 1"):
        Trainer("tiny-vae", out=tmp_path / "r", device="cpu", max_steps=bad)
    assert not (tmp_path / "r").exists()


def test_max_steps_with_resume_is_refused(tmp_path, capsys):
    cli("train", "tiny-vae", "--device", "cpu", "--no-progress", "--out", tmp_path / "run")
    message = cli_error(capsys, "train", "--resume", tmp_path / "run", "--max-steps", "2")
    assert "--max-steps cannot be given" in message


def test_fit_twice_is_one_error_and_leaves_the_run_as_it_was(tmp_path):
    trainer = Trainer("tiny-vae", out=tmp_path / "run", device="cpu", progress=False)
    trainer.fit()
    before = (tmp_path / "run" / "metrics.jsonl").read_bytes()
    with pytest.raises(ZooError, match="already run fit"):
        trainer.fit()
    assert (tmp_path / "run" / "metrics.jsonl").read_bytes() == before
