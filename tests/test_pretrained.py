"""The pretrained index and the weights shipped in ``weights/``: ``zoo.create(ID, pretrained=True)``
loads them offline, checked by SHA-256, and ``zoo eval`` reproduces the figure each card states.

The fast set checks each shipped model's quick figure (few images, small K, recorded in the
index); the slow set reruns the card's own evaluation (its K, all its images, seed 0).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from conftest import DATA_ROOT, requires_data
from helpers_cli import run_zoo
from helpers_hub import COMMIT, hub_cache, offline_hub
from test_sharing import one_error, same_outputs, untrained_checkpoint

import zoo
from zoo.errors import ZooError
from zoo.exported import CARD, CONFIG, WEIGHTS, read_config, sha256_of
from zoo.model_card import render_card

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS_DIR = ROOT / "weights"
#: The models whose weights are committed under weights/ and named by their recipe's index.
SHIPPED = ["iwae-burda-mnist", "vae-burda-mnist", "vae-conv-mnist", "vamp-mlp-binarized-mnist"]


def test_the_index_names_exactly_the_shipped_weights():
    from zoo.pretrained import with_weights

    assert sorted(with_weights()) == sorted(SHIPPED)
    assert sorted(p.name for p in WEIGHTS_DIR.iterdir() if p.is_dir()) == sorted(SHIPPED)
    total = sum(p.stat().st_size for p in WEIGHTS_DIR.rglob("*") if p.is_file())
    assert total < 12_000_000, f"weights/ holds {total / 1e6:.1f} MB"


@pytest.mark.parametrize("model_id", SHIPPED)
def test_a_shipped_model_matches_its_index_and_loads_offline(model_id, monkeypatch, tmp_path):
    from safetensors import safe_open

    folder = WEIGHTS_DIR / model_id
    entry = zoo.get_recipe(model_id).pretrained
    assert sha256_of(folder / WEIGHTS) == entry["sha256"]
    config = read_config(folder)
    assert config["model"] == model_id and config["weights"]["sha256"] == entry["sha256"]
    assert entry["metrics"]["test_nll_iw"] == round(config["metrics"]["test_nll_iw"], 2)
    assert entry["metrics"]["epochs"] == config["training"]["epochs"]
    with safe_open(folder / WEIGHTS, "pt") as f:
        names = f.keys()  # a safetensors file handle, not a dict
        assert {f.get_slice(k).get_dtype() for k in names} == {"F32"}
    card = (folder / CARD).read_text()
    assert card == render_card(config)  # the card is what zoo generates from the config beside it
    if zoo.get_recipe(model_id).reference:  # a paper's figure beside the measured one, and its citation
        assert f"| {zoo.get_recipe(model_id).reference['test_nll']} |" in card and "```bibtex\n@" in card
    assert f"**{config['metrics']['test_nll_iw']:.2f}**" in card and f"{config['training']['epochs']} epochs" in card
    # offline: no network is needed, and none is tried
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    same_outputs(zoo.create(model_id, pretrained=True).eval(), zoo.load(folder))


@requires_data
@pytest.mark.parametrize("model_id", SHIPPED)
def test_zoo_eval_reproduces_a_shipped_models_quick_figure(model_id, tmp_path):
    from zoo.evaluate import evaluate

    quick = zoo.get_recipe(model_id).pretrained["metrics"]["quick"]
    result = evaluate(
        WEIGHTS_DIR / model_id,
        iw_samples=quick["iw_samples"],
        limit=quick["n_images"],
        seed=quick["seed"],
        data_dir=DATA_ROOT,
        device="cpu",
        fid=False,
        images=False,
        out=tmp_path / "eval",
        progress=False,
    )
    assert result["test_nll_iw"] == pytest.approx(quick["test_nll_iw"], abs=0.01)


@pytest.mark.slow  # the card's own evaluation: K=1000 on the whole test set, minutes per model on a CPU
@requires_data
@pytest.mark.parametrize("model_id", SHIPPED)
def test_zoo_eval_reproduces_the_figure_a_shipped_card_states(model_id, tmp_path, capsys, monkeypatch):
    metrics = read_config(WEIGHTS_DIR / model_id)["metrics"]
    monkeypatch.chdir(tmp_path)
    args = ["eval", WEIGHTS_DIR / model_id, "--iw-samples", metrics["iw_samples"], "--seed", metrics["seed"]]
    args += ["--no-fid", "--json", "--data-dir", DATA_ROOT, "--limit", metrics["n_images"]]
    code, out, err = run_zoo(capsys, *args)
    assert code == 0, err
    assert round(json.loads(out)["test_nll_iw"], 2) == pytest.approx(round(metrics["test_nll_iw"], 2), abs=0.011)


def test_zoo_info_shows_the_pretrained_weights(capsys):
    code, out, err = run_zoo(capsys, "info", "vamp-mlp-binarized-mnist")
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.strip().startswith("pretrained:"))
    entry = zoo.get_recipe("vamp-mlp-binarized-mnist").pretrained
    assert "pretrained=True" in line and entry["sha256"][:12] in line and str(entry["metrics"]["test_nll_iw"]) in line


# -- the index's rules, with a model of our own --------------------------------------------------


@pytest.fixture
def published(tmp_path, monkeypatch):
    """An export of an untrained vae-conv-mnist in an offline Hub cache as owner/vae, no local
    weights root, and the recipe with an index naming it: (recipe, folder)."""
    from zoo.export import export_run

    folder = export_run(untrained_checkpoint(tmp_path / "m.pt"), tmp_path / "export", scoring=None)
    offline_hub(monkeypatch, hub_cache(tmp_path / "hub", folder, "owner/vae"))
    monkeypatch.setenv("ZOO_WEIGHTS", str(tmp_path / "no-weights-here"))
    entry = {"sha256": sha256_of(folder / WEIGHTS), "repo": "owner/vae", "revision": COMMIT}
    return dataclasses.replace(zoo.get_recipe("vae-conv-mnist"), pretrained=entry), folder


def test_published_weights_come_from_the_hub_cache(published):
    from zoo.composition import from_recipe
    from zoo.pretrained import load_pretrained, pretrained_folder

    recipe, folder = published
    assert pretrained_folder(recipe).parent.name == "snapshots"
    model = from_recipe(recipe)
    load_pretrained(model, recipe)
    same_outputs(model.eval(), zoo.load(folder))


def test_weights_that_are_not_the_indexed_file_are_refused(published):
    from zoo.pretrained import pretrained_folder

    recipe, _ = published
    wrong = dataclasses.replace(recipe, pretrained={**recipe.pretrained, "sha256": "0" * 64})
    with pytest.raises(ZooError, match="is not the file the pretrained index of vae-conv-mnist names"):
        pretrained_folder(wrong)
    missing = dataclasses.replace(recipe, pretrained={**recipe.pretrained, "revision": "v2"})
    with pytest.raises(ZooError, match="revision 'v2'"):
        pretrained_folder(missing)


def test_a_model_without_weights_says_which_have_them():
    with pytest.raises(ZooError, match="iwae-burda2-mnist has no published weights.*vamp-mlp-binarized-mnist"):
        zoo.create("iwae-burda2-mnist", pretrained=True)


def test_overrides_that_change_the_model_name_the_first_differing_tensor():
    with pytest.raises(ZooError, match=r"tensor 'encoder\.[\w.]+'"):
        zoo.create("vae-conv-mnist", pretrained=True, **{"encoder.channels": 8})
    assert zoo.get_recipe("vae-conv-mnist").with_overrides({"latent_size": 8}).pretrained == {}
    assert zoo.get_recipe("vae-conv-mnist").with_overrides({"epochs": 3}).pretrained


@pytest.mark.parametrize(
    "entry, needle",
    [
        ({"sha256": "abc"}, "sha256 must be"),
        ({"sha256": "0" * 64, "repo": "../x"}, "not a Hub repository id"),
        ({"sha256": "0" * 64, "revision": "main"}, "revision is given without repo"),
        ({"sha256": "0" * 64, "repo": "a/b", "revision": "../x"}, "not a branch"),
        ({"sha256": "0" * 64, "url": "x"}, "unknown key 'url'"),
    ],
)
def test_a_bad_index_is_refused_when_the_recipe_is_made(entry, needle):
    with pytest.raises(ZooError, match=needle):
        dataclasses.replace(zoo.get_recipe("vae-conv-mnist"), pretrained=entry)


def test_a_hub_name_in_the_cli_loads_from_the_cache(published, capsys, tmp_path):
    _, folder = published
    code, out, err = run_zoo(capsys, "sample", "hf://owner/vae@main", "--n", 4, "--out", tmp_path / "s.png")
    assert code == 0 and (tmp_path / "s.png").is_file(), err
    code, out, err = run_zoo(capsys, "sample", "hf://owner/vae@nope", "--out", tmp_path / "t.png")
    one_error(code, out, err, "revision 'nope'")
    assert not (tmp_path / "t.png").exists() and (folder / CONFIG).is_file()
