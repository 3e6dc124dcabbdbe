"""``zoo train``: start a run from a model id or a recipe file, or continue one with ``--resume``."""

from __future__ import annotations

import os

import click

from zoo.errors import ZooError


def _is_recipe_file(model: str) -> bool:
    """A MODEL argument naming a recipe file rather than a registered id."""
    return model.endswith(".toml") or os.sep in model or (os.altsep is not None and os.altsep in model)


def _same_path(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _shown(path: str | os.PathLike) -> str:
    """A path as it can be printed: bytes that are not UTF-8 (kept by Python as surrogates) as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _parse_sets(pairs: tuple[str, ...]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ZooError(f"--set expects key=value (e.g. --set latent_size=16), got {pair!r}")
        overrides[key.strip()] = value.strip()
    return overrides


@click.command("train")
@click.argument("model", required=False)
@click.option("--epochs", type=int, help="Number of epochs (default: the recipe's).")
@click.option("--batch-size", type=int, help="Global batch size, split across torchrun processes.")
@click.option("--lr", type=float, help="Learning rate.")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override any recipe setting: latent_size, beta, grad_clip, encoder.<option>, ... (repeatable).",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
    default=None,
    help="auto (the default): fp32, or on CUDA whichever of fp32 and bf16 autocast is measured faster for the model.",
)
@click.option(
    "--threads",
    type=int,
    default=None,
    metavar="N",
    help="CPU threads (default: torch's count, lowered to the cores other processes leave idle when the "
    "run starts; kept on --resume).",
)
@click.option(
    "--cuda-graph/--no-cuda-graph",
    "cuda_graph",
    default=None,
    help="On CUDA, replay the whole training step from a CUDA graph (default: on where it can be captured).",
)
@click.option(
    "--deterministic/--no-deterministic",
    "deterministic",
    default=None,
    help="Deterministic algorithms only (torch, cuDNN, cuBLAS), so a rerun or a resumed run on a GPU is "
    "bit-identical whatever the model calls. Default: cuDNN's and cuBLAS's only, on CUDA; "
    "--no-deterministic: neither. Kept on --resume.",
)
@click.option("--compile/--no-compile", "compile_", default=None, help="Compile the model with torch.compile.")
@click.option("--seed", type=int, default=None, help="Seeds model init, data order and noise (default 0).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    envvar="ZOO_DATA",
    help="Folder with the data set files (default: $ZOO_DATA, else ~/.cache/zoo/data; downloads there).",
)
@click.option("--out", type=click.Path(), help="Run directory (default: runs/MODEL-TIMESTAMP).")
@click.option("--overwrite", is_flag=True, help="Replace an existing run in --out.")
@click.option("--resume", "resume", type=click.Path(), metavar="RUN", help="Continue the run in RUN where it stopped.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: only on a terminal).")
@click.option(
    "--keep-every",
    type=int,
    default=None,
    metavar="N",
    help="Also keep checkpoints/epoch-NNNN.pt every N epochs, for curves over training (default 0: "
    "only last.pt and best.pt).",
)
@click.option(
    "--max-steps",
    type=int,
    default=None,
    metavar="N",
    help="A quick look: train N steps, evaluate on a few test batches and write the run directory.",
)
@click.option(
    "--data",
    "data",
    type=click.Path(),
    metavar="PATH",
    help="Train on your own images: a folder of images, or an .npy/.npz array of uint8 images (docs/data.md).",
)
@click.option(
    "--image-size",
    metavar="SIZE",
    help="With --data: resize and centre-crop every image to SIZE (64, or HxW such as 64x48).",
)
@click.option(
    "--test-fraction",
    type=float,
    default=None,
    help="With --data and no train/ and test/ folders: the share of images held out for testing (default 0.1).",
)
@click.option(
    "--on-bad",
    type=click.Choice(["skip", "stop"]),
    default=None,
    help="With --data: skip unreadable images with a count (default), or stop at the first.",
)
@click.option(
    "--data-placement",
    type=click.Choice(["auto", "device", "stream"]),
    default=None,
    help="Hold the data on the device, or stream it batch by batch (default auto: on the device when it fits).",
)
@click.option("--data-workers", type=int, default=None, metavar="N", help="Loader processes when streaming.")
@click.option(
    "--init-from",
    metavar="SOURCE",
    help="Start from trained weights (a run, a checkpoint, an exported folder or hf://owner/name[@rev]) "
    "of the same architecture: fine-tuning.",
)
def train_command(
    model,
    epochs,
    batch_size,
    lr,
    sets,
    device,
    precision,
    threads,
    cuda_graph,
    deterministic,
    compile_,
    seed,
    data_dir,
    out,
    overwrite,
    resume,
    progress,
    keep_every,
    max_steps,
    data,
    image_size,
    test_fraction,
    on_bad,
    data_placement,
    data_workers,
    init_from,
) -> None:
    """Train MODEL (an id from 'zoo list', or a recipe file FILE.toml), or continue a run with --resume RUN.

    \b
    Examples:
      zoo train vae-conv-mnist --epochs 10
      zoo train vae-conv-mnist --max-steps 20 --out runs/look
      zoo train vae-conv --data ./my-images --image-size 64
      zoo info vae-conv-mnist --toml > my-model.toml; zoo train my-model.toml
      zoo train vae-conv-mnist --set latent_size=32 --set beta=2.0 --out runs/beta2
      zoo train --resume runs/beta2 --epochs 20
      zoo train vae-conv-mnist --init-from hf://owner/name --epochs 5
      torchrun --nproc-per-node 2 -m zoo train vae-conv-mnist --device cpu
    """
    if resume:
        # The resume-option rule (docs/training.md#resuming): these may change, the rest is the run's.
        if model:
            raise ZooError("give either MODEL or --resume RUN, not both (a resumed run keeps its model)")
        fixed = [
            name
            for name, given in (
                ("--set", bool(sets)),
                ("--batch-size", batch_size is not None),
                ("--lr", lr is not None),
                ("--seed", seed is not None),
                ("--compile/--no-compile", compile_ is not None),
                ("--overwrite", overwrite),
                ("--max-steps", max_steps is not None),
                ("--data", data is not None),
                ("--image-size", image_size is not None),
                ("--test-fraction", test_fraction is not None),
                ("--on-bad", on_bad is not None),
                ("--init-from", init_from is not None),
            )
            if given
        ]
        if out is not None and not _same_path(out, resume):
            fixed.append("--out")
        if fixed:
            raise ZooError(
                f"--resume continues the run with its own settings, so {', '.join(fixed)} cannot be "
                "given; only --epochs, --device, --precision, --threads, --cuda-graph, --deterministic, "
                "--data-dir, --data-placement, --data-workers and --keep-every may change"
            )
        if epochs is not None and epochs < 1:
            raise ZooError(f"--epochs must be at least 1 (got {epochs})")
        from zoo.trainer import Trainer

        trainer = Trainer.resume(
            resume,
            epochs=epochs,
            device=device if device != "auto" else None,
            precision=precision,
            data_dir=data_dir,
            progress=progress,
            keep_every=keep_every,
            cuda_graph=cuda_graph,
            threads=threads,
            deterministic=deterministic,
            data_placement=data_placement,
            data_workers=data_workers,
        )
    else:
        # Resolved and checked once, before the seconds it takes to import torch.
        from zoo.plan import plan_run

        if model and _is_recipe_file(model):
            from zoo.recipe_files import recipe_from_file

            model = recipe_from_file(model)
        overrides = _parse_sets(sets)
        for key, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr)):
            if value is not None:
                overrides[key] = value
        plan = plan_run(
            model,
            overrides=overrides,
            out=out,
            overwrite=overwrite,
            device=device,
            precision=precision or "auto",
            compile=bool(compile_),
            seed=0 if seed is None else seed,
            data_dir=data_dir,
            progress=progress,
            keep_every=keep_every or 0,
            cuda_graph=cuda_graph is not False,
            threads=threads,
            deterministic="auto" if deterministic is None else deterministic,
            max_steps=max_steps,
            data_placement=data_placement or "auto",
            data_workers=data_workers,
            data=data,
            data_options=_data_options(data, image_size, test_fraction, on_bad),
            init_from=init_from,
        )
        from zoo.trainer import Trainer

        trainer = Trainer(plan)
    if trainer.dist.is_main:
        click.echo(
            f"training {trainer.recipe.id} on {trainer.device} ({trainer.precision}"
            f"{f', {trainer.dist.world_size} processes' if trainer.dist.enabled else ''}) -> {_shown(trainer.out)}",
            err=True,
        )
    history = trainer.fit()
    if trainer.dist.is_main and history:
        last = history[-1]
        what = "test negative ELBO" if "test_kl" in last else "test reconstruction -log p(x|z)"
        click.echo(
            f"done: {what} {last['test_loss']:.2f} nats/image after epoch {last['epoch']}; "
            f"run directory {_shown(trainer.out)}"
        )


def _data_options(data, image_size, test_fraction, on_bad) -> dict:
    """The ``--data`` reading options given (``--image-size`` as an int or a (height, width) pair)."""
    given = [
        name
        for name, value in (("--image-size", image_size), ("--test-fraction", test_fraction), ("--on-bad", on_bad))
        if value is not None
    ]
    if data is None:
        if given:
            raise ZooError(f"{', '.join(given)} go with --data PATH (your own images); give --data or leave them out")
        return {}
    options: dict = {}
    if image_size is not None:
        text = image_size.strip().lower()
        parts = text.split("x")
        if not all(p.strip().isdigit() for p in parts) or len(parts) > 2:
            raise ZooError(
                f"--image-size must be a size in pixels such as 64, or HEIGHTxWIDTH such as 64x48 (got {image_size!r})"
            )
        sizes = [int(p) for p in parts]
        options["image_size"] = sizes[0] if len(sizes) == 1 else tuple(sizes)
    if test_fraction is not None:
        options["test_fraction"] = test_fraction
    if on_bad is not None:
        options["on_bad"] = on_bad
    return options
