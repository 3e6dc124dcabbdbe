"""Disentanglement of zoo's dSprites recipes: train each recipe for a budget of steps with several
seeds, score every run with ``zoo.evaluate.evaluate`` (the code behind ``zoo eval``) and print the
mean and spread of MIG, SAP, DCI, the FactorVAE and BetaVAE scores beside the published anchors.

    python bench/disentanglement.py beta-vae-dsprites beta-tc-vae-dsprites --seeds 0 1 2 \\
        --max-steps 1500 --points 1000 --out runs/disentanglement

Each run is ``zoo train RECIPE --max-steps N --seed S --threads T`` into ``OUT/RECIPE-sS`` (kept:
a rerun with ``--reuse`` takes the runs, and their scores at the same ``--points``, already there); the scores land in
``OUT/RECIPE-sS/eval/metrics.json`` and the table (markdown) on standard output, the rows as JSON in
``OUT/disentanglement.json``. Any recipe whose data set has factors works, e.g. ``vae-conv`` with
``--set dataset=dsprites`` through ``--train-args``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

KEYS = ("mig", "sap", "dci_disentanglement", "dci_completeness", "dci_informativeness", "factor_vae_score",
        "beta_vae_score")  # fmt: skip

#: What the papers report, as found in their text; None where no number was found to quote.
ANCHORS = {
    "beta-vae-dsprites": "Chen et al. 2018 and Locatello et al. 2019 show beta-VAE's MIG on dSprites in plots "
    "only; no number was found in the sources searched to quote here",
    "beta-tc-vae-dsprites": "Chen et al. 2018 show beta-TC-VAE's MIG in plots only; one reproduction with the "
    "authors' code (MLP encoder) reports MIG about 0.50 (a GitHub thread of YannDubs/disentangling-vae)",
}


def _train(recipe: str, seed: int, out: Path, args) -> float:
    command = ["zoo", "train", recipe, "--max-steps", str(args.max_steps), "--seed", str(seed), "--out", str(out),
               "--overwrite", "--threads", str(args.threads), "--no-progress", *shlex.split(args.train_args)]  # fmt: skip
    print("$", shlex.join(command), file=sys.stderr, flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def _score(run: Path, args) -> dict:
    from zoo.evaluate import evaluate

    saved = run / "eval" / "metrics.json"
    if args.reuse and saved.is_file():
        result = json.loads(saved.read_text())
        if result.get("disentanglement", {}).get("points") == args.points:
            return result

    return evaluate(run, iw_samples=args.iw_samples, limit=args.limit, fid=False, images=False, seed=0,
                    threads=args.threads, disentanglement=True, disentanglement_points=args.points)  # fmt: skip


def _table(rows: list[dict], args) -> str:
    lines = [
        f"| recipe | runs (seeds) | steps | {' | '.join(KEYS)} | test neg. ELBO |",
        "|---|---|---|" + "---|" * (len(KEYS) + 1),
    ]
    for recipe in dict.fromkeys(r["recipe"] for r in rows):
        mine = [r for r in rows if r["recipe"] == recipe]

        def cell(key, mine=mine):
            values = [r[key] for r in mine]
            spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
            return f"{statistics.mean(values):.3f}{spread}"

        seeds = ", ".join(str(r["seed"]) for r in mine)
        keys = " | ".join(cell(k) for k in KEYS)
        lines.append(f"| {recipe} | {len(mine)} ({seeds}) | {args.max_steps} | {keys} | {cell('test_neg_elbo')} |")
    lines.append("")
    lines.append("Anchors:")
    for recipe in dict.fromkeys(r["recipe"] for r in rows):
        if recipe in ANCHORS:
            lines.append(f"- {recipe}: {ANCHORS[recipe]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipes", nargs="+", help="recipe ids trained on a data set with factors")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--max-steps", type=int, default=1500, help="training steps per run (the budget)")
    parser.add_argument("--points", type=int, default=1000, help="--disentanglement-points of the evaluation")
    parser.add_argument("--iw-samples", type=int, default=10)
    parser.add_argument("--limit", type=int, default=500, help="test images for the likelihood")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-args", default="", help="more arguments for zoo train, e.g. '--set beta=8'")
    parser.add_argument("--out", type=Path, default=Path("runs/disentanglement"))
    parser.add_argument(
        "--reuse", action="store_true", help="take runs (and their scores at --points) already in --out as they are"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    rows = []
    for seed in args.seeds:
        for recipe in args.recipes:
            run = args.out / f"{recipe}-s{seed}"
            seconds = None
            if not (args.reuse and (run / "checkpoints" / "last.pt").is_file()):
                seconds = _train(recipe, seed, run, args)
            result = _score(run, args)
            row = {"recipe": recipe, "seed": seed, "run": str(run), "train_seconds": seconds}
            row.update({k: result[k] for k in (*KEYS, "test_neg_elbo", "factor_vae_active_dims")})
            row["eval_seconds"] = result["disentanglement"]["seconds"]
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "disentanglement.json").write_text(
        json.dumps({"machine": platform.processor(), "rows": rows}, indent=2)
    )
    print(_table(rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
