"""IW-NLL against epochs for long zoo runs, plotted beside each recipe's published number.

Each run must have been trained with ``zoo train MODEL --keep-every N`` (or resumed with it), so
``RUN/checkpoints/epoch-NNNN.pt`` hold the model along the way. Every kept checkpoint, and the
run's ``last.pt``, is scored with ``zoo.evaluate.evaluate`` (the code behind ``zoo eval``) at K
importance samples on the first N test images (one fixed binarization of the test set). The
scores are cached in ``RUN/curve/epoch-NNNN-kK-nN.json``, so rerunning while training goes on only
scores the new checkpoints.

    python bench/families.py runs/vae-burda-mnist runs/iwae-burda-mnist \\
        --samples 500 --limit 1000 --png docs/families-iw-nll.png

It prints a markdown table (one column per run, one row per scored epoch) and, with ``--png``,
draws IW-NLL (solid) and test negative ELBO (dotted, from ``metrics.jsonl``, every epoch) against
epochs, with each recipe's ``reference.test_nll`` as a dashed line. Needs matplotlib for the PNG
(``pip install 'zoo[plot]'``).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path

_KEPT = re.compile(r"epoch-(\d{4,})\.pt")


def _history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _reference(run: Path) -> dict:
    config = json.loads((run / "config.json").read_text())
    return config.get("recipe", {}).get("reference") or {}


def _model_id(run: Path) -> str:
    return json.loads((run / "config.json").read_text()).get("model", run.name)


def checkpoints(run: Path) -> list[tuple[int, Path]]:
    """(epoch, path) of every kept checkpoint, plus last.pt when it is newer than all of them."""
    found = {}
    for path in (run / "checkpoints").glob("epoch-*.pt"):
        match = _KEPT.fullmatch(path.name)
        if match:
            found[int(match.group(1))] = path
    last = run / "checkpoints" / "last.pt"
    if last.is_file():
        import torch

        epoch = int(torch.load(last, map_location="cpu", weights_only=True)["epoch"])
        found.setdefault(epoch, last)
    return sorted(found.items())


def score(run: Path, epoch: int, path: Path, samples: int, limit: int | None, data_dir: str | None) -> dict:
    """zoo eval's metrics for one checkpoint, cached in RUN/curve/."""
    from zoo.evaluate import evaluate

    cache = run / "curve" / f"epoch-{epoch:04d}-k{samples}-n{limit or 'all'}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    metrics = evaluate(
        path,
        iw_samples=samples,
        limit=limit,
        data_dir=data_dir,
        fid=False,
        images=False,
        out=cache.parent / cache.stem,
        device="cpu",
        progress=False,
    )
    keep = {
        k: metrics[k]
        for k in (
            "epoch",
            "test_nll_iw",
            "test_nll_iw_stderr",
            "test_neg_elbo",
            "test_neg_elbo_stderr",
            "iw_samples",
            "n_images",
            "active_units",
            "latent_size",
            "seconds",
        )
    }
    cache.parent.mkdir(exist_ok=True)
    cache.write_text(json.dumps(keep, indent=1) + "\n")
    return keep


def plot(curves: dict[Path, list[dict]], png: Path, samples: int, limit: int | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6.5))
    for i, (run, points) in enumerate(curves.items()):
        color = f"C{i}"
        name = _model_id(run)
        history = _history(run)
        ax.plot(
            [r["epoch"] for r in history],
            [r["test_loss"] for r in history],
            ":",
            color=color,
            alpha=0.6,
            label=f"{name}: test -ELBO",
        )
        ax.plot(
            [p["epoch"] for p in points],
            [p["test_nll_iw"] for p in points],
            "o-",
            color=color,
            markersize=3,
            label=f"{name}: IW-NLL (K={samples})",
        )
        reference = _reference(run)
        if "test_nll" in reference:
            ax.axhline(
                reference["test_nll"],
                color=color,
                linestyle="--",
                linewidth=1,
                label=f"{name}: paper {reference['test_nll']}",
            )
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per test image")
    ax.set_title(f"Test NLL along training (IW at K={samples} on {limit or 'all 10,000'} test images)")
    low = min(min(p["test_nll_iw"] for p in pts) for pts in curves.values() if pts)
    refs = [_reference(r).get("test_nll") for r in curves]
    low = min([low, *[r for r in refs if r is not None]])
    high = max(max(p["test_nll_iw"] for p in pts) for pts in curves.values() if pts)
    ax.set_ylim(low - 2, min(high + 4, low + 70))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories trained with --keep-every")
    parser.add_argument("--samples", type=int, default=500, help="importance samples K per image (default 500)")
    parser.add_argument("--limit", type=int, default=1000, help="first N test images (0: all; default 1000)")
    parser.add_argument("--data-dir", default=None, help="data folder (default: each run's own)")
    parser.add_argument("--png", type=Path, help="write the plot here")
    args = parser.parse_args()
    limit = args.limit or None

    curves = {}
    for run in args.runs:
        curves[run] = [score(run, epoch, path, args.samples, limit, args.data_dir) for epoch, path in checkpoints(run)]

    print(f"`python {' '.join(shlex.quote(a) for a in ['bench/families.py', *sys.argv[1:]])}`")
    print()
    epochs = sorted({p["epoch"] for points in curves.values() for p in points})
    print("| epoch | " + " | ".join(f"{_model_id(r)} IW-NLL (−ELBO)" for r in curves) + " |")
    print("|---:|" + "---:|" * len(curves))
    for epoch in epochs:
        cells = []
        for points in curves.values():
            hit = [p for p in points if p["epoch"] == epoch]
            cells.append(f"{hit[0]['test_nll_iw']:.2f} ({hit[0]['test_neg_elbo']:.2f})" if hit else "")
        print(f"| {epoch} | " + " | ".join(cells) + " |")
    print()
    print(
        f"K={args.samples} importance samples on {limit or 'all'} test images; published: "
        + "; ".join(f"{_model_id(r)} {_reference(r).get('test_nll', '-')}" for r in curves)
    )
    if args.png:
        plot(curves, args.png, args.samples, limit)
        print(f"\nwrote {args.png}")


if __name__ == "__main__":
    main()
