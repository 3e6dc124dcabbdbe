"""Shared fixtures.

Tests never see plugins installed on the developer's machine: ``ZOO_PLUGINS`` limits entry-point
loading to the reference plugin, and each test starts from a fresh process-wide registry.
The per-user cache points into a temporary folder so tests never write to the real one.

Running the tests (from the repository root; ``ZOO_TEST_DATA`` names a folder holding
``MNIST/raw/*.gz``, without it the real-data tests are skipped)::

    python -m pytest -m "not slow"      # the fast set: about a minute on 2 CPU cores
    python -m pytest                    # everything, as .ci/run does: about 3-4 minutes there
    python -m pytest -m slow            # only the slow ones

``@pytest.mark.slow`` marks the tests that train for more than a couple of seconds or start
training processes: real MNIST epochs, ``--compile``, the benchmark scripts, torchrun, and the
runs that are SIGKILLed and resumed. The fast set still covers every module: the registry, recipes,
error paths and CLI errors (through the console script too), and small end-to-end runs of a few
steps (``zoo train`` on tiny data sets, resume, eval, sample, compare). ``gpu`` tests are skipped
without CUDA.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _find_data() -> Path | None:
    # Absolute, so that a relative ZOO_TEST_DATA still holds for the tests that link or copy the
    # files into a temporary folder, or run a command from another working directory.
    for candidate in (os.environ.get("ZOO_TEST_DATA"), ROOT.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "MNIST" / "raw").is_dir():
            return Path(candidate).resolve()
    return None


DATA_ROOT = _find_data()
requires_data = pytest.mark.skipif(
    DATA_ROOT is None,
    reason="MNIST files not found: set ZOO_TEST_DATA to a folder holding MNIST/raw/*.gz (torchvision layout)",
)


#: zoo's own plugins (in plugins/), the only installed ones tests see.
OWN_PLUGINS = "aevb,iwae,vamp,flows,resnet,samplers,ae,beta,mmd,manifold,vq,adversarial,perceptual,hamiltonian"


@pytest.fixture(autouse=True, scope="session")
def _session_env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    saved = {k: os.environ.get(k) for k in ("ZOO_PLUGINS", "XDG_CACHE_HOME", "ZOO_DATA", "ZOO_DISABLE_PLUGINS")}
    os.environ["ZOO_PLUGINS"] = OWN_PLUGINS
    os.environ["XDG_CACHE_HOME"] = str(cache)
    os.environ.pop("ZOO_DATA", None)
    os.environ.pop("ZOO_DISABLE_PLUGINS", None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True, scope="session")
def _one_cpu_thread():
    """Training in this process uses one intra-op thread, as the tests' subprocesses do
    (tests/helpers_tiny.py): the tests' models are tiny, and two threads on a 2-core machine that is
    doing anything else spend most of their time waiting for each other (zoo/threads.py). Tests of
    the thread choice set their own count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _no_cpu_load_reading(monkeypatch):
    """In-process runs read no CPU load: the thread count they choose does not depend on what else
    the test machine is doing (tests/test_trainer.py checks the choice itself)."""
    import zoo.threads

    monkeypatch.setattr(zoo.threads, "_cpu_ticks", lambda: None)


@pytest.fixture(autouse=True)
def _fresh_registry():
    """Every test starts and ends with no cached registry and no in-process registration
    (``zoo.register``), so nothing leaks between tests, whichever order they run in."""
    from zoo import in_process, plugins

    in_process.forget()
    plugins.reset()
    yield
    in_process.forget()
    plugins.reset()


@pytest.fixture
def data_root() -> Path:
    """The read-only folder holding the real MNIST / Fashion-MNIST files (skips without it)."""
    if DATA_ROOT is None:
        pytest.skip("MNIST files not found: set ZOO_TEST_DATA to a folder holding MNIST/raw/*.gz")
    return DATA_ROOT


@pytest.fixture(scope="session")
def mnist_test_batch():
    """128 real MNIST test images in [0, 1], [128, 1, 28, 28] float32 (skips without the data)."""
    if DATA_ROOT is None:
        pytest.skip("MNIST files not found: set ZOO_TEST_DATA to a folder holding MNIST/raw/*.gz")
    from zoo.data import BUILTIN_DATASETS

    images, _ = BUILTIN_DATASETS[0].load("test", DATA_ROOT, download=False)
    return images[:128].float() / 255


@pytest.fixture(scope="session")
def example_site(tmp_path_factory) -> Path:
    """examples/zoo-mlp pip-installed (offline) into a folder, once per test session."""
    from helpers_example_plugin import install_example

    return install_example(tmp_path_factory.mktemp("zoo-mlp"))


@pytest.fixture
def with_example(example_site, monkeypatch):
    """The installed example on sys.path and enabled beside the reference plugin; yields its folder."""
    from helpers_example_plugin import forget_example_modules

    from zoo import plugins

    monkeypatch.syspath_prepend(str(example_site))
    monkeypatch.setenv("ZOO_PLUGINS", OWN_PLUGINS + ",mlp")
    plugins.reset()
    yield example_site
    plugins.reset()
    forget_example_modules()


from helpers_spanning import span  # noqa: E402,F401 - the fixture, for every test module
