"""Sharing trained models: ``zoo export`` (safetensors, config.json, the model card), exported folders
and ``hf://`` names wherever a run is read (``zoo.load``, ``zoo eval``, ``zoo sample``,
``zoo train --init-from``), ``zoo push``, and the bad input of each.

The Hub is never reached: ``hf://`` names are read through huggingface_hub from a cache prepared in
its own layout (tests/helpers_hub.py) with ``HF_HUB_OFFLINE=1``, and ``zoo push`` is tested with
``huggingface_hub.HfApi``'s methods replaced by recorders.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import DATA_ROOT, requires_data
from helpers_cli import run_zoo
from helpers_hub import COMMIT, hub_cache, offline_hub

import zoo
from zoo.errors import ZooError
from zoo.export import Scoring, export_run
from zoo.exported import CONFIG, CURVE, FILES, WEIGHTS, read_config, sha256_of

SCORING = Scoring(iw_samples=5, limit=20, data_dir=DATA_ROOT)


def one_error(code: int, out: str, err: str, *needles: str) -> str:
    """A non-zero exit with exactly one line, ``Error: ...``, and no traceback; returns it."""
    assert code != 0, out + err
    assert "Traceback" not in err and err.strip().count("\n") == 0 and err.startswith("Error: "), err
    for needle in needles:
        assert needle.lower() in err.lower(), f"{needle!r} not in {err!r}"
    return err.strip()


def untrained_checkpoint(path: Path, model_id: str = "vae-conv-mnist") -> Path:
    """A training-like checkpoint of an untrained model (no data needed): spec, weights, epoch, history."""
    from zoo.checkpoint import save_checkpoint

    model = zoo.create(model_id)
    save_checkpoint(path, {"spec": model.spec, "model": model.state_dict(), "epoch": 0, "history": []})
    return path


def same_outputs(a, b) -> None:
    """Bit-identical weights and outputs (IW bound, reconstruction, samples) under the same seeds."""
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    x = torch.rand(6, *a.data_shape, generator=torch.Generator().manual_seed(3)).round()
    outputs = []
    for model in (a, b):
        torch.manual_seed(0)
        with torch.no_grad():
            outputs.append((model.iwae(x, samples=7), model.reconstruct(x), model.sample(5)))
    for left, right in zip(*outputs):
        assert torch.equal(left, right)


# -- the real recipes, trained for two steps and exported ---------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``vae-conv-mnist`` and ``vamp-mlp-binarized-mnist`` trained for 2 steps on real data and
    exported (scored with K=5 on 20 test images): {id: (run, folder)}."""
    if DATA_ROOT is None:
        pytest.skip("MNIST files not found: set ZOO_TEST_DATA")
    from zoo import plugins
    from zoo.trainer import Trainer

    root = tmp_path_factory.mktemp("sharing")
    made = {}
    plugins.reset()
    for model_id in ("vae-conv-mnist", "vamp-mlp-binarized-mnist"):
        run = root / "runs" / model_id
        Trainer(model_id, out=run, device="cpu", progress=False, max_steps=2, data_dir=DATA_ROOT).fit()
        made[model_id] = (run, export_run(run, root / "exported" / model_id, scoring=SCORING))
    plugins.reset()
    return made


@requires_data
@pytest.mark.parametrize("model_id", ["vae-conv-mnist", "vamp-mlp-binarized-mnist"])
def test_an_export_loads_bit_identical_to_its_run(exported, model_id, tmp_path, monkeypatch):
    run, folder = exported[model_id]
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    same_outputs(zoo.load(run), zoo.load(folder))
    # the same through huggingface_hub's cache, offline, by branch, by commit and by default
    offline_hub(monkeypatch, hub_cache(tmp_path / "hub", folder, "owner/name"))
    for name in ("hf://owner/name", f"hf://owner/name@{COMMIT}", "hf://owner/name@main"):
        same_outputs(zoo.load(run), zoo.load(name))


@requires_data
@pytest.mark.parametrize("model_id", ["vae-conv-mnist", "vamp-mlp-binarized-mnist"])
def test_the_config_records_what_built_the_model(exported, model_id):
    run, folder = exported[model_id]
    config = read_config(folder)
    assert config["model"] == model_id and config["recipe"]["id"] == model_id
    assert {c["plugin"] for c in config["spec"]["components"].values()} <= set(config["plugins"])
    assert all(v["version"] for v in config["plugins"].values())
    assert config["dataset"]["id"] == config["recipe"]["dataset"] and config["dataset"]["preprocessing"]
    assert config["weights"]["sha256"] == sha256_of(folder / WEIGHTS)
    assert config["training"]["command"] == f"zoo train {model_id} --max-steps 2"
    assert "/" not in json.dumps(config["training"]["command"])  # no machine paths
    assert config["metrics"]["iw_samples"] == 5 and config["metrics"]["n_images"] == 20
    # weights only: the file is safetensors, not a pickle
    assert (folder / WEIGHTS).read_bytes()[8:9] == b"{"


@requires_data
def test_zoo_eval_of_the_folder_gives_the_cards_figure(exported, tmp_path, capsys, monkeypatch):
    _, folder = exported["vamp-mlp-binarized-mnist"]
    monkeypatch.chdir(tmp_path)
    code, out, err = run_zoo(
        capsys, "eval", folder, "--iw-samples", 5, "--limit", 20, "--seed", 0, "--no-fid", "--json",
        "--data-dir", DATA_ROOT,
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["test_nll_iw"] == pytest.approx(read_config(folder)["metrics"]["test_nll_iw"], abs=1e-6)
    card = (folder / "README.md").read_text()
    assert f"**{read_config(folder)['metrics']['test_nll_iw']:.2f}**" in card
    # the results land beside, never inside the export (which stays as published)
    assert (tmp_path / f"{folder.name}-eval" / "metrics.json").is_file()
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)


@requires_data
@pytest.mark.parametrize("model_id", ["vae-conv-mnist", "vamp-mlp-binarized-mnist"])
def test_the_card_reads_as_a_hub_model_card(exported, model_id):
    from huggingface_hub import ModelCard

    _, folder = exported[model_id]
    card = ModelCard.load(folder / "README.md", ignore_metadata_errors=False)
    data = card.data
    assert data.library_name == "zoo" and data.license == "mit" and data.pipeline_tag
    assert data.datasets == ["ylecun/mnist"] and "vae" in data.tags and data.metrics == ["nll"]
    (result,) = data.eval_results
    metrics = read_config(folder)["metrics"]
    assert result.metric_value == round(metrics["test_nll_iw"], 2) and result.dataset_split == "test"
    assert "K=5" in result.metric_name and "20 images" in result.metric_name
    text = card.text
    for part in ("## Results", "## Training", "## How to use", "## Citation", "learning-curve.png", "samples.png"):
        assert part in text, part
    if model_id.startswith("vamp"):
        assert "85.57" in text and "@inproceedings" in text  # the paper's figure and its citation


@requires_data
def test_sample_and_init_from_take_an_export(exported, tmp_path, capsys):
    _, folder = exported["vae-conv-mnist"]
    code, out, err = run_zoo(capsys, "sample", folder, "--n", 4, "--out", tmp_path / "s.png")
    assert code == 0 and (tmp_path / "s.png").is_file(), err
    from zoo.plan import plan_run

    model, _ = plan_run("vae-conv-mnist", init_from=str(folder), device="cpu").build()
    same_outputs(model.eval(), zoo.load(folder))
    code, out, err = run_zoo(
        capsys, "train", "vae-conv-mnist", "--init-from", folder, "--max-steps", 1, "--device", "cpu",
        "--no-progress", "--data-dir", DATA_ROOT, "--out", tmp_path / "tuned",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads((tmp_path / "tuned" / "config.json").read_text())["settings"]["init_from"] == str(folder)
    # weights of another architecture: the first differing tensor is named, no run is started
    _, vamp = exported["vamp-mlp-binarized-mnist"]
    code, out, err = run_zoo(
        capsys, "train", "vae-conv-mnist", "--init-from", vamp, "--out", tmp_path / "bad", "--device", "cpu"
    )
    one_error(code, out, err, "init-from", "tensor 'encoder.")
    assert not (tmp_path / "bad").exists()
    code, out, err = run_zoo(capsys, "train", "--resume", tmp_path / "tuned", "--init-from", folder)
    one_error(code, out, err, "--init-from")


# -- bad input ----------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path) -> Path:
    """An export (not scored) of an untrained vae-conv-mnist."""
    return export_run(untrained_checkpoint(tmp_path / "model.pt"), tmp_path / "export", scoring=None)


def test_an_existing_export_folder_is_refused_without_overwrite(folder, tmp_path, capsys):
    (folder / "NOTES.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    code, out, err = run_zoo(capsys, "export", tmp_path / "model.pt", folder, "--no-eval")
    one_error(code, out, err, "exists", "--overwrite")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    code, out, err = run_zoo(capsys, "export", tmp_path / "model.pt", folder, "--no-eval", "--overwrite")
    assert code == 0, err
    assert (folder / "NOTES.txt").read_text() == "mine"  # foreign files are kept
    # an untrained model has no learning curve: the export's files, the foreign one, nothing else
    assert {p.name for p in folder.iterdir()} == (set(FILES) - {CURVE}) | {"NOTES.txt"}
    assert not [p for p in tmp_path.iterdir() if ".zoo-export-" in p.name]  # no staging left behind
    # a run directory, or the run itself, never receives an export
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    code, out, err = run_zoo(capsys, "export", tmp_path / "model.pt", tmp_path / "run", "--no-eval", "--overwrite")
    one_error(code, out, err, "run directory")


def test_a_truncated_weights_file_is_one_line(folder, capsys):
    data = (folder / WEIGHTS).read_bytes()
    (folder / WEIGHTS).write_bytes(data[: len(data) // 2])
    with pytest.raises(ZooError, match="not a readable safetensors file"):
        zoo.load(folder)
    code, out, err = run_zoo(capsys, "sample", folder, "--out", folder.parent / "s.png")
    one_error(code, out, err, "safetensors", "truncated")
    assert not (folder.parent / "s.png").exists()


def test_a_config_edited_to_another_architecture_names_the_first_differing_tensor(folder):
    config = json.loads((folder / CONFIG).read_text())
    config["spec"]["components"]["encoder"]["options"] = {"channels": 8}
    (folder / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ZooError, match=r"tensor 'encoder\.[\w.]+' is \[\d+.*\] in the file but the configured"):
        zoo.load(folder)
    config["spec"]["latent_size"] = 7
    config["spec"]["components"]["encoder"]["options"] = {}
    (folder / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ZooError, match="model.safetensors do not fit the model its config.json describes"):
        zoo.load(folder)


def test_a_config_naming_an_unknown_component_names_its_package(folder):
    config = json.loads((folder / CONFIG).read_text())
    config["spec"]["components"]["prior"].update(id="fancy-prior", plugin="fancy", distribution="zoo-fancy")
    (folder / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ZooError, match="pip install zoo-fancy"):
        zoo.load(folder)
    (folder / CONFIG).write_text('{"format": "something-else"}')
    with pytest.raises(ZooError, match="not a zoo export"):
        zoo.load(folder)


@pytest.mark.parametrize(
    "name",
    [
        "hf://../x",
        "hf://owner/../name",
        "hf://owner/name/extra",
        "hf://owner\\name",
        "hf://owner/na--me",
        "hf://~/name",
        "hf://owner/name@../../etc",
        "hf://owner/name@",
        "hf://owner/name@-rf",
    ],
)
def test_hub_names_with_path_tricks_are_refused(name, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_zoo(capsys, "eval", name, "--no-fid")
    one_error(code, out, err, "hf://")
    assert list(tmp_path.iterdir()) == []


def test_no_network_and_a_missing_revision_are_one_line(folder, tmp_path, monkeypatch, capsys):
    offline_hub(monkeypatch, hub_cache(tmp_path / "hub", folder, "owner/name"))
    with pytest.raises(ZooError, match="not in the Hugging Face cache and the Hub cannot be reached"):
        zoo.load("hf://owner/other")
    with pytest.raises(ZooError, match="revision 'v9'"):
        zoo.load("hf://owner/name@v9")
    code, out, err = run_zoo(capsys, "sample", "hf://someone/else", "--out", tmp_path / "s.png")
    one_error(code, out, err, "not in the Hugging Face cache")


def test_a_missing_huggingface_hub_says_how_to_install_it(folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import huggingface_hub raises ImportError
    with pytest.raises(ZooError, match=r"pip install 'zoo\[hub\]'"):
        zoo.load("hf://owner/name")
    zoo.load(folder)  # an exported folder needs only safetensors
    with pytest.raises(ZooError, match=r"zoo export .*pip install 'zoo\[hub\]'"):
        export_run(untrained_checkpoint(folder.parent / "m2.pt"), folder.parent / "again", scoring=SCORING)
    assert not (folder.parent / "again").exists()


# -- push -----------------------------------------------------------------------------------------


@pytest.fixture
def recorded_hub(monkeypatch):
    """HfApi's create_repo and upload_folder replaced by recorders; a token in the environment."""
    import huggingface_hub
    from huggingface_hub import constants

    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        from huggingface_hub.utils import filter_repo_objects

        names = [p.name for p in Path(kwargs["folder_path"]).iterdir()]
        sent = sorted(filter_repo_objects(names, allow_patterns=kwargs.get("allow_patterns")))
        calls.append(("upload_folder", kwargs["repo_id"], {**kwargs, "sent": sent}))
        return "https://huggingface.co/owner/name/commit/abc"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return calls


def test_push_sends_only_the_exports_files(folder, recorded_hub, capsys):
    (folder / "NOTES.txt").write_text("private notes")
    code, out, err = run_zoo(capsys, "push", folder, "owner/name", "--private")
    assert code == 0, err
    assert out.strip() == "https://huggingface.co/owner/name/commit/abc"
    (create, upload) = recorded_hub
    assert create[:2] == ("create_repo", "owner/name") and create[2]["private"] is True
    assert upload[1] == "owner/name" and Path(upload[2]["folder_path"]) == folder
    assert upload[2]["sent"] == sorted(p.name for p in folder.iterdir() if p.name in FILES)
    assert "NOTES.txt" not in upload[2]["sent"]


def test_push_of_a_run_exports_it_on_the_way(tmp_path, recorded_hub, capsys):
    code, out, err = run_zoo(capsys, "push", untrained_checkpoint(tmp_path / "m.pt"), "owner/name", "--no-eval")
    assert code == 0, err
    (_, upload) = recorded_hub
    assert WEIGHTS in upload[2]["sent"] and CONFIG in upload[2]["sent"]
    assert not Path(upload[2]["folder_path"]).exists()  # the temporary export is gone


@pytest.mark.parametrize("repo", ["../name", "owner/name/x", "owner", "owner/..", "/etc/passwd"])
def test_push_refuses_bad_repo_ids(folder, recorded_hub, capsys, repo):
    code, out, err = run_zoo(capsys, "push", folder, repo)
    one_error(code, out, err, "not a hub repository id")
    assert recorded_hub == []


def test_push_needs_a_token_and_the_network(folder, recorded_hub, capsys, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    code, out, err = run_zoo(capsys, "push", folder, "owner/name")
    one_error(code, out, err, "token", "hf auth login")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = run_zoo(capsys, "push", folder, "owner/name")
    one_error(code, out, err, "HF_HUB_OFFLINE")
    assert recorded_hub == []
