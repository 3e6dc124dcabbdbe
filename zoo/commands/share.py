"""``zoo export`` and ``zoo push``: a trained model as a folder in the Hugging Face Hub's layout, and
its upload to the Hub."""

from __future__ import annotations

import click


def _scoring_options(command):
    """The options that say how an export is scored (``zoo eval``'s K, images and seed)."""
    for decorator in reversed(
        (
            click.option(
                "--iw-samples",
                type=int,
                default=1000,
                show_default=True,
                help="Importance samples K per test image for the card's IW-NLL (the literature's is 5000).",
            ),
            click.option("--limit", type=int, help="Score only the first N test images (default: all)."),
            click.option("--seed", type=int, default=0, show_default=True, help="Seeds the evaluation's draws."),
            click.option("--no-eval", is_flag=True, help="Export without scoring (the card then has no figures)."),
            click.option(
                "--data-dir",
                type=click.Path(file_okay=False),
                envvar="ZOO_DATA",
                help="Folder with the data set files (default: the run's, else $ZOO_DATA).",
            ),
            click.option("--threads", type=int, default=None, metavar="N", help="CPU threads for the evaluation."),
            click.option("--license", "license_", default="mit", show_default=True, help="The card's license id."),
        )
    ):
        command = decorator(command)
    return command


def _scoring(iw_samples, limit, seed, no_eval, data_dir, threads):
    from zoo.evaluate import _check_arguments
    from zoo.export import Scoring

    if no_eval:
        return None
    _check_arguments(iw_samples, 100, limit, "classifier", seed, threads)
    return Scoring(iw_samples=iw_samples, limit=limit, seed=seed, data_dir=data_dir, threads=threads)


@click.command("export")
@click.argument("run", type=click.Path(), metavar="RUN_OR_CHECKPOINT")
@click.argument("out", type=click.Path(), metavar="DIR")
@click.option("--overwrite", is_flag=True, help="Replace the export's files in DIR (other files are kept).")
@click.option("--repo", "repo_id", metavar="OWNER/NAME", help="The Hub repository the card's examples load from.")
@_scoring_options
def export_command(run, out, overwrite, repo_id, iw_samples, limit, seed, no_eval, data_dir, threads, license_):
    """Export a trained run as a folder in the Hugging Face Hub's layout: model.safetensors,
    config.json, a model card (README.md) with the model scored by 'zoo eval', its learning curve
    and samples.

    \b
    Examples:
      zoo export runs/vae-conv-mnist-20250101-120000 exported/vae-conv-mnist
      zoo export runs/x exported/x --iw-samples 5000 --repo me/my-vae
    """
    from zoo.export import export_run

    scoring = _scoring(iw_samples, limit, seed, no_eval, data_dir, threads)
    path = export_run(
        run,
        out,
        overwrite=overwrite,
        scoring=scoring,
        license=license_,
        repo_id=repo_id,
        log=lambda message: click.echo(message, err=True),
    )
    click.echo(str(path))


@click.command("push")
@click.argument("source", type=click.Path(), metavar="RUN_OR_DIR")
@click.argument("repo_id", metavar="OWNER/NAME")
@click.option("--revision", help="Branch to commit to (default: main).")
@click.option("--private", is_flag=True, help="Create the repository as private.")
@_scoring_options
def push_command(source, repo_id, revision, private, iw_samples, limit, seed, no_eval, data_dir, threads, license_):
    """Upload an exported folder (or a run, exported on the way) to the Hugging Face Hub as the model
    repository OWNER/NAME, with your token ('hf auth login' or HF_TOKEN). Only the export's files
    are sent.

    \b
    Examples:
      zoo push exported/vae-conv-mnist me/vae-conv-mnist
      zoo push runs/x me/my-vae --iw-samples 5000
    """
    import shutil
    import tempfile
    from pathlib import Path

    from zoo.exported import is_exported
    from zoo.hub import check_repo_id, push, require_hub

    check_repo_id(repo_id)
    require_hub("zoo push")
    folder, staging = Path(source), None
    if not is_exported(folder):
        from zoo.export import export_run

        scoring = _scoring(iw_samples, limit, seed, no_eval, data_dir, threads)
        staging = Path(tempfile.mkdtemp(prefix="zoo-push-"))
        folder = export_run(
            source,
            staging / "model",
            scoring=scoring,
            license=license_,
            repo_id=repo_id,
            log=lambda message: click.echo(message, err=True),
        )
    else:
        from zoo.checkpoint import load

        load(folder)  # never publish a folder that does not load
    try:
        url = push(folder, repo_id, revision=revision, private=private)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    click.echo(url)
