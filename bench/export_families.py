"""Export the long runs of the families as folders ready to push, with their model cards, and print
each one's pretrained-index entry.

Each run is exported with ``zoo.export.export_run`` (the code behind ``zoo export``) into
``OUT/<model id>``, scored on the test set with ``--iw-samples`` K and ``--limit`` images (all of
them by default, seed 0): the card's figure. A second, quick score (``--quick-samples`` on the
first ``--quick-limit`` images) is what the fast test checks. For every run the script prints the
``pretrained`` table to put in the recipe (``sha256`` of ``model.safetensors`` and both scores):

    python bench/export_families.py runs/vae-conv-mnist runs/vamp-mlp-binarized-mnist \\
        --out weights --data-dir ../shared/data --iw-samples 1000

Publishing is then ``zoo push OUT/<id> owner/<id>`` for each folder (a token and a network), after
which the index's ``repo`` and ``revision`` name the commit.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (or training checkpoints)")
    parser.add_argument("--out", type=Path, default=Path("weights"), help="folder of the exports (one per model id)")
    parser.add_argument("--data-dir", help="folder with the data set files")
    parser.add_argument("--iw-samples", type=int, default=1000, help="K of the card's IW-NLL")
    parser.add_argument("--limit", type=int, help="score only the first N test images (default: all)")
    parser.add_argument("--quick-samples", type=int, default=50, help="K of the fast test's check")
    parser.add_argument("--quick-limit", type=int, default=200, help="images of the fast test's check")
    parser.add_argument("--threads", type=int, help="CPU threads for the evaluations")
    parser.add_argument("--overwrite", action="store_true", help="replace earlier exports in OUT")
    args = parser.parse_args(argv)

    from zoo.checkpoint import load_checkpoint
    from zoo.evaluate import evaluate
    from zoo.export import Scoring, export_run
    from zoo.exported import read_config

    entries = {}
    for run in args.runs:
        model_id = (load_checkpoint(run)["spec"].get("recipe") or {}).get("id") or run.name
        out = args.out / model_id
        scoring = Scoring(iw_samples=args.iw_samples, limit=args.limit, data_dir=args.data_dir, threads=args.threads)
        export_run(run, out, overwrite=args.overwrite, scoring=scoring, log=lambda m: print(m, file=sys.stderr))
        config = read_config(out)
        quick = evaluate(
            out,
            iw_samples=args.quick_samples,
            limit=args.quick_limit,
            data_dir=args.data_dir,
            device="cpu",
            fid=False,
            images=False,
            out=args.out / f".{model_id}-quick-eval",
            progress=False,
            threads=args.threads,
        )
        import shutil

        shutil.rmtree(args.out / f".{model_id}-quick-eval", ignore_errors=True)
        m = config["metrics"]
        entries[model_id] = {
            "sha256": config["weights"]["sha256"],
            "metrics": {
                "test_nll_iw": round(m["test_nll_iw"], 2),
                "iw_samples": m["iw_samples"],
                "n_images": m["n_images"],
                "seed": m["seed"],
                "epochs": config["training"]["epochs"],
                "quick": {
                    "test_nll_iw": round(quick["test_nll_iw"], 4),
                    "iw_samples": args.quick_samples,
                    "n_images": quick["n_images"],
                    "seed": 0,
                },
            },
        }
        print(
            f"{model_id}: {out}  IW-NLL {m['test_nll_iw']:.2f} ± {m['test_nll_iw_stderr']:.2f} "
            f"(K={m['iw_samples']}, {m['n_images']} images) after {config['training']['epochs']} epochs; "
            f"published {(config['recipe'].get('reference') or {}).get('test_nll', '-')}"
        )
    print(json.dumps(entries, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
