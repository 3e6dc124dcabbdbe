"""The commands that describe what is installed: ``zoo list``, ``zoo info`` and ``zoo plugins``."""

from __future__ import annotations

import json

import click

from zoo.errors import ZooError


def _warn_broken(registry) -> None:
    from zoo.plugins import selection_note

    note = selection_note()
    if note and not registry.entries.get("recipe"):
        click.echo(f"warning: {note}", err=True)
    broken = [p for p in registry.plugins.values() if p.error]
    for info in broken:
        click.echo(f"warning: plugin {info.name!r} is broken: {info.error} (see 'zoo plugins')", err=True)


@click.command("list")
@click.argument("pattern", required=False)
@click.option(
    "--kind",
    type=click.Choice(["model", "encoder", "decoder", "prior", "likelihood", "objective", "sampler", "dataset"]),
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
        click.echo(
            json.dumps(
                [{"id": e.id, "kind": kind, "plugin": e.plugin, "description": e.description} for e in entries],
                indent=2,
            )
        )
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
    return {
        "id": component_id,
        "kind": kind,
        "plugin": entry.plugin,
        "factory": entry.factory_name,
        "description": entry.description,
        "options": options,
        "set": dict(given),
        "receives": injected_kinds(factory),
    }


def _format_options(part: dict, indent: str) -> list[str]:
    lines = []
    for o in part["options"]:
        default = "required" if o["required"] else f"default {o['default']!r}"
        value = f" = {o['value']!r}" if "value" in o else ""
        lines.append(f"{indent}{o['name']}: {o['type']}{value}  ({default})")
    if part.get("receives"):
        lines.append(f"{indent}(receives the model's {', '.join(part['receives'])})")
    return lines


@click.command("info")
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(["model", "encoder", "decoder", "prior", "likelihood", "objective", "sampler"]),
    help="What NAME is, when a component and a model share an id.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--toml",
    "as_toml",
    is_flag=True,
    help="Print the model's recipe as a recipe file, to edit and train with 'zoo train FILE.toml'.",
)
def info_command(name: str, kind: str | None, as_json: bool, as_toml: bool) -> None:
    """Show a model's (or one component's) parts and every option, with its type and default.

    NAME is a model id ('zoo list'), a component or objective id ('zoo list --kind prior') or a
    post-hoc prior's ('zoo list --kind sampler', fitted with 'zoo fit-prior').
    """
    from zoo.plugins import get_registry

    registry = get_registry()
    from zoo.recipe import OPTION_KINDS

    component_kinds = (*OPTION_KINDS, "sampler")  # the four components, the objective and post-hoc priors

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
        from zoo.recipe_files import recipe_to_toml

        click.echo(recipe_to_toml(recipe), nl=False)
        return
    parts = {}
    for part_kind, (component_id, options) in {
        **recipe.components(),
        "objective": (recipe.objective, dict(recipe.objective_options)),
    }.items():
        try:
            parts[part_kind] = _options_of(registry, part_kind, component_id, options)
        except ZooError as exc:
            parts[part_kind] = {"id": component_id, "set": options, "error": str(exc)}
    info = {
        "id": recipe.id,
        "description": recipe.description,
        "plugin": entry.plugin,
        "dataset": recipe.dataset,
        "latent_size": recipe.latent_size,
        "components": parts,
        "training": recipe.to_dict()["training"],
        "reference": recipe.reference,
        "pretrained": recipe.pretrained,
    }
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
        click.echo("  reference:   " + "; ".join(f"{k}: {v}" for k, v in recipe.reference.items() if k != "citation"))
    if recipe.pretrained:
        from zoo.pretrained import describe

        click.echo(f"  pretrained:  {describe(recipe)}")


@click.command("plugins")
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
