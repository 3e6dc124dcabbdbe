"""The commands that read trained runs: ``zoo compare``, ``zoo sample`` and ``zoo eval``."""

from __future__ import annotations

import json

import click

from zoo.errors import ZooError

#: The most images ``zoo sample`` puts in one PNG grid.
MAX_SAMPLES = 10_000


@click.command("compare")
@click.argument("runs", nargs=-1, required=True, type=click.Path(), metavar="RUN [RUN...]")
@click.option("--plot", type=click.Path(dir_okay=False), help="Also write the learning curves of all runs to this PNG.")
@click.option(
    "--metric",
    default="test_loss",
    show_default=True,
    help="What --plot draws against epochs (any column of metrics.jsonl).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def compare_command(runs: tuple[str, ...], plot: str | None, metric: str, as_json: bool) -> None:
    """Compare runs side by side: model, objective, epochs, best and last test negative ELBO, the
    IW-NLL where 'zoo eval' scored the run, and seconds per epoch.

    \b
    Examples:
      zoo compare runs/*
      zoo compare runs/beta1 runs/beta2 runs/beta4 --plot curves.png
    """
    from zoo.compare import format_table, plot_curves, summarize

    summaries = [summarize(run) for run in runs]
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in summaries], indent=2))
    else:
        click.echo(format_table(summaries), nl=False)
    if plot:
        click.echo(f"learning curves: {plot_curves(summaries, plot, metric)}", err=True)


@click.command("sample")
@click.argument("run", type=click.Path())
@click.option("--n", "count", type=int, default=64, show_default=True, help="Number of images.")
@click.option("--out", type=click.Path(dir_okay=False), default="samples.png", show_default=True, help="PNG to write.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
def sample_command(run: str, count: int, out: str, seed: int, device: str) -> None:
    """Decode COUNT prior samples of a trained model (run directory or checkpoint) into a PNG grid."""
    if not 1 <= count <= MAX_SAMPLES:
        raise ZooError(f"--n must be from 1 to {MAX_SAMPLES} (got {count}): one PNG grid holds at most that many")
    from zoo.plan import check_seed

    check_seed(seed)  # one rule for zoo train, zoo sample and zoo eval
    from zoo.rundir import check_output_file

    check_output_file(out)  # before any work: never replace a device, a fifo or a symlink with a PNG
    import torch

    from zoo.checkpoint import load
    from zoo.devices import resolve_device
    from zoo.images import save_grid

    model = load(run, device=resolve_device(device))
    torch.manual_seed(seed)
    try:
        path = save_grid(model.sample(count), out)
    except OSError as exc:
        raise ZooError(f"cannot write {out}: {exc.strerror or exc}") from None
    click.echo(str(path))


@click.command("eval")
@click.argument("run", type=click.Path(), metavar="RUN_OR_CHECKPOINT")
@click.option(
    "--iw-samples",
    type=int,
    default=1000,
    show_default=True,
    help="Importance samples K per image for the IW estimate (the literature's standard is 5000).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    envvar="ZOO_DATA",
    help="Folder with the data set files (default: the run's, else $ZOO_DATA, else ~/.cache/zoo/data).",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--batch-size", type=int, default=100, show_default=True, help="Test images encoded at a time.")
@click.option("--fid/--no-fid", default=True, show_default=True, help="Compute the FID of generated samples.")
@click.option(
    "--fid-features",
    type=click.Choice(["auto", "classifier", "inception"]),
    default="auto",
    show_default=True,
    help="FID feature space: Inception-v3 (needs torch-fidelity and its weights), or a small classifier "
    "trained on the training set and cached (offline); auto takes Inception where its weights are present.",
)
@click.option(
    "--out", type=click.Path(file_okay=False), help="Folder for the PNGs and metrics.json (default: RUN/eval)."
)
@click.option("--limit", type=int, help="Score only the first N test images.")
@click.option("--dataset", help="Data set id, for a checkpoint that does not name one.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the posterior and prior draws.")
@click.option(
    "--progress/--no-progress", default=None, help="Progress bar (default: a bar on a terminal, plain lines otherwise)."
)
@click.option(
    "--threads",
    type=int,
    default=None,
    metavar="N",
    help="CPU threads (default: torch's count, lowered to the cores other processes leave idle).",
)
def eval_command(
    run,
    iw_samples,
    as_json,
    data_dir,
    device,
    batch_size,
    fid,
    fid_features,
    out,
    limit,
    dataset,
    seed,
    progress,
    threads,
) -> None:
    """Evaluate a trained model on its test set: negative ELBO, importance-weighted NLL, bits/dim,
    active units and FID; writes reconstructions, samples and a latent interpolation as PNG.

    \b
    Examples:
      zoo eval runs/vae-conv-mnist-20250101-120000
      zoo eval runs/x --iw-samples 5000 --json
      zoo eval runs/x/checkpoints/best.pt --limit 1000 --no-fid
    """
    from zoo.plan import check_seed
    from zoo.threads import check_thread_count

    if iw_samples < 1:
        raise ZooError(f"--iw-samples must be at least 1 (got {iw_samples})")
    for name, value in (("--batch-size", batch_size), ("--limit", limit), ("--threads", threads)):
        if value is not None and value < 1:
            raise ZooError(f"{name} must be at least 1 (got {value})")
    check_seed(seed)  # the rule of zoo train and zoo sample too
    check_thread_count(threads)
    from zoo.checkpoint import resolve_checkpoint_path

    resolve_checkpoint_path(run)  # a missing checkpoint fails before torch is imported
    from zoo.evaluate import _check_arguments, evaluate, json_safe

    _check_arguments(iw_samples, batch_size, limit, fid_features, seed, threads)  # K is bounded there

    result = evaluate(
        run,
        iw_samples=iw_samples,
        data_dir=data_dir,
        device=device,
        batch_size=batch_size,
        limit=limit,
        fid=fid,
        fid_features=fid_features,
        out=out,
        dataset=dataset,
        seed=seed,
        progress=progress,
        threads=threads,
        log=lambda message: click.echo(message, err=True),
    )
    if as_json:
        click.echo(json.dumps(json_safe(result), indent=2, allow_nan=False))
        return

    def stat(key):
        return f"{result[key]:.2f} ± {result[key + '_stderr']:.2f} nats/image"

    click.echo(
        f"{result['model'] or result['checkpoint']} (epoch {result['epoch']}), "
        f"{result['n_images']} test images of {result['dataset']}"
    )
    if result["test_nll_iw"] is None:  # a deterministic encoder: no density, no bound
        click.echo(f"  reconstruction       {stat('test_recon')} (-log p(x|z) at the code)")
        click.echo(f"  negative ELBO, IW NLL  n/a ({result.get('test_nll_iw_note', 'not applicable')})")
    else:
        click.echo(
            f"  negative ELBO        {stat('test_neg_elbo')} (recon {result['test_recon']:.2f}, KL {result['test_kl']:.2f})"
        )
        bpd = f", {result['bits_per_dim']:.4f} bits/dim" if result["bits_per_dim"] is not None else ""
        click.echo(f"  {'IW NLL (K=' + str(result['iw_samples']) + ')':<20} {stat('test_nll_iw')}{bpd}")
    if result.get("test_mse") is not None:
        click.echo(f"  squared error        {result['test_mse']:.2f} per image (reconstruction at the posterior mean)")
    click.echo(f"  active units         {result['active_units']} of {result['latent_size']}")
    if result["fid"] is not None:
        click.echo(
            f"  {'FID (' + result['fid_features'] + ')':<20} {result['fid']:.2f} on {result['fid_images']} images"
        )
    if "iw_seconds" in result:
        click.echo(
            f"  IW speed             {result['iw_samples_per_second']:,.0f} samples/s "
            f"({result['iw_seconds']:.1f} s); total {result['seconds']:.1f} s"
        )
    else:
        click.echo(f"  total                {result['seconds']:.1f} s")
    for name, path in result.get("images", {}).items():
        click.echo(f"  {name + ':':<20} {path}")
