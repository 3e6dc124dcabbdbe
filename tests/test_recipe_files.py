"""Recipe files: `zoo train FILE.toml` and `zoo info MODEL --toml`."""

from __future__ import annotations

import json

import pytest
import tomllib
from helpers_cli import run_zoo as run

import zoo
from zoo.recipe import recipe_from_mapping, recipe_to_toml

TWO_PLUGINS = """\
# encoder from the vamp plugin, decoder from the iwae plugin, prior from aevb
id = "mixed-tiny"
dataset = "spanning-tiny"
latent_size = 4

[encoder]
id = "gated-mlp"
hidden = 16

[decoder]
id = "burda-mlp"
hidden = 16

[prior]
id = "standard-normal"

[likelihood]
id = "bernoulli"

[objective]
id = "iwae"
samples = 2

[training]
epochs = 1
batch_size = 50
"""


def test_every_registered_recipe_round_trips_through_toml():
    for model_id in zoo.list_models():
        recipe = zoo.get_recipe(model_id)
        assert recipe_from_mapping(tomllib.loads(recipe_to_toml(recipe))) == recipe, model_id


def test_zoo_info_toml_prints_a_recipe_file(capsys):
    code, out, _ = run(capsys, "info", "iwae-burda2-mnist", "--toml")
    assert code == 0 and out.endswith("\n")
    data = tomllib.loads(out)
    assert data["encoder"] == {"id": "burda-mlp", "layers": [100, 50]}
    assert data["objective"] == {"id": "iwae", "samples": 50}
    assert data["reference"]["test_nll"] == 82.9


def test_a_recipe_file_from_two_plugins_trains_resumes_and_evaluates(span, tmp_path, capsys):
    from zoo.evaluate import evaluate

    path = tmp_path / "mixed.toml"
    path.write_text(TWO_PLUGINS)
    run_dir = tmp_path / "run"
    code, _, err = run(capsys, "train", path, "--device", "cpu", "--out", run_dir, "--no-progress")
    assert code == 0, err
    config = json.loads((run_dir / "config.json").read_text())
    assert config["recipe"]["encoder"] == "gated-mlp" and config["recipe"]["decoder"] == "burda-mlp"
    assert config["recipe"]["objective_options"] == {"samples": 2}
    # Nothing but the run directory is needed from here on: the file may be gone.
    path.unlink()
    code, _, err = run(capsys, "train", "--resume", run_dir, "--epochs", "2", "--no-progress")
    assert code == 0, err
    assert [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    model = zoo.load(run_dir)
    assert model.spec["components"]["encoder"]["plugin"] == "vamp"
    assert model.spec["components"]["decoder"]["plugin"] == "iwae"
    result = evaluate(run_dir, iw_samples=5, device="cpu", fid=False, limit=20)
    assert result["test_nll_iw"] == pytest.approx(result["test_nll_iw"])


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (lambda t: t.replace("latent_size = 4", 'latent_size = "four"'), ["latent_size must be a positive integer"]),
        (lambda t: t.replace('[encoder]\nid = "gated-mlp"', "[encoder]"), ["[encoder] needs id"]),
        (lambda t: t + '\ncolour = "red"\n', ["unknown training setting 'colour'"]),  # it lands in [training]
        (lambda t: 'colour = "red"\n' + t, ["unknown key 'colour'"]),
        (
            lambda t: t.replace("epochs = 1", "epochs = 0\nspeed = 3"),
            ["training.epochs must be at least 1", "unknown training setting 'speed'"],
        ),
        (lambda t: t.replace("hidden = 16\n\n[decoder]", "hidden = 1.5\n\n[decoder]"), ["option hidden expects int"]),
        (lambda t: t.replace("samples = 2", "k = 2"), ["objective 'iwae' has no option 'k'"]),
        (
            lambda t: t.replace('id = "gated-mlp"', 'id = "gated-mpl"'),
            ["unknown encoder 'gated-mpl'", "did you mean 'gated-mlp'"],
        ),
        (lambda t: t.replace("[decoder]", "[decoder"), ["invalid TOML"]),
    ],
)
def test_recipe_file_mistakes_are_one_line_errors_before_anything_is_created(span, tmp_path, capsys, edit, needles):
    path = tmp_path / "bad.toml"
    path.write_text(edit(TWO_PLUGINS))
    out = tmp_path / "run"
    code, _, err = run(capsys, "train", path, "--device", "cpu", "--out", out)
    assert code == 1 and err.startswith("Error: ") and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    assert not out.exists()


def test_missing_and_odd_recipe_files(tmp_path, capsys):
    code, _, err = run(capsys, "train", tmp_path / "nope.toml")
    assert code == 1 and "does not exist" in err and "zoo info MODEL --toml" in err
    (tmp_path / "dir.toml").mkdir()
    code, _, err = run(capsys, "train", tmp_path / "dir.toml")
    assert code == 1 and "not a regular file" in err
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00garbage")
    code, _, err = run(capsys, "train", tmp_path / "bin.toml")
    assert code == 1 and err.startswith("Error: ") and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "info", "gated-mlp", "--toml")
    assert code == 1 and "is a component, not a model" in err
