"""The ``zoo`` command line.

Imports are deferred into the commands so ``zoo --help`` and ``zoo list`` answer without
importing torch. Every :class:`zoo.ZooError` becomes a one-line ``Error: ...`` with exit code 1
(``--debug`` shows the traceback).
"""

from __future__ import annotations

import json
import os
import sys

import click

from zoo.errors import ZooError


class ZooGroup(click.Group):
    """Adds commands from plugins (``register_commands``) when the command list is first needed."""

    _plugins_added = False

    def _add_plugin_commands(self) -> None:
        if ZooGroup._plugins_added:
            return
        ZooGroup._plugins_added = True
        from zoo.plugins import call_hook, get_plugin_manager, get_registry

        call_hook(get_plugin_manager(), "register_commands", get_registry(), cli=self)

    def list_commands(self, ctx):
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is None:
            self._add_plugin_commands()
            command = super().get_command(ctx, name)
        return command


@click.group(cls=ZooGroup)
@click.version_option(package_name="zoo")
@click.option("--debug", is_flag=True, envvar="ZOO_DEBUG", help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """zoo: train, compare and extend variational autoencoders.

    \b
    Quick start:
      zoo list                      models you can train
      zoo train vae-conv-mnist      train the reference convolutional VAE on MNIST
      zoo plugins                   installed plugins and what they register
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _warn_broken(registry) -> None:
    broken = [p for p in registry.plugins.values() if p.error]
    for info in broken:
        click.echo(f"warning: plugin {info.name!r} is broken: {info.error} (see 'zoo plugins')", err=True)


@cli.command("list")
@click.argument("pattern", required=False)
@click.option(
    "--kind",
    type=click.Choice(["model", "encoder", "decoder", "prior", "likelihood", "dataset"]),
    default="model",
    show_default=True,
    help="What to list.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(pattern: str | None, kind: str, as_json: bool) -> None:
    """List registered models (or components), optionally matching a wildcard PATTERN ('vae-*')."""
    from zoo.plugins import get_registry

    registry = get_registry()
    registry_kind = "recipe" if kind == "model" else kind
    entries = [registry.entries[registry_kind][i] for i in registry.ids(registry_kind, pattern)]
    if as_json:
        click.echo(json.dumps(
            [{"id": e.id, "kind": kind, "plugin": e.plugin, "description": e.description} for e in entries], indent=2
        ))
    else:
        width = max((len(e.id) for e in entries), default=0)
        for e in entries:
            click.echo(f"{e.id:<{width}}  {e.description}".rstrip())
        if not entries:
            click.echo(f"no {kind}s" + (f" match {pattern!r}" if pattern else " registered"), err=True)
    _warn_broken(registry)


@cli.command("info")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info_command(model: str, as_json: bool) -> None:
    """Show a model's components, options, recipe and the plugin that provides each part."""
    from zoo.plugins import get_registry

    registry = get_registry()
    entry = registry.get("recipe", model)
    recipe = entry.load()
    parts = {}
    for kind, (component_id, options) in recipe.components().items():
        try:
            c = registry.get(kind, component_id)
            parts[kind] = {"id": component_id, "options": options, "plugin": c.plugin,
                           "factory": c.factory_name, "description": c.description}
        except ZooError as exc:
            parts[kind] = {"id": component_id, "options": options, "error": str(exc)}
    info = {"id": recipe.id, "description": recipe.description, "plugin": entry.plugin,
            "dataset": recipe.dataset, "latent_size": recipe.latent_size,
            "components": parts, "training": recipe.to_dict()["training"]}
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"{recipe.id}  (plugin {entry.plugin})")
    if recipe.description:
        click.echo(f"  {recipe.description}")
    click.echo(f"  dataset:     {recipe.dataset}")
    click.echo(f"  latent size: {recipe.latent_size}")
    for kind, part in parts.items():
        opts = ", ".join(f"{k}={v}" for k, v in part["options"].items())
        where = f"plugin {part['plugin']}, {part['factory']}" if "plugin" in part else part["error"]
        click.echo(f"  {kind + ':':<12} {part['id']}{' (' + opts + ')' if opts else ''}  [{where}]")
    click.echo("  training:    " + ", ".join(f"{k}={v}" for k, v in info["training"].items()))


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins_command(as_json: bool) -> None:
    """List plugins: name, version, what each registers, and load errors."""
    from zoo.plugins import get_registry

    registry = get_registry()
    infos = list(registry.plugins.values())
    if as_json:
        click.echo(json.dumps([i.to_dict() for i in infos], indent=2))
        return
    for info in infos:
        version = f" {info.version}" if info.version else ""
        dist = f" ({info.distribution}{version})" if info.distribution else f" ({info.source})"
        click.echo(f"{info.name}{dist}")
        for kind, ids in info.to_dict()["registered"].items():
            if ids:
                click.echo(f"  {kind}s: {', '.join(ids)}")
        if info.error:
            click.echo(f"  ERROR: {info.error}")


def _parse_sets(pairs: tuple[str, ...]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ZooError(f"--set expects key=value (e.g. --set latent_size=16), got {pair!r}")
        overrides[key.strip()] = value.strip()
    return overrides


@cli.command("train")
@click.argument("model", required=False)
@click.option("--epochs", type=int, help="Number of epochs (default: the recipe's).")
@click.option("--batch-size", type=int, help="Global batch size, split across torchrun processes.")
@click.option("--lr", type=float, help="Learning rate.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override any recipe setting: latent_size, beta, grad_clip, encoder.<option>, ... (repeatable).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True,
              help="auto: bf16 autocast on CUDA, fp32 elsewhere.")
@click.option("--compile/--no-compile", "compile_", default=False, help="Compile the model with torch.compile.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds model init, data order and noise.")
@click.option("--data-dir", type=click.Path(file_okay=False), envvar="ZOO_DATA",
              help="Folder with the data set files (default: $ZOO_DATA, else ~/.cache/zoo/data; downloads there).")
@click.option("--out", type=click.Path(), help="Run directory (default: runs/MODEL-TIMESTAMP).")
@click.option("--overwrite", is_flag=True, help="Replace an existing run in --out.")
@click.option("--resume", "resume", type=click.Path(), metavar="RUN", help="Continue the run in RUN where it stopped.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: only on a terminal).")
def train_command(model, epochs, batch_size, lr, sets, device, precision, compile_, seed, data_dir, out, overwrite,
                  resume, progress) -> None:
    """Train MODEL (see 'zoo list'), or continue a run with --resume RUN.

    \b
    Examples:
      zoo train vae-conv-mnist --epochs 10
      zoo train vae-conv-mnist --set latent_size=32 --set beta=2.0 --out runs/beta2
      zoo train --resume runs/beta2 --epochs 20
      torchrun --nproc-per-node 2 -m zoo train vae-conv-mnist --device cpu
    """
    for name, value, least in (("--epochs", epochs, 1), ("--batch-size", batch_size, 1)):
        if value is not None and value < least:
            raise ZooError(f"{name} must be at least {least} (got {value})")
    if lr is not None and not lr > 0:
        raise ZooError(f"--lr must be positive (got {lr})")
    from zoo.trainer import Trainer

    if resume:
        if model:
            raise ZooError("give either MODEL or --resume RUN, not both (a resumed run keeps its model)")
        if sets or batch_size is not None or lr is not None or overwrite:
            raise ZooError("--resume continues the run with its own settings; only --epochs and --device may change")
        trainer = Trainer.resume(resume, epochs=epochs, device=device if device != "auto" else None,
                                 progress=progress)
    else:
        if not model:
            raise ZooError("which model? give an id from 'zoo list' (e.g. zoo train vae-conv-mnist) or --resume RUN")
        overrides = _parse_sets(sets)
        for key, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr)):
            if value is not None:
                overrides[key] = value
        trainer = Trainer(model, overrides=overrides, out=out, overwrite=overwrite, device=device,
                          precision=precision, compile=compile_, seed=seed, data_dir=data_dir, progress=progress)
    if trainer.dist.is_main:
        click.echo(f"training {trainer.recipe.id} on {trainer.device} ({trainer.precision}"
                   f"{f', {trainer.dist.world_size} processes' if trainer.dist.enabled else ''}) -> {trainer.out}",
                   err=True)
    history = trainer.fit()
    if trainer.dist.is_main and history:
        last = history[-1]
        click.echo(f"done: test negative ELBO {last['test_loss']:.2f} nats/image after epoch {last['epoch']}; "
                   f"run directory {trainer.out}")


@cli.command("sample")
@click.argument("run", type=click.Path())
@click.option("--n", "count", type=int, default=64, show_default=True, help="Number of images.")
@click.option("--out", type=click.Path(dir_okay=False), default="samples.png", show_default=True, help="PNG to write.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
def sample_command(run: str, count: int, out: str, seed: int, device: str) -> None:
    """Decode COUNT prior samples of a trained model (run directory or checkpoint) into a PNG grid."""
    if count < 1:
        raise ZooError(f"--n must be at least 1 (got {count})")
    import torch

    from zoo.checkpoint import load
    from zoo.images import save_grid
    from zoo.trainer import resolve_device

    model = load(run, device=resolve_device(device))
    torch.manual_seed(seed)
    try:
        path = save_grid(model.sample(count), out)
    except OSError as exc:
        raise ZooError(f"cannot write {out}: {exc.strerror or exc}") from None
    click.echo(str(path))


def main(argv: list[str] | None = None) -> None:
    """Console entry point: turn user errors into one-line messages."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:]) or bool(os.environ.get("ZOO_DEBUG"))
    try:
        cli.main(args=argv, prog_name="zoo", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except ZooError as exc:
        if debug:
            raise
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
