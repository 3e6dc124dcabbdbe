"""A plugin written as Python source in a test, loaded as a module from a temporary folder, and
one-epoch runs of its recipes: what tests of whole `zoo eval` runs on tiny data sets share."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from zoo import plugins


@contextmanager
def plugin_from_source(folder: Path, module_name: str, plugin_name: str, source: str) -> Iterator[tuple]:
    """Write ``source`` as ``module_name`` in ``folder``, import it, and yield ``(registry, pm)`` of a
    registry with it as ``plugin_name`` (checked to load without error); undone afterwards."""
    (folder / f"{module_name}.py").write_text(textwrap.dedent(source))
    sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module(module_name)
        registry, pm = plugins.build(plugins=[(plugin_name, module)])
        assert registry.plugins[plugin_name].error is None, registry.plugins[plugin_name].error
        yield registry, pm
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(module_name, None)


def one_epoch_runs(registry_and_pm: tuple, root: Path, datasets: Sequence[str]) -> Path:
    """Train the recipe ``<dataset>-vae`` of each data set once, into ``root / <dataset>``."""
    from zoo.trainer import Trainer

    with plugins.using(*registry_and_pm):
        for name in datasets:
            Trainer(f"{name}-vae", out=root / name, device="cpu", progress=False).fit()
    return root
