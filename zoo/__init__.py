"""zoo: a plugin-based zoo of variational autoencoders for PyTorch.

Public API (imported lazily, so ``import zoo`` and the CLI's help do not import torch)::

    zoo.list_models("vae-*")          # registered recipe ids
    zoo.create("vae-conv-mnist")      # a zoo.VAE (torch.nn.Module)
    zoo.compose(encoder=..., decoder=..., prior=..., likelihood=..., latent_size=20)
    zoo.Trainer(model, dataset="binarized-mnist", objective="iwae").fit()   # a composed model
    zoo.load("runs/x/checkpoints/last.pt")

Plugin authors use :data:`hookimpl`, the interfaces :class:`Encoder`, :class:`Decoder`,
:class:`Prior`, :class:`Likelihood`, :class:`Objective`, :func:`diagonal_gaussian` (the
diagonal-Gaussian head of an encoder) and :func:`mlp` (a multi-layer perceptron), the distribution :class:`Chain` (for hierarchies of
latents), and :class:`Recipe` / :class:`Training` / :class:`DatasetInfo`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zoo.errors import IncompatibleComponentsError, PluginError, UnknownIdError, ZooError
from zoo.hookspecs import hookimpl
from zoo.recipe import Recipe, Training

__version__ = "0.1.0"

_LAZY = {
    "Encoder": "zoo.interfaces",
    "Decoder": "zoo.interfaces",
    "Prior": "zoo.interfaces",
    "Likelihood": "zoo.interfaces",
    "Objective": "zoo.interfaces",
    "ObjectiveOutput": "zoo.interfaces",
    "VAE": "zoo.model",
    "build_objective": "zoo.composition",
    "factory_options": "zoo.factories",
    "Chain": "zoo.distributions",
    "PointMass": "zoo.distributions",
    "Sampler": "zoo.interfaces",
    "diagonal_gaussian": "zoo.distributions",
    "mlp": "zoo.nets",
    "compose": "zoo.composition",
    "create": "zoo.composition",
    "from_recipe": "zoo.composition",
    "ELBOTerms": "zoo.objectives",
    "DatasetInfo": "zoo.data",
    "dataset_from_path": "zoo.user_data",
    "Trainer": "zoo.trainer",
    "load": "zoo.checkpoint",
    "fit_prior": "zoo.posthoc",
    "register": "zoo.in_process",
}

if TYPE_CHECKING:
    from zoo.composition import build_objective, compose, create, from_recipe
    from zoo.data import DatasetInfo
    from zoo.distributions import Chain, PointMass, diagonal_gaussian
    from zoo.factories import factory_options
    from zoo.in_process import register
    from zoo.interfaces import Decoder, Encoder, Likelihood, Objective, ObjectiveOutput, Prior, Sampler
    from zoo.model import VAE
    from zoo.nets import mlp
    from zoo.objectives import ELBOTerms
    from zoo.posthoc import fit_prior
    from zoo.user_data import dataset_from_path


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def list_models(pattern: str | None = None) -> list[str]:
    """Ids of the registered model recipes, optionally filtered by a wildcard (``'vae-*'``)."""
    from zoo.plugins import get_registry

    return get_registry().ids("recipe", pattern)


def list_components(kind: str, pattern: str | None = None) -> list[str]:
    """Ids of registered components of ``kind`` (encoder, decoder, prior, likelihood, objective, dataset)."""
    from zoo.plugins import get_registry

    registry = get_registry()
    if kind not in registry.entries:
        raise ZooError(f"unknown kind {kind!r} (expected one of {', '.join(registry.entries)})")
    return registry.ids(kind, pattern)


def get_recipe(model_id: str) -> Recipe:
    """The registered :class:`Recipe` of ``model_id``."""
    from zoo.plugins import get_registry

    return get_registry().recipe(model_id)


__all__ = [
    "__version__",
    "hookimpl",
    "Recipe",
    "Training",
    "ZooError",
    "UnknownIdError",
    "PluginError",
    "IncompatibleComponentsError",
    "list_models",
    "list_components",
    "get_recipe",
    *_LAZY,
]
