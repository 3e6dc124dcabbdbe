"""Fuzz zoo's file readers: every generated input gives a value or one ZooError, never a traceback.

Runs the hypothesis generators of ``tests/test_reliability_readers.py`` (nesting, sizes, types
and bytes) through each reader, many more times than the suite does:

    recipe-toml    zoo.recipe.recipe_from_file on a generated recipe file
    config-json    zoo.compare.summarize on a run whose config.json is generated; then
                   zoo.recipe.Recipe.from_dict on its recipe (what --resume reads)
    metrics-jsonl  zoo.compare.summarize on a run whose metrics.jsonl lines are generated
    eval-json      zoo.compare.summarize on a run whose eval/metrics.json is generated
    json-file      zoo.plain_data.read_json_file on a generated file

    PYTHONPATH=.:plugins python bench/fuzz_readers.py [--examples 10000] [--readers a,b,...] [--seed 0]

Prints one line per reader (inputs run, ZooErrors, values, other exceptions) and the first
traceback of each kind found; exit status 1 if any input raised anything but a ZooError.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_reliability_readers import json_texts, toml_texts  # noqa: E402

from zoo.errors import ZooError  # noqa: E402

VALID_CONFIG = json.dumps({"model": "m", "recipe": {"id": "m"}, "versions": {}}).encode()
VALID_METRICS = b'{"epoch": 1, "test_loss": 90.0, "epoch_seconds": 1.0}\n'


def _run_dir(folder: Path, config: bytes, metrics: bytes, scored: bytes | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_bytes(config)
    (folder / "metrics.jsonl").write_bytes(metrics)
    (folder / "eval").mkdir(exist_ok=True)
    if scored is not None:
        (folder / "eval" / "metrics.json").write_bytes(scored)
    return folder


def _summary(folder: Path) -> None:
    from zoo.compare import format_table, summarize

    summary = summarize(folder)
    json.dumps(summary.to_dict(), allow_nan=False)
    format_table([summary])


def read_recipe_toml(tmp: Path, text: bytes) -> None:
    from zoo.plain_data import first_unstorable
    from zoo.recipe import check_id, recipe_from_file

    path = tmp / "recipe.toml"
    path.write_bytes(text)
    recipe = recipe_from_file(path)
    check_id(recipe.id)
    assert first_unstorable(recipe.to_dict()) is None, "a recipe that a checkpoint could not store"


def read_config_json(tmp: Path, text: bytes) -> None:
    from zoo.plain_data import loads_json
    from zoo.recipe import Recipe

    try:  # what --resume reads of it: a recipe or one ZooError (most generated ones are incomplete)
        config = loads_json(text.decode("utf-8", errors="replace"), "config.json")
        if isinstance(config, dict):
            Recipe.from_dict(config.get("recipe"), source="config.json")
    except ZooError as exc:
        assert "\n" not in str(exc), "a multi-line ZooError"
    _summary(_run_dir(tmp / "run", text, VALID_METRICS, None))


def read_metrics_jsonl(tmp: Path, lines: list[bytes]) -> None:
    metrics = b"\n".join(line.replace(b"\n", b" ") for line in lines)
    _summary(_run_dir(tmp / "run", VALID_CONFIG, metrics, None))


def read_eval_json(tmp: Path, text: bytes) -> None:
    _summary(_run_dir(tmp / "run", VALID_CONFIG, VALID_METRICS, text))


def read_json_file(tmp: Path, text: bytes) -> None:
    from zoo.plain_data import read_json_file as read

    path = tmp / "x.json"
    path.write_bytes(text)
    read(path)


READERS = {
    "recipe-toml": (read_recipe_toml, toml_texts()),
    "config-json": (read_config_json, json_texts()),
    "metrics-jsonl": (read_metrics_jsonl, st.lists(json_texts(), max_size=5)),
    "eval-json": (read_eval_json, json_texts()),
    "json-file": (read_json_file, json_texts()),
}


def fuzz(name: str, examples: int, seed_value: int) -> dict:
    reader, strategy = READERS[name]
    counts = {"inputs": 0, "zoo_errors": 0, "values": 0, "other": 0}
    found: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)

        @seed(seed_value)
        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(strategy)
        def check(value):
            counts["inputs"] += 1
            try:
                reader(tmp_path, value)
                counts["values"] += 1
            except ZooError as exc:
                counts["zoo_errors"] += 1
                if "\n" in str(exc):
                    counts["other"] += 1
                    found.setdefault("multi-line ZooError", f"{exc}\ninput: {value[:300]!r}")
            except Exception as exc:  # noqa: BLE001 - that is what the fuzzer looks for
                counts["other"] += 1
                found.setdefault(type(exc).__name__, traceback.format_exc() + f"input: {str(value)[:300]}")

        check()
    counts["found"] = found
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000, help="generated inputs per reader")
    parser.add_argument("--readers", default=",".join(READERS), help="comma-separated: " + ", ".join(READERS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    names = [n for n in args.readers.split(",") if n]
    unknown = [n for n in names if n not in READERS]
    if unknown:
        parser.error(f"unknown reader(s) {', '.join(unknown)}")
    bad = 0
    for name in names:
        started = time.perf_counter()
        result = fuzz(name, args.examples, args.seed)
        bad += result["other"]
        print(
            f"{name:14s} {result['inputs']:6d} inputs: {result['zoo_errors']} ZooError, {result['values']} values, "
            f"{result['other']} other exceptions ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
        for kind, text in result["found"].items():
            print(f"--- {kind}\n{text}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
