"""``zoo fit-prior``: fit a post-hoc prior (a registered sampler) to a trained run's codes."""

from __future__ import annotations

from typing import Any

import click

from zoo.errors import ZooError


def _parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``prior.KEY=VALUE`` pairs as sampler options, each value read as a number, a boolean, JSON or text."""
    from zoo.recipe import _convert

    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key.startswith("prior.") or not key[len("prior.") :]:
            raise ZooError(f"--set expects prior.KEY=VALUE (e.g. --set prior.components=10), got {pair!r}")
        options[key[len("prior.") :]] = _convert(value.strip(), None, key)
    return options


@click.command("fit-prior")
@click.argument("run", type=click.Path())
@click.option("--prior", "prior", required=True, metavar="ID", help="The sampler to fit ('zoo list --kind sampler').")
@click.option(
    "--set", "assignments", multiple=True, metavar="prior.KEY=VALUE", help="A sampler option, e.g. prior.components=10."
)
@click.option("--out", type=click.Path(file_okay=False), help="Folder for the fitted model (default: RUN-ID).")
@click.option("--epochs", type=int, help="Training epochs, for samplers trained by gradient steps (flows, two-stage).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the fit.")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty --out.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    envvar="ZOO_DATA",
    help="Folder with the data set files (default: the run's, else $ZOO_DATA).",
)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N, mps or auto.")
def fit_prior_command(run, prior, assignments, out, epochs, seed, overwrite, data_dir, device) -> None:
    """Fit a post-hoc prior to the codes of RUN's training set and write a model that samples through it.

    The new folder holds a checkpoint whose prior is the fitted sampler, so 'zoo sample DIR',
    'zoo eval DIR' and zoo.load(DIR) use it; RUN itself is left unchanged.

    \b
    Examples:
      zoo fit-prior runs/vae-conv-mnist-20250101-120000 --prior gmm --set prior.components=10
      zoo fit-prior runs/x --prior maf --epochs 20 --out runs/x-maf
    """
    from zoo.posthoc import fit_prior

    options = _parse_options(assignments)
    path = fit_prior(
        run,
        prior,
        options,
        out=out,
        epochs=epochs,
        seed=seed,
        overwrite=overwrite,
        data_dir=data_dir,
        device=device,
        log=lambda message: click.echo(message, err=True),
    )
    click.echo(str(path))
