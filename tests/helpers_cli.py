"""Running ``zoo`` in this process, as a user would type it, for the tests of its commands."""

from __future__ import annotations

from zoo.cli import main


def run_zoo(capsys, *args) -> tuple[int, str, str]:
    """``zoo ARGS`` -> (exit code, standard output, standard error)."""
    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err
