"""The ``zoo`` command line.

Imports are deferred into the commands so ``zoo --help`` and ``zoo list`` answer without
importing torch. Every :class:`zoo.ZooError` becomes a one-line ``Error: ...`` with exit code 1
(``--debug`` shows the traceback).
"""

from __future__ import annotations

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


def _add_commands() -> None:
    from zoo.commands import catalog, fit_prior, results, share, train

    for command in (
        catalog.list_command,
        catalog.info_command,
        catalog.plugins_command,
        train.train_command,
        results.compare_command,
        results.sample_command,
        results.eval_command,
        fit_prior.fit_prior_command,
        share.export_command,
        share.push_command,
    ):
        cli.add_command(command)


_add_commands()


def _env_flag(name: str) -> bool:
    """An on/off environment variable: 1, true, yes, on (any case) are on; unset, empty, 0, false, no, off are off."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text or "failed to allocate" in text


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300]


def _terminated(exc: BaseException | None) -> bool:
    """Whether ``exc`` is the SIGTERM a run turns into a clean stop (zoo.rundir.RunTerminated)."""
    rundir = sys.modules.get("zoo.rundir")  # only a run's lock installs that handler
    return rundir is not None and isinstance(exc, rundir.RunTerminated)


def _say_terminated() -> None:
    click.echo("Terminated (SIGTERM): the run stopped cleanly; continue it with 'zoo train --resume RUN'.", err=True)
    sys.exit(128 + 15)  # what a shell reports for a process ended by SIGTERM


def main(argv: list[str] | None = None) -> None:
    """Console entry point: turn user errors into one-line messages."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:]) or _env_flag("ZOO_DEBUG")
    try:
        cli.main(args=argv, prog_name="zoo", standalone_mode=False)
    except click.exceptions.Abort as exc:
        if _terminated(exc.__cause__ or exc.__context__):
            _say_terminated()
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
    except KeyboardInterrupt as exc:
        if _terminated(exc):
            _say_terminated()
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except RuntimeError as exc:
        # torch reports a failed allocation as a RuntimeError (torch.cuda.OutOfMemoryError is one too)
        if debug or not _is_out_of_memory(exc):
            raise
        click.echo(
            "Error: out of memory; close other programs, use a smaller --batch-size or --n, or a larger machine",
            err=True,
        )
        sys.exit(1)
    except MemoryError:
        if debug:
            raise
        click.echo(
            "Error: out of memory; close other programs, use a smaller --batch-size, or a larger machine", err=True
        )
        sys.exit(1)
    except OSError as exc:
        # The machine, not zoo: a full disk, a missing permission, a vanished file.
        if debug:
            raise
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        click.echo(
            f"Error: {exc.strerror or _one_line(exc)}{where}; check the disk space and permissions "
            "(--debug shows where it happened)",
            err=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
