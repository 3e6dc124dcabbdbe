"""Compare finished or running runs: one table row per run directory, and learning curves.

Everything is read from what a run leaves (``config.json``, ``metrics.jsonl``, and
``eval/metrics.json`` when ``zoo eval`` has scored it), so runs of any model, objective or
plugin compare, and nothing needs torch.
"""

from __future__ import annotations

import math
import os
import statistics
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zoo.errors import ZooError, is_count
from zoo.plain_data import MAX_JSON_BYTES, finite, loads_json, read_json_file

MAX_METRICS_BYTES = MAX_JSON_BYTES
#: The two measures a run's ``test_loss`` can be (``RunSummary.test_measure``).
NEG_ELBO, RECONSTRUCTION = "-ELBO", "-log p(x|z)"
#: More runs than this are drawn without a legend (it would not fit beside the plot).
MAX_LEGEND_ENTRIES = 20


@dataclass
class RunSummary:
    """What ``zoo compare`` shows of one run."""

    run: str
    model: str
    objective: str
    epochs: int
    #: what test_loss is: the negative ELBO, or -log p(x|z) at the code for a deterministic encoder
    test_measure: str
    best_neg_elbo: float | None
    best_epoch: int | None
    last_neg_elbo: float | None
    iw_nll: float | None
    iw_samples: int | None
    iw_epoch: int | None
    seconds_per_epoch: float | None
    history: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("history")
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise ZooError(
            f"{path.parent} is not a zoo run: it has no {path.name} ({what}); give run directories "
            "written by 'zoo train'"
        )
    return read_json_file(path, what, max_bytes=MAX_METRICS_BYTES)


def _text(value: Any, limit: int = 80) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _objective_label(recipe: dict[str, Any]) -> str:
    objective = recipe.get("objective", "elbo")
    objective = objective if isinstance(objective, str) else "?"
    options = recipe.get("objective_options")
    options = dict(options) if isinstance(options, dict) else {}
    training = recipe.get("training")
    beta = training.get("beta") if isinstance(training, dict) else None  # runs written before objectives were a kind
    if beta not in (None, 1.0) and objective == "elbo":
        options.setdefault("beta", beta)
    if not options:
        return _text(objective)
    return _text(f"{objective}(" + ", ".join(f"{k}={v}" for k, v in options.items()) + ")", 120)


def _read_history(metrics: Path) -> list[dict[str, Any]]:
    """The rows of ``metrics.jsonl``. A last line without its newline that is not JSON is what a
    kill mid-write leaves: it is skipped, and the complete lines are read."""
    if metrics.stat().st_size > MAX_METRICS_BYTES:
        raise ZooError(f"{metrics} is larger than {MAX_METRICS_BYTES // 2**20} MB; it is not a zoo run file")
    try:
        text = metrics.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise ZooError(f"cannot read {metrics}: {exc.strerror or exc}") from None
    lines = text.split("\n")
    history: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = loads_json(line, f"{metrics}, line {number},")
        except ZooError:
            if number == len(lines):  # no newline after it: cut short by a kill
                break
            raise ZooError(f"{metrics}, line {number}, is not JSON; was it written by zoo?") from None
        if isinstance(row, dict) and is_count(row.get("epoch")):
            history.append(row)
    return history


def _evaluation(path: Path, history: list[dict[str, Any]]) -> tuple[float | None, int | None, int | None]:
    """The IW-NLL, K and epoch of ``eval/metrics.json`` when it scored this run's model: its epoch is
    one the run's history has, and it was written after the run (re)started (``config.json`` is
    written at a start, an ``--overwrite`` and a resume); otherwise (None, None, None)."""
    evaluation = path / "eval" / "metrics.json"
    if not evaluation.is_file():
        return None, None, None
    scored = _read_json(evaluation, "written by zoo eval")
    if not isinstance(scored, dict):
        return None, None, None
    epoch = scored.get("epoch")
    if not is_count(epoch) or epoch not in {r["epoch"] for r in history}:
        return None, None, None  # an older run's model, or a checkpoint the history does not reach
    try:
        if evaluation.stat().st_mtime_ns < (path / "config.json").stat().st_mtime_ns:
            return None, None, None  # evaluated before this run was started, overwritten or resumed
    except OSError:
        return None, None, None
    samples = scored.get("iw_samples")
    nll = finite(scored.get("test_nll_iw"))
    if nll is None:
        return None, None, None
    return nll, samples if is_count(samples) else None, epoch


def summarize(run: str | os.PathLike) -> RunSummary:
    """Read one run directory; a folder that is not a run is a :class:`ZooError` naming it."""
    path = Path(run)
    if not path.is_dir():
        raise ZooError(f"{path} is not a run directory" + ("" if path.exists() else " (it does not exist)"))
    config = _read_json(path / "config.json", "written when the run starts")
    if not isinstance(config, dict) or not isinstance(config.get("recipe"), dict):
        raise ZooError(f"{path / 'config.json'} does not describe a zoo run (no recipe)")
    metrics = path / "metrics.jsonl"
    history = _read_history(metrics) if metrics.is_file() else []
    losses = [(finite(r.get("test_loss")), r["epoch"]) for r in history]
    losses = [(loss, epoch) for loss, epoch in losses if loss is not None]
    best = min(losses) if losses else None
    seconds = [s for s in (finite(r.get("epoch_seconds")) for r in history) if s is not None]
    iw_nll, iw_samples, iw_epoch = _evaluation(path, history)
    recipe = config["recipe"]
    # a deterministic encoder's runs log test_recon as their test loss and no KL term
    deterministic = bool(history) and all("test_kl" not in r and "test_recon" in r for r in history)
    return RunSummary(
        run=str(path),
        model=_text(config.get("model", recipe.get("id", "?"))),
        objective=_objective_label(recipe),
        epochs=len(history),
        test_measure=RECONSTRUCTION if deterministic else NEG_ELBO,
        best_neg_elbo=best[0] if best else None,
        best_epoch=best[1] if best else None,
        last_neg_elbo=finite(history[-1].get("test_loss")) if history else None,
        iw_nll=iw_nll,
        iw_samples=iw_samples,
        iw_epoch=iw_epoch,
        # the median is robust to the first epoch's start-up and to a busy machine
        seconds_per_epoch=statistics.median(seconds) if seconds else None,
        history=history,
    )


def _cell(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else "nan"
    return str(value)


def format_table(summaries: list[RunSummary]) -> str:
    """A plain-text table, one row per run: the test loss (the negative ELBO, or -log p(x|z) for a
    deterministic encoder, as its ``test`` column says) and the IW-NLL, in nats per example."""
    header = [
        "run",
        "model",
        "objective",
        "test",
        "epochs",
        "best",
        "(epoch)",
        "last",
        "IW-NLL",
        "(K)",
        "(epoch)",
        "s/epoch",
    ]
    rows = [
        [
            s.run,
            s.model,
            s.objective,
            s.test_measure,
            _cell(s.epochs),
            _cell(s.best_neg_elbo),
            _cell(s.best_epoch),
            _cell(s.last_neg_elbo),
            _cell(s.iw_nll),
            _cell(s.iw_samples),
            _cell(s.iw_epoch),
            _cell(s.seconds_per_epoch, 1),
        ]
        for s in summaries
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    numeric = set(range(4, len(header)))

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]).rstrip() + "\n"


def plot_curves(summaries: list[RunSummary], out: str | os.PathLike, metric: str = "test_loss") -> Path:
    """Write a PNG of ``metric`` against epochs for every run (needs matplotlib: pip install 'zoo[plot]')."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ZooError("--plot needs matplotlib; install it with: pip install 'zoo[plot]'") from None
    from zoo.checkpoint import atomic_write

    out = Path(out)
    if out.exists() and not out.is_file():
        raise ZooError(f"--plot {out} exists and is not a regular file; choose a .png path")
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    drawn = 0
    for s in summaries:
        points = [
            (r["epoch"], r[metric])
            for r in s.history
            if isinstance(r.get(metric), (int, float)) and math.isfinite(r[metric])
        ]
        if points:
            epochs, values = zip(*points)
            ax.plot(
                epochs,
                values,
                marker="o" if len(points) < 30 else None,
                markersize=3,
                # a $ would start matplotlib's math text
                label=f"{Path(s.run).name} ({s.model}, {s.objective})".replace("$", r"\$"),
            )
            drawn += 1
    if not drawn:
        plt.close(fig)
        raise ZooError(f"no run has a finite {metric!r} to plot yet")
    test = "test negative ELBO (nats per example)"
    if any(s.test_measure == RECONSTRUCTION for s in summaries):
        test = "test loss: -ELBO, or -log p(x|z) for a deterministic encoder (nats per example)"
    labels = {"test_loss": test, "train_loss": "training loss (nats per example)"}
    ax.set_xlabel("epoch")
    ax.set_ylabel(labels.get(metric, metric))
    ax.grid(True, alpha=0.3)
    if drawn <= MAX_LEGEND_ENTRIES:
        ax.set_title("zoo compare: learning curves")
        ax.legend(fontsize=8)
    else:  # a legend of that many runs covers the plot and cannot be laid out
        ax.set_title(f"zoo compare: learning curves of {drawn} runs (legend left out; see the table)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Tight layout not applied": the plot is still drawn
        fig.tight_layout()
    try:
        atomic_write(out, lambda f: fig.savefig(f, format="png"))
    except OSError as exc:
        raise ZooError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return out
