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

from zoo.errors import UnknownIdError, ZooError


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
    from zoo.plugins import selection_note

    note = selection_note()
    if note and not registry.entries.get("recipe"):
        click.echo(f"warning: {note}", err=True)
    broken = [p for p in registry.plugins.values() if p.error]
    for info in broken:
        click.echo(f"warning: plugin {info.name!r} is broken: {info.error} (see 'zoo plugins')", err=True)


@cli.command("list")
@click.argument("pattern", required=False)
@click.option(
    "--kind",
    type=click.Choice(["model", "encoder", "decoder", "prior", "likelihood", "objective", "dataset"]),
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


def _options_of(registry, kind: str, component_id: str, given: dict) -> dict:
    """A component's (or objective's) entry with every option of its factory: type, default, value."""
    entry = registry.get(kind, component_id)
    from zoo.factories import factory_options, injected_kinds

    factory = entry.load()
    options = []
    for option in factory_options(factory):
        row = dict(option)
        if option["name"] in given:
            row["value"] = given[option["name"]]
        options.append(row)
    return {"id": component_id, "kind": kind, "plugin": entry.plugin, "factory": entry.factory_name,
            "description": entry.description, "options": options, "set": dict(given),
            "receives": injected_kinds(factory)}


def _format_options(part: dict, indent: str) -> list[str]:
    lines = []
    for o in part["options"]:
        default = "required" if o["required"] else f"default {o['default']!r}"
        value = f" = {o['value']!r}" if "value" in o else ""
        lines.append(f"{indent}{o['name']}: {o['type']}{value}  ({default})")
    if part.get("receives"):
        lines.append(f"{indent}(receives the model's {', '.join(part['receives'])})")
    return lines


@cli.command("info")
@click.argument("name")
@click.option("--kind", type=click.Choice(["model", "encoder", "decoder", "prior", "likelihood", "objective"]),
              help="What NAME is, when a component and a model share an id.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--toml", "as_toml", is_flag=True,
              help="Print the model's recipe as a recipe file, to edit and train with 'zoo train FILE.toml'.")
def info_command(name: str, kind: str | None, as_json: bool, as_toml: bool) -> None:
    """Show a model's (or one component's) parts and every option, with its type and default.

    NAME is a model id ('zoo list') or a component or objective id ('zoo list --kind prior').
    """
    from zoo.plugins import get_registry

    registry = get_registry()
    from zoo.recipe import OPTION_KINDS as component_kinds  # the four components and the objective
    if as_toml and (kind not in (None, "model") or name not in registry.entries["recipe"]):
        if any(name in registry.entries[k] for k in component_kinds):
            raise ZooError(f"--toml prints a model's recipe; {name!r} is a component, not a model")
        registry.get("recipe", name)  # the unknown-model error, with its suggestions
    if kind in component_kinds or (kind is None and name not in registry.entries["recipe"]):
        kinds = [kind] if kind else [k for k in component_kinds if name in registry.entries[k]]
        if not kinds:
            registry.get("recipe", name)  # the unknown-model error, with its suggestions
        parts = [_options_of(registry, k, name, {}) for k in kinds]
        if as_json:
            click.echo(json.dumps(parts if len(parts) > 1 else parts[0], indent=2, default=str))
            return
        for part in parts:
            click.echo(f"{part['kind']} {part['id']}  (plugin {part['plugin']}, {part['factory']})")
            if part["description"]:
                click.echo(f"  {part['description']}")
            click.echo("  options:" if part["options"] else "  options: none")
            for line in _format_options(part, "    "):
                click.echo(line)
        return
    entry = registry.get("recipe", name)
    recipe = entry.load()
    if as_toml:
        from zoo.recipe import recipe_to_toml

        click.echo(recipe_to_toml(recipe), nl=False)
        return
    parts = {}
    for part_kind, (component_id, options) in {**recipe.components(),
                                               "objective": (recipe.objective, dict(recipe.objective_options))}.items():
        try:
            parts[part_kind] = _options_of(registry, part_kind, component_id, options)
        except ZooError as exc:
            parts[part_kind] = {"id": component_id, "set": options, "error": str(exc)}
    info = {"id": recipe.id, "description": recipe.description, "plugin": entry.plugin,
            "dataset": recipe.dataset, "latent_size": recipe.latent_size,
            "components": parts, "training": recipe.to_dict()["training"], "reference": recipe.reference}
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    click.echo(f"{recipe.id}  (plugin {entry.plugin})")
    if recipe.description:
        click.echo(f"  {recipe.description}")
    click.echo(f"  dataset:     {recipe.dataset}")
    click.echo(f"  latent size: {recipe.latent_size}")
    for part_kind, part in parts.items():
        if "error" in part:
            click.echo(f"  {part_kind + ':':<12} {part['id']}  [{part['error']}]")
            continue
        click.echo(f"  {part_kind + ':':<12} {part['id']}  [plugin {part['plugin']}, {part['factory']}]")
        for line in _format_options(part, "      "):
            click.echo(line)
    click.echo("  training:    " + ", ".join(f"{k}={v}" for k, v in info["training"].items()))
    if recipe.reference:
        click.echo("  reference:   " + "; ".join(f"{k}: {v}" for k, v in recipe.reference.items()))


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


def _is_recipe_file(model: str) -> bool:
    """A MODEL argument naming a recipe file rather than a registered id."""
    return model.endswith(".toml") or os.sep in model or (os.altsep is not None and os.altsep in model)


#: The most images ``zoo sample`` puts in one PNG grid.
MAX_SAMPLES = 10_000


def _same_path(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


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
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default=None,
              help="auto (the default): fp32, or on CUDA whichever of fp32 and bf16 autocast is measured faster "
                   "for the model.")
@click.option("--threads", type=int, default=None, metavar="N",
              help="CPU threads (default: torch's count, lowered to the cores other processes leave idle when the "
                   "run starts; kept on --resume).")
@click.option("--cuda-graph/--no-cuda-graph", "cuda_graph", default=None,
              help="On CUDA, replay the whole training step from a CUDA graph (default: on where it can be captured).")
@click.option("--deterministic/--no-deterministic", "deterministic", default=None,
              help="Deterministic algorithms only (torch, cuDNN, cuBLAS), so a rerun or a resumed run on a GPU is "
                   "bit-identical whatever the model calls. Default: cuDNN's and cuBLAS's only, on CUDA; "
                   "--no-deterministic: neither. Kept on --resume.")
@click.option("--compile/--no-compile", "compile_", default=None, help="Compile the model with torch.compile.")
@click.option("--seed", type=int, default=None, help="Seeds model init, data order and noise (default 0).")
@click.option("--data-dir", type=click.Path(file_okay=False), envvar="ZOO_DATA",
              help="Folder with the data set files (default: $ZOO_DATA, else ~/.cache/zoo/data; downloads there).")
@click.option("--out", type=click.Path(), help="Run directory (default: runs/MODEL-TIMESTAMP).")
@click.option("--overwrite", is_flag=True, help="Replace an existing run in --out.")
@click.option("--resume", "resume", type=click.Path(), metavar="RUN", help="Continue the run in RUN where it stopped.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: only on a terminal).")
@click.option("--keep-every", type=int, default=None, metavar="N",
              help="Also keep checkpoints/epoch-NNNN.pt every N epochs, for curves over training (default 0: "
                   "only last.pt and best.pt).")
@click.option("--max-steps", type=int, default=None, metavar="N",
              help="A quick look: train N steps, evaluate on a few test batches and write the run directory.")
def train_command(model, epochs, batch_size, lr, sets, device, precision, threads, cuda_graph, deterministic,
                  compile_, seed, data_dir, out, overwrite, resume, progress, keep_every, max_steps) -> None:
    """Train MODEL (an id from 'zoo list', or a recipe file FILE.toml), or continue a run with --resume RUN.

    \b
    Examples:
      zoo train vae-conv-mnist --epochs 10
      zoo train vae-conv-mnist --max-steps 20 --out runs/look
      zoo info vae-conv-mnist --toml > my-model.toml; zoo train my-model.toml
      zoo train vae-conv-mnist --set latent_size=32 --set beta=2.0 --out runs/beta2
      zoo train --resume runs/beta2 --epochs 20
      torchrun --nproc-per-node 2 -m zoo train vae-conv-mnist --device cpu
    """
    if resume:
        # The resume-option rule (docs/training.md#resuming): these may change, the rest is the run's.
        if model:
            raise ZooError("give either MODEL or --resume RUN, not both (a resumed run keeps its model)")
        fixed = [name for name, given in (("--set", bool(sets)), ("--batch-size", batch_size is not None),
                                          ("--lr", lr is not None), ("--seed", seed is not None),
                                          ("--compile/--no-compile", compile_ is not None),
                                          ("--overwrite", overwrite), ("--max-steps", max_steps is not None))
                 if given]
        if out is not None and not _same_path(out, resume):
            fixed.append("--out")
        if fixed:
            raise ZooError(f"--resume continues the run with its own settings, so {', '.join(fixed)} cannot be "
                           "given; only --epochs, --device, --precision, --threads, --cuda-graph, --deterministic, "
                           "--data-dir and --keep-every may change")
        if epochs is not None and epochs < 1:
            raise ZooError(f"--epochs must be at least 1 (got {epochs})")
        from zoo.trainer import Trainer

        trainer = Trainer.resume(resume, epochs=epochs, device=device if device != "auto" else None,
                                 precision=precision, data_dir=data_dir, progress=progress, keep_every=keep_every,
                                 cuda_graph=cuda_graph, threads=threads, deterministic=deterministic)
    else:
        # Resolved and checked once, before the seconds it takes to import torch.
        from zoo.plan import plan_run

        if model and _is_recipe_file(model):
            from zoo.recipe import recipe_from_file

            model = recipe_from_file(model)
        overrides = _parse_sets(sets)
        for key, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr)):
            if value is not None:
                overrides[key] = value
        plan = plan_run(model, overrides=overrides, out=out, overwrite=overwrite, device=device,
                        precision=precision or "auto", compile=bool(compile_), seed=0 if seed is None else seed,
                        data_dir=data_dir, progress=progress, keep_every=keep_every or 0,
                        cuda_graph=cuda_graph is not False, threads=threads,
                        deterministic="auto" if deterministic is None else deterministic, max_steps=max_steps)
        from zoo.trainer import Trainer

        trainer = Trainer(plan)
    if trainer.dist.is_main:
        click.echo(f"training {trainer.recipe.id} on {trainer.device} ({trainer.precision}"
                   f"{f', {trainer.dist.world_size} processes' if trainer.dist.enabled else ''}) -> {trainer.out}",
                   err=True)
    history = trainer.fit()
    if trainer.dist.is_main and history:
        last = history[-1]
        click.echo(f"done: test negative ELBO {last['test_loss']:.2f} nats/image after epoch {last['epoch']}; "
                   f"run directory {trainer.out}")


@cli.command("compare")
@click.argument("runs", nargs=-1, required=True, type=click.Path(), metavar="RUN [RUN...]")
@click.option("--plot", type=click.Path(dir_okay=False), help="Also write the learning curves of all runs to this PNG.")
@click.option("--metric", default="test_loss", show_default=True,
              help="What --plot draws against epochs (any column of metrics.jsonl).")
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


@cli.command("sample")
@click.argument("run", type=click.Path())
@click.option("--n", "count", type=int, default=64, show_default=True, help="Number of images.")
@click.option("--out", type=click.Path(dir_okay=False), default="samples.png", show_default=True, help="PNG to write.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
def sample_command(run: str, count: int, out: str, seed: int, device: str) -> None:
    """Decode COUNT prior samples of a trained model (run directory or checkpoint) into a PNG grid."""
    if not 1 <= count <= MAX_SAMPLES:
        raise ZooError(f"--n must be from 1 to {MAX_SAMPLES} (got {count}): one PNG grid holds at most that many")
    from zoo.rundir import check_output_file

    check_output_file(out)  # before any work: never replace a device, a fifo or a symlink with a PNG
    import torch

    from zoo.checkpoint import load
    from zoo.images import save_grid
    from zoo.devices import resolve_device

    model = load(run, device=resolve_device(device))
    torch.manual_seed(seed)
    try:
        path = save_grid(model.sample(count), out)
    except OSError as exc:
        raise ZooError(f"cannot write {out}: {exc.strerror or exc}") from None
    click.echo(str(path))


@cli.command("eval")
@click.argument("run", type=click.Path(), metavar="RUN_OR_CHECKPOINT")
@click.option("--iw-samples", type=int, default=1000, show_default=True,
              help="Importance samples K per image for the IW estimate (the literature's standard is 5000).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--data-dir", type=click.Path(file_okay=False), envvar="ZOO_DATA",
              help="Folder with the data set files (default: the run's, else $ZOO_DATA, else ~/.cache/zoo/data).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--batch-size", type=int, default=100, show_default=True, help="Test images encoded at a time.")
@click.option("--fid/--no-fid", default=True, show_default=True, help="Compute the FID of generated samples.")
@click.option("--fid-features", type=click.Choice(["classifier", "inception"]), default="classifier",
              show_default=True,
              help="FID feature space: a small classifier trained on the training set and cached (offline), "
                   "or Inception-v3 (needs torch-fidelity and its weights).")
@click.option("--out", type=click.Path(file_okay=False), help="Folder for the PNGs and metrics.json (default: RUN/eval).")
@click.option("--limit", type=int, help="Score only the first N test images.")
@click.option("--dataset", help="Data set id, for a checkpoint that does not name one.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the posterior and prior draws.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: a bar on a terminal, plain lines otherwise).")
@click.option("--threads", type=int, default=None, metavar="N",
              help="CPU threads (default: torch's count, lowered to the cores other processes leave idle).")
def eval_command(run, iw_samples, as_json, data_dir, device, batch_size, fid, fid_features, out, limit, dataset, seed,
                 progress, threads) -> None:
    """Evaluate a trained model on its test set: negative ELBO, importance-weighted NLL, bits/dim,
    active units and FID; writes reconstructions, samples and a latent interpolation as PNG.

    \b
    Examples:
      zoo eval runs/vae-conv-mnist-20250101-120000
      zoo eval runs/x --iw-samples 5000 --json
      zoo eval runs/x/checkpoints/best.pt --limit 1000 --no-fid
    """
    if iw_samples < 1:
        raise ZooError(f"--iw-samples must be at least 1 (got {iw_samples})")
    for name, value in (("--batch-size", batch_size), ("--limit", limit), ("--threads", threads)):
        if value is not None and value < 1:
            raise ZooError(f"{name} must be at least 1 (got {value})")
    from zoo.checkpoint import resolve_checkpoint_path

    resolve_checkpoint_path(run)  # a missing checkpoint fails before torch is imported
    from zoo.evaluate import evaluate, json_safe

    result = evaluate(run, iw_samples=iw_samples, data_dir=data_dir, device=device, batch_size=batch_size,
                      limit=limit, fid=fid, fid_features=fid_features, out=out, dataset=dataset, seed=seed,
                      progress=progress, threads=threads,
                      log=lambda message: click.echo(message, err=True))
    if as_json:
        click.echo(json.dumps(json_safe(result), indent=2, allow_nan=False))
        return

    def stat(key):
        return f"{result[key]:.2f} ± {result[key + '_stderr']:.2f} nats/image"

    click.echo(f"{result['model'] or result['checkpoint']} (epoch {result['epoch']}), "
               f"{result['n_images']} test images of {result['dataset']}")
    click.echo(f"  negative ELBO        {stat('test_neg_elbo')} (recon {result['test_recon']:.2f}, "
               f"KL {result['test_kl']:.2f})")
    bpd = f", {result['bits_per_dim']:.4f} bits/dim" if result["bits_per_dim"] is not None else ""
    click.echo(f"  {'IW NLL (K=' + str(result['iw_samples']) + ')':<20} {stat('test_nll_iw')}{bpd}")
    click.echo(f"  active units         {result['active_units']} of {result['latent_size']}")
    if result["fid"] is not None:
        click.echo(f"  {'FID (' + result['fid_features'] + ')':<20} {result['fid']:.2f} on {result['fid_images']} images")
    click.echo(f"  IW speed             {result['iw_samples_per_second']:,.0f} samples/s "
               f"({result['iw_seconds']:.1f} s); total {result['seconds']:.1f} s")
    for name, path in result.get("images", {}).items():
        click.echo(f"  {name + ':':<20} {path}")


def _env_flag(name: str) -> bool:
    """An on/off environment variable: 1, true, yes, on (any case) are on; unset, empty, 0, false, no, off are off."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text or "failed to allocate" in text


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300]


def main(argv: list[str] | None = None) -> None:
    """Console entry point: turn user errors into one-line messages."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:]) or _env_flag("ZOO_DEBUG")
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
        message = str(exc)
        if isinstance(exc, UnknownIdError) or "not installed" in message:
            from zoo.plugins import selection_note

            note = selection_note()
            if note:
                message += f" (note: {note})"
        click.echo(f"Error: {message}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except RuntimeError as exc:
        # torch reports a failed allocation as a RuntimeError (torch.cuda.OutOfMemoryError is one too)
        if debug or not _is_out_of_memory(exc):
            raise
        click.echo("Error: out of memory; close other programs, use a smaller --batch-size or --n, or a larger "
                   "machine", err=True)
        sys.exit(1)
    except MemoryError:
        if debug:
            raise
        click.echo("Error: out of memory; close other programs, use a smaller --batch-size, or a larger machine",
                   err=True)
        sys.exit(1)
    except OSError as exc:
        # The machine, not zoo: a full disk, a missing permission, a vanished file.
        if debug:
            raise
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        click.echo(f"Error: {exc.strerror or _one_line(exc)}{where}; check the disk space and permissions "
                   "(--debug shows where it happened)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
