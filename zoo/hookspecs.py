"""The hooks a zoo plugin can implement, one per extension point.

Each hook receives a ``register`` callback. A plugin calls it once per thing it adds::

    @zoo.hookimpl
    def register_encoders(register):
        register("mlp", MLPEncoder, description="Two-layer MLP, diagonal Gaussian q(z|x)")

``register(id, factory, *, description="")``: ``id`` is kebab-case and unique across plugins;
``factory`` is a component class (a subclass of the matching interface in :mod:`zoo.interfaces`:
:class:`Encoder`, :class:`Decoder`, :class:`Prior`, :class:`Likelihood`, :class:`Objective`),
a function returning one, or a lazy ``"package.module:attribute"`` string. For recipes and data sets, ``register(recipe)`` takes a
:class:`zoo.Recipe` or :class:`zoo.DatasetInfo`.

Implementations may accept fewer arguments than the spec (pluggy passes only what they name),
so the specs can grow without breaking plugins.
"""

from __future__ import annotations

import pluggy

PROJECT = "zoo"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_encoders(register):
    """Register encoders: x -> q(z|x)."""


@hookspec
def register_decoders(register):
    """Register decoders: z -> parameters of p(x|z)."""


@hookspec
def register_priors(register):
    """Register priors p(z)."""


@hookspec
def register_likelihoods(register):
    """Register likelihoods: decoder output -> distribution over x."""


@hookspec
def register_objectives(register):
    """Register training objectives (:class:`zoo.Objective`): (model, batch) -> loss and logs."""


@hookspec
def register_recipes(register):
    """Register model recipes (:class:`zoo.Recipe`): components + data set + training settings."""


@hookspec
def register_datasets(register):
    """Register data sets (:class:`zoo.DatasetInfo`)."""


@hookspec
def register_samplers(register):
    """Register post-hoc priors (:class:`zoo.Sampler`): densities fitted to a trained model's codes
    by ``zoo fit-prior``."""


@hookspec
def register_commands(cli):
    """Add click commands to the ``zoo`` command group."""
