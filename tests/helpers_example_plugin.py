"""Install examples/zoo-mlp the way a user would, for the tests that need it installed.

``pip install --target`` builds a wheel from a copy of the example (offline: no index, no build
isolation, setuptools from this environment) and unpacks it into a folder; put that folder on
``sys.path`` (or ``PYTHONPATH``) and add ``mlp`` to ``ZOO_PLUGINS``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "zoo-mlp"


def install_example(work: Path) -> Path:
    """Install zoo-mlp under ``work`` and return the folder it was installed into."""
    source = work / "src"
    # Build from a copy, so the build never writes into the repository.
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--quiet",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise AssertionError(f"pip could not install {EXAMPLE}:\n{proc.stdout}{proc.stderr}")
    assert (target / "zoo_mlp" / "plugin.py").is_file()
    return target


def forget_example_modules() -> None:
    """Drop the example's modules from sys.modules (after a test that imported them)."""
    for name in [m for m in sys.modules if m == "zoo_mlp" or m.startswith("zoo_mlp.")]:
        del sys.modules[name]
