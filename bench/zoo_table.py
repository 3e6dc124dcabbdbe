"""The tables of docs/benchmarks.md: what trained zoo runs reach, beside the published anchors.

For each run directory it reads the training log (``metrics.jsonl``, ``config.json``) and the
``metrics.json`` that ``zoo eval`` wrote into ``RUN/EVAL`` (``--eval``, default ``eval``), and
prints one markdown table row: test negative ELBO and IW NLL (with the K and number of test
images they were computed with), bits/dim, active units, epochs (and the lr schedule),
training time and the machine. With ``--evaluate K`` it first runs ``zoo eval RUN --iw-samples K
--no-fid`` itself (all test images, or the first N with ``--limit N``).

    python bench/zoo_table.py runs/binarized --eval eval-k5000-n1000
    python bench/zoo_table.py runs/a runs/b --evaluate 5000 --data-dir ../shared/data

Recipes that carry a ``reference`` (``zoo info MODEL``) get their paper's number, and pythae's
reproduction with its protocol where known, in the row (the reference as registered now).

The command line is printed above the table, so the docs say how each table was made.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

ANCHORS = """\
| model (published) | data | test NLL, nats | how |
|---|---|---:|---|
| VAE, 1 stochastic layer (Burda et al. 2015, table 1) | binarized MNIST | 86.76 | IW, k=5000 |
| IWAE k=50, 1 stochastic layer (Burda et al. 2015) | binarized MNIST | 84.78 | IW, k=5000 |
| VAE, reproduced by pythae (Chadebec et al. 2022) | MNIST, as pythae's reproducibility scripts use it | 89.78 | IS, 200 samples |
| VAE + VampPrior, reproduced by pythae | MNIST, as above | 85.79 | IS, 200 samples |
| the seed's training loop, 10 epochs | grey-level MNIST | 106.0 | negative ELBO (not a likelihood) |"""


def _machine() -> str:
    import os

    from machine import cpu_model

    return f"{cpu_model()}, {os.cpu_count()} cores"


def _reference(config: dict) -> dict:
    """The recipe's reference as registered now (its protocol notes may be newer than the run), else the run's."""
    recipe = config.get("recipe", {})
    try:
        import zoo

        return zoo.get_recipe(recipe.get("id", "")).reference or {}
    except Exception:  # noqa: BLE001 - an unregistered or composed model: the run's own record
        return recipe.get("reference") or {}


def _stat(metrics: dict, key: str) -> str:
    """``mean ± stderr``, or "n/a" where the metric does not apply (a deterministic encoder has no ELBO)."""
    if metrics.get(key) is None:
        return "n/a"
    return f"{metrics[key]:.2f} ± {metrics[key + '_stderr']:.2f}"


def row(run: Path, eval_name: str) -> str:
    metrics = json.loads((run / eval_name / "metrics.json").read_text())
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    config = json.loads((run / "config.json").read_text())
    fastest = min(r["epoch_seconds"] for r in history)
    device = config.get("resolved", {}).get("device", "?")
    bpd = f"{metrics['bits_per_dim']:.4f}" if metrics.get("bits_per_dim") is not None else "n/a"
    reference = _reference(config)
    paper = f"{reference['test_nll']}" if "test_nll" in reference else "-"
    pythae = reference.get("pythae", "-")
    # the epoch zoo eval scored (training may have gone on since)
    epoch = metrics.get("epoch", history[-1]["epoch"])
    seconds = sum(r["epoch_seconds"] for r in history if r["epoch"] <= epoch)
    schedule = config.get("recipe", {}).get("training", {}).get("lr_schedule", "constant")
    return (
        f"| {metrics['model']} | {metrics['dataset']} | {epoch} ({schedule} lr) "
        f"| {_stat(metrics, 'test_neg_elbo')} | {_stat(metrics, 'test_nll_iw')} "
        f"| {metrics['iw_samples'] or 'n/a'} x {metrics['n_images']} | {bpd} "
        f"| {metrics['active_units']}/{metrics['latent_size']} | {paper} | {pythae} "
        f"| {seconds / 60:.1f} min (fastest epoch {fastest:.1f} s) | {device}: {_machine()} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (zoo train --out)")
    parser.add_argument("--eval", default="eval", help="folder inside each run holding zoo eval's metrics.json")
    parser.add_argument("--evaluate", type=int, metavar="K", help="run 'zoo eval RUN --iw-samples K' first")
    parser.add_argument("--data-dir", help="passed to zoo eval with --evaluate")
    parser.add_argument("--limit", type=int, help="with --evaluate: score only the first N test images")
    parser.add_argument("--no-anchors", action="store_true", help="leave out the published anchors")
    args = parser.parse_args()

    if args.evaluate:
        from zoo.evaluate import evaluate

        for run in args.runs:
            evaluate(
                run,
                iw_samples=args.evaluate,
                data_dir=args.data_dir,
                out=run / args.eval,
                progress=None,
                fid=False,
                limit=args.limit,
            )

    print(f"`python {' '.join(shlex.quote(a) for a in ['bench/zoo_table.py', *sys.argv[1:]])}`")
    print()
    print(
        "| model | data | epochs | test negative ELBO | test IW NLL | K x test images | bits/dim | active units "
        "| paper's test NLL | pythae's reproduction | training time (sum of epochs) | machine |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|")
    for run in args.runs:
        print(row(run, args.eval))
    if not args.no_anchors:
        print()
        print(ANCHORS)


if __name__ == "__main__":
    main()
