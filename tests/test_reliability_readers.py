"""Reliability of what zoo stores and reads back: recipes, config.json, metrics.jsonl, eval JSON
and checkpoints. Valid input always gives a run zoo can load; damaged or hostile files are one
line naming the file, never a traceback. ``docs/reliability.md`` lists each guarantee and its test.

The property-based tests generate nesting, sizes, types and bytes for every file reader;
``bench/fuzz_readers.py`` runs the same generators for many more inputs.
"""

from __future__ import annotations

import datetime
import json
import os
import string
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers_cli import run_zoo as run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoo.errors import ZooError

TINY = """\
{top}
dataset = "spanning-tiny"
latent_size = 3

[encoder]
id = "conv-mnist"
channels = 4

[decoder]
id = "conv-mnist"
channels = 4

[training]
epochs = 1
batch_size = 50
{tail}
"""


def one_line_error(code: int, err: str, *needles: str) -> str:
    assert code == 1, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def recipe_file(tmp_path: Path, top: str = "", tail: str = "", name: str = "tiny.toml") -> Path:
    path = tmp_path / name
    path.write_text(TINY.format(top=top, tail=tail))
    return path


# -- 1. what a run stores is plain data --------------------------------------------------------


def test_a_date_in_a_recipe_file_gives_a_checkpoint_zoo_loads(span, tmp_path, capsys):
    from zoo.checkpoint import load, load_checkpoint

    path = recipe_file(tmp_path, tail="[reference]\npublished = 2013-12-20\nat = 1979-05-27T07:32:00Z\n")
    out = tmp_path / "run"
    code, _, err = run(capsys, "train", path, "--device", "cpu", "--out", out, "--no-progress")
    assert code == 0, err
    payload = load_checkpoint(out)  # refused before the fix ("holds objects other than tensors")
    assert payload["spec"]["recipe"]["reference"]["published"] == "2013-12-20"
    assert json.loads((out / "config.json").read_text())["recipe"]["reference"]["at"].startswith("1979-05-27T07:32")
    load(out)
    code, _, err = run(capsys, "sample", out, "--n", "4", "--out", tmp_path / "s.png")
    assert code == 0, err


def test_numpy_overrides_become_plain_numbers_and_the_run_loads(span, tmp_path):
    from zoo.checkpoint import load_checkpoint
    from zoo.trainer import Trainer

    base = __import__("zoo").get_recipe("tiny-vamp")
    recipe = base.with_overrides({"objective": "elbo", "beta": np.float64(2.0), "epochs": np.int64(1)})
    assert type(recipe.objective_options["beta"]) is float and type(recipe.training.epochs) is int
    for beta in np.linspace(1.0, 2.0, 2):  # the natural sweep
        out = tmp_path / f"beta{beta}"
        overrides = {"objective": "elbo", "beta": beta, "lr": np.float32(1e-3)}
        Trainer("tiny-vamp", overrides=overrides, out=out, device="cpu", progress=False).fit()
        payload = load_checkpoint(out)
        assert payload["spec"]["recipe"]["objective_options"]["beta"] == float(beta)


def test_values_a_run_cannot_store_are_refused_in_one_line_naming_the_key(span, tmp_path, capsys):
    from zoo.recipe import Recipe, recipe_from_mapping

    huge = f"[reference]\nbig = {2**70}\n"
    code, _, err = run(capsys, "train", recipe_file(tmp_path, tail=huge), "--device", "cpu", "--out", tmp_path / "r")
    one_line_error(code, err, "reference.big", "2**63")
    assert not (tmp_path / "r").exists()
    base = __import__("zoo").get_recipe("tiny-vamp")
    with pytest.raises(ZooError, match=r"encoder\.bad is a object"):
        base.with_overrides({"encoder.bad": object()})
    with pytest.raises(ZooError, match="reference.when.x is a set"):
        Recipe(**{**base.__dict__, "reference": {"when": {"x": {1}}}})
    data = {"dataset": "d", "latent_size": 2, "encoder": {"id": "e", "t": datetime.time(1, 2)}, "decoder": {"id": "d"}}
    assert recipe_from_mapping(data).encoder_options == {"t": "01:02:00"}


def test_a_checkpoint_zoo_could_not_load_never_replaces_the_previous_one(span, tmp_path):
    from zoo.checkpoint import load_checkpoint, save_checkpoint
    from zoo.composition import from_recipe

    model = from_recipe(__import__("zoo").get_recipe("tiny-vamp"))
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"spec": model.spec, "model": model.state_dict(), "epoch": 1})
    before = path.read_bytes()
    for bad, where in (
        ({"spec": {**model.spec, "when": datetime.date(2013, 12, 20)}}, "spec.when"),
        ({"history": [{"beta": np.float64(2.0)}]}, "history[0].beta"),
    ):
        with pytest.raises(ZooError, match="previous checkpoint is intact") as caught:
            save_checkpoint(path, {"spec": model.spec, "model": model.state_dict(), **bad})
        assert where in str(caught.value) and "\n" not in str(caught.value)
        assert path.read_bytes() == before and load_checkpoint(path)["epoch"] == 1
        assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_overwrite_with_a_recipe_holding_a_date_leaves_a_loadable_run(span, tmp_path, capsys):
    from zoo.checkpoint import load_checkpoint

    out = tmp_path / "run"
    code, _, err = run(capsys, "train", recipe_file(tmp_path), "--device", "cpu", "--out", out, "--no-progress")
    assert code == 0, err
    dated = recipe_file(tmp_path, tail="[reference]\npublished = 2013-12-20\n", name="dated.toml")
    code, _, err = run(capsys, "train", dated, "--device", "cpu", "--out", out, "--overwrite", "--no-progress")
    assert code == 0, err
    assert load_checkpoint(out)["spec"]["recipe"]["reference"] == {"published": "2013-12-20"}


# -- 2. ids from files name folders: validated like ids from plugins ---------------------------


@pytest.mark.parametrize("bad_id", ["/abs/x", "../../../x", "a\\u0000b", "a/b", "..", "Upper", "x\\n", ""])
def test_a_recipe_id_from_a_file_cannot_leave_the_runs_folder(span, tmp_path, capsys, monkeypatch, bad_id):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    path = recipe_file(tmp_path / "work", top=f'id = "{bad_id}"')
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, _, err = run(capsys, "train", path, "--device", "cpu", "--no-progress")
    one_line_error(code, err, "kebab-case")
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing created, here or above
    assert not Path("/abs/x").exists()


def test_a_python_recipe_id_that_is_a_path_is_refused():
    base = __import__("zoo").get_recipe("iwae-burda2-mnist")
    for bad in ("../x", "/abs", "a\x00b", ".."):
        with pytest.raises(ZooError, match="cannot name a run folder"):
            type(base)(**{**base.__dict__, "id": bad})


# -- 3. compare: an IW-NLL shown only with the epoch it scored, and only for this run ----------


def fake_run(folder: Path, epochs: int = 3, *, loss=90.0, recipe=None, last_line: str | None = None) -> Path:
    """A run directory as zoo train writes it (config.json, metrics.jsonl), without training."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model": "m", "recipe": recipe or {"id": "m", "objective": "elbo"}, "versions": {}}
    (folder / "config.json").write_text(json.dumps(config))
    rows = [{"epoch": e, "test_loss": loss + e, "epoch_seconds": 1.0} for e in range(1, epochs + 1)]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (folder / "metrics.jsonl").write_text(text + (last_line or ""))
    return folder


def fake_eval(folder: Path, epoch, nll: float = 80.0, *, older_than_config: bool = False) -> None:
    (folder / "eval").mkdir(exist_ok=True)
    path = folder / "eval" / "metrics.json"
    path.write_text(json.dumps({"test_nll_iw": nll, "iw_samples": 5, "epoch": epoch}))
    config_time = (folder / "config.json").stat().st_mtime_ns
    when = config_time - 10**9 if older_than_config else config_time + 10**9
    os.utime(path, ns=(when, when))


def test_compare_shows_the_iw_nll_with_its_epoch_and_hides_one_of_an_older_model(tmp_path, capsys):
    from zoo.compare import summarize

    current = fake_run(tmp_path / "current")
    fake_eval(current, 2)
    summary = summarize(current)
    assert (summary.iw_nll, summary.iw_samples, summary.iw_epoch) == (80.0, 5, 2)
    code, out, err = run(capsys, "compare", current)
    assert code == 0, err
    header, _, row = out.splitlines()
    assert header.split()[-4:] == ["IW-NLL", "(K)", "(epoch)", "s/epoch"]
    assert row.split()[-4:-1] == ["80.00", "5", "2"]
    # An evaluation of a checkpoint the history does not reach (the run was overwritten with fewer epochs).
    beyond = fake_run(tmp_path / "beyond", epochs=2)
    fake_eval(beyond, 5)
    # An evaluation written before the run was (re)started: --overwrite, or a resume, came after it.
    overwritten = fake_run(tmp_path / "overwritten")
    fake_eval(overwritten, 3, older_than_config=True)
    for stale in (beyond, overwritten):
        summary = summarize(stale)
        assert (summary.iw_nll, summary.iw_samples, summary.iw_epoch) == (None, None, None), stale
    data = json.loads(run(capsys, "compare", current, beyond, overwritten, "--json")[1])
    assert [d["iw_epoch"] for d in data] == [2, None, None]


def test_compare_after_a_real_overwrite_drops_the_old_iw_nll(span, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "tiny-vamp", "--device", "cpu", "--out", out, "--no-progress"]
    assert run(capsys, *args, "--epochs", "2")[0] == 0
    code, _, err = run(capsys, "eval", out, "--iw-samples", "2", "--limit", "10", "--no-fid", "--device", "cpu")
    assert code == 0, err
    assert json.loads(run(capsys, "compare", out, "--json")[1])[0]["iw_epoch"] == 2
    assert run(capsys, *args, "--epochs", "2", "--overwrite")[0] == 0
    entry = json.loads(run(capsys, "compare", out, "--json")[1])[0]
    assert entry["iw_nll"] is None and entry["iw_epoch"] is None


# -- damaged and hostile files: one line naming the file -------------------------------------


def deep(n: int, kind: str = "[") -> str:
    return ("[" * n + "]" * n) if kind == "[" else ('{"a":' * n + "1" + "}" * n)


@pytest.mark.parametrize(
    "name, text, needle",
    [
        ("config.json", deep(100_000), "config.json"),
        ("config.json", '{"model": "m", "recipe": ' + deep(100_000, "{") + "}", "config.json"),
        ("config.json", '{"recipe": {"x": ' + "9" * 5000 + "}}", None),
        ("metrics.jsonl", deep(100_000) + "\n", "metrics.jsonl"),
        ("eval/metrics.json", deep(100_000, "{"), "metrics.json"),
        ("eval/metrics.json", '{"test_nll_iw": ' + "9" * 5000 + ', "epoch": 1}', None),
    ],
)
def test_deep_nesting_and_huge_numbers_in_run_files(tmp_path, capsys, name, text, needle):
    folder = fake_run(tmp_path / "r")
    (folder / "eval").mkdir()
    (folder / name).write_text(text)
    code, out, err = run(capsys, "compare", folder)
    if needle is None:
        assert code == 0 and "Traceback" not in err, err
    else:
        one_line_error(code, err, needle)


def test_compare_reads_metric_values_it_cannot_use_as_missing(tmp_path, capsys):
    folder = fake_run(tmp_path / "r", epochs=1)
    with open(folder / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "test_loss": ' + "1" + "0" * 400 + ', "epoch_seconds": 1e999}\n')
    (folder / "eval").mkdir()
    (folder / "eval" / "metrics.json").write_text('{"test_nll_iw": 1e400, "epoch": 2, "iw_samples": [1]}')
    code, out, err = run(capsys, "compare", folder, "--json")
    assert code == 0, err
    (entry,) = json.loads(out)
    assert entry["epochs"] == 2 and entry["best_neg_elbo"] == 91.0 and entry["last_neg_elbo"] is None
    assert entry["iw_nll"] is None
    assert run(capsys, "compare", folder)[0] == 0


@pytest.mark.parametrize(
    "recipe",
    [
        {"objective_options": [1, 2]},
        {"training": [1, 2]},
        {"objective": ["x"], "objective_options": "beta"},
        {"training": {"beta": [1]}, "objective_options": None},
    ],
)
def test_a_tampered_config_whose_options_or_training_are_not_tables(tmp_path, capsys, recipe):
    from zoo.recipe import Recipe

    folder = fake_run(tmp_path / "r", recipe={"id": "m", **recipe})
    code, out, err = run(capsys, "compare", folder)
    assert code == 0 and "Traceback" not in err, err
    stored = {"id": "m", "encoder": "e", "decoder": "d", "prior": "p", "likelihood": "l", "dataset": "x"}
    with pytest.raises(ZooError, match="config.json: "):
        Recipe.from_dict({**stored, "latent_size": 2, **recipe}, source="config.json")


def test_a_truncated_last_line_of_metrics_keeps_the_complete_lines(tmp_path, capsys):
    from zoo.compare import summarize

    folder = fake_run(tmp_path / "r", epochs=3, last_line='{"epoch": 4, "test_lo')
    summary = summarize(folder)
    assert summary.epochs == 3 and summary.last_neg_elbo == 93.0
    (folder / "metrics.jsonl").write_text('{"epoch": 1}\n{"epo\n{"epoch": 3}\n')  # damage mid-file still reported
    code, _, err = run(capsys, "compare", folder)
    one_line_error(code, err, "line 2")


def test_compare_plot_with_a_hundred_runs_prints_no_warning(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    runs = [fake_run(tmp_path / f"run{i:03d}$x", epochs=2, loss=float(i)) for i in range(100)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code, out, err = run(capsys, "compare", *runs, "--plot", tmp_path / "curves.png")
    assert code == 0, err
    assert "warning" not in err.lower() and "layout" not in err.lower(), err
    assert (tmp_path / "curves.png").stat().st_size > 1000


# -- --set: sizes and counts have the bounds of the layer that takes them ----------------------


@pytest.mark.parametrize(
    "setting, needle",
    [
        ("objective.warmup=" + "7" * 700, "2**63 - 1"),
        ("latent_size=4611686018427387904", "1048576"),
        ("encoder.channels=" + "9" * 30, "2**63 - 1"),
        ("epochs=" + "9" * 25, "2**63 - 1"),
        ("encoder.channels=" + "[" * 5000 + "]" * 5000, "encoder.channels"),
    ],
)
def test_set_values_beyond_what_the_next_layer_takes_are_one_line(span, tmp_path, capsys, setting, needle):
    out = tmp_path / "run"
    args = ["train", "tiny-vamp", "--device", "cpu", "--out", out, "--no-progress"]
    code, _, err = run(capsys, *args, "--set", "objective=elbo", "--set", setting)
    one_line_error(code, err, needle)
    assert not (out / "checkpoints").exists()


# -- property-based: every reader gives a value or one ZooError, never another exception -------

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)


@st.composite
def json_texts(draw):
    """JSON-ish text: valid documents, deep nesting, huge numbers, cut or random bytes."""
    kind = draw(st.sampled_from(["value", "deep", "number", "cut", "bytes", "run"]))
    if kind == "value":
        return json.dumps(draw(json_values)).encode()
    if kind == "deep":
        n = draw(st.integers(1, 200_000))
        opener = draw(st.sampled_from(["[", '{"a":', '{"recipe":']))
        return (opener * n).encode() + b"1" + draw(st.sampled_from([b"", b"]" * n, b"}" * n]))
    if kind == "number":
        digits = draw(st.integers(1, 6000))
        sign = draw(st.sampled_from(["", "-"]))
        exp = draw(st.sampled_from(["", "e400", "e-400", ".5"]))
        key = draw(st.sampled_from(["test_loss", "epoch", "test_nll_iw", "iw_samples", "latent_size"]))
        number = sign + "9" * digits + exp
        return ('{"' + key + '": ' + number + ', "epoch": 1, "recipe": {}}').encode()
    if kind == "cut":
        text = json.dumps(draw(run_like_configs()))
        return text[: draw(st.integers(0, len(text)))].encode()
    if kind == "run":
        return json.dumps(draw(run_like_configs())).encode()
    return draw(st.binary(max_size=200))


@st.composite
def run_like_configs(draw):
    """Dicts shaped like config.json, eval/metrics.json or a metrics row, with any value types."""
    keys = ["model", "recipe", "objective", "objective_options", "training", "beta", "epoch"]
    keys += ["test_loss", "epoch_seconds", "test_nll_iw", "iw_samples", "id"]
    inner = st.dictionaries(st.sampled_from(keys), json_values, max_size=6)
    return draw(st.dictionaries(st.sampled_from(keys), json_values | inner, max_size=8))


def check_summary(folder: Path) -> None:
    from zoo.compare import format_table, summarize

    try:
        summary = summarize(folder)
    except ZooError as exc:
        assert "\n" not in str(exc)
        return
    json.dumps(summary.to_dict(), allow_nan=False)
    format_table([summary])


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(config=json_texts(), metrics=st.lists(json_texts(), max_size=4), scored=json_texts())
def test_compare_never_raises_anything_but_one_zoo_error(tmp_path_factory, config, metrics, scored):
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "config.json").write_bytes(config)
    (folder / "metrics.jsonl").write_bytes(b"\n".join(m.replace(b"\n", b" ") for m in metrics))
    (folder / "eval").mkdir()
    (folder / "eval" / "metrics.json").write_bytes(scored)
    check_summary(folder)


@FUZZ
@given(text=json_texts())
def test_read_json_file_gives_a_value_or_one_zoo_error(tmp_path_factory, text):
    from zoo.plain_data import MAX_DEPTH, read_json_file

    path = tmp_path_factory.mktemp("json") / "x.json"
    path.write_bytes(text)
    try:
        read_json_file(path)
    except ZooError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
    assert MAX_DEPTH >= 8


toml_keys = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=8)
toml_scalars = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(max_size=10).map(json.dumps),
    st.sampled_from(["2013-12-20", "1979-05-27T07:32:00Z", "07:32:00", "true", "nan", "inf", "'\\u0000'"]),
    st.integers(4290, 4400).map(lambda n: "9" * n),
)


@st.composite
def toml_texts(draw):
    """Recipe files: valid ones with generated ids, tables and values, deep nesting, random bytes."""
    kind = draw(st.sampled_from(["recipe", "deep", "bytes", "cut"]))
    if kind == "deep":
        n = draw(st.integers(1, 50_000))
        return ("x = " + "[" * n + "]" * n).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    ids = ['"ok-id"', '"../x"', '"/abs"', '"a\\u0000b"', "1", '"x\\n"']
    sizes = ["3", "0", "4611686018427387904", '"x"', "9" * 5000]
    lines = [f"id = {draw(st.sampled_from(ids))}"] if draw(st.booleans()) else []
    lines.append(f"latent_size = {draw(st.sampled_from(sizes)) if draw(st.booleans()) else 3}")
    lines.append('dataset = "spanning-tiny"')
    tables = ["encoder", "decoder"] if draw(st.booleans()) else []
    tables += draw(st.lists(st.sampled_from(["objective", "training", "reference"]), max_size=3, unique=True))
    for table in tables:
        lines.append(f"[{table}]")
        if table != "training" and table != "reference":
            lines.append('id = "conv-mnist"')
        if table == "training":
            continue  # every training setting is checked by its type elsewhere; keep the rest valid
        for key, value in draw(st.dictionaries(toml_keys, toml_scalars, max_size=4)).items():
            lines.append(f"{key} = {value}")
    text = "\n".join(lines) + "\n"
    if kind == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    return text.encode()


@FUZZ
@given(text=toml_texts())
def test_recipe_files_give_a_plain_recipe_or_one_zoo_error(tmp_path_factory, text):
    from zoo.plain_data import first_unstorable
    from zoo.recipe import check_id, recipe_from_file

    path = tmp_path_factory.mktemp("toml") / "r.toml"
    path.write_bytes(text)
    try:
        recipe = recipe_from_file(path)
    except ZooError as exc:
        assert "\n" not in str(exc)
        return
    check_id(recipe.id)
    assert first_unstorable(recipe.to_dict()) is None
    json.dumps(recipe.to_dict())


def test_resume_of_a_run_whose_config_zoo_did_not_write_says_what_to_do(tmp_path):
    """A damaged config.json is one line on --resume, and the advice is not to choose another --out."""
    from zoo.errors import ZooError
    from zoo.rundir import RunDir

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("[" * 5000 + "]" * 5000)  # deeper than any reader follows
    with pytest.raises(ZooError) as raised:
        RunDir(run).claim_for_resume()
    message = str(raised.value)
    assert "was not written by zoo" in message and "--out" not in message and "\n" not in message
    assert (run / "config.json").exists()
