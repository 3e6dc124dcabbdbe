"""The promises of objectives (output, buffers, gradients, state dict) and of recipes (one
training step of the recipe's model and objective)."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import pytest

from zoo.conformance.probes import shape_text, synthetic_batch
from zoo.conformance.subject import INTERFACES_DOC, TUTORIAL_DOC, Subject, partner
from zoo.recipe import COMPONENT_KINDS


def _objective_setup(s: Subject):
    """A small model to check the objective on, its objective and a batch. An objective that needs no
    density (``needs_density = False``, an autoencoder's) gets a model with a deterministic encoder."""
    from zoo.composition import build_objective

    host = Subject("encoder", partner("encoder")[0], s.settings)
    model = host.model()
    objective = s.call("building it", lambda: build_objective(s.target, s.options(), model)[0], "objective")
    if not getattr(objective, "needs_density", True):
        from zoo.conformance.point_mass import point_mass_model

        model = point_mass_model(model)
    x = synthetic_batch(model.likelihood, model.data_shape, s.settings.batch_size)
    return model, objective, x


def check_objective_output(s: Subject) -> None:
    """objective(model, x) returns ObjectiveOutput(loss, logs): a finite scalar loss and scalar logs."""
    import torch

    from zoo.interfaces import ObjectiveOutput

    model, objective, x = _objective_setup(s)
    out = s.call("objective(model, x)", lambda: objective(model, x))
    if not isinstance(out, ObjectiveOutput):
        s.fail(f"objective(model, x) must return zoo.ObjectiveOutput(loss, logs) (got {type(out).__name__})")
    if not isinstance(out.loss, torch.Tensor) or out.loss.dim() != 0:
        shape = shape_text(out.loss.shape) if isinstance(out.loss, torch.Tensor) else type(out.loss).__name__
        s.fail(f"the loss must be a scalar tensor, averaged over the batch (got {shape})")
    if not bool(torch.isfinite(out.loss)):
        s.fail("the loss must be finite on a batch of random data")
    if not isinstance(out.logs, dict):
        s.fail(f"logs must be a dict of scalar tensors (got {type(out.logs).__name__})")
    for name, value in out.logs.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor) or value.numel() != 1:
            s.fail(f"logs[{name!r}] must be a scalar tensor (got {getattr(value, 'shape', type(value).__name__)})")


def check_objective_eval_keeps_buffers(s: Subject) -> None:
    """In eval mode the objective changes none of its buffers (a warm-up counts training steps only)."""
    import torch

    model, objective, x = _objective_setup(s)
    objective.eval()
    before = {k: v.clone() for k, v in objective.named_buffers()}
    with torch.no_grad():
        s.call("objective(model, x) in eval mode", lambda: objective(model, x))
    for name, value in objective.named_buffers():
        if name not in before or not torch.equal(before[name], value):
            s.fail(
                f"in eval mode it must not change its buffers (buffer {name!r} changed); count steps only "
                "while self.training"
            )


def check_objective_gradients(s: Subject) -> None:
    """A training step: a finite loss whose gradient reaches every model parameter, finitely."""
    model, objective, x = _objective_setup(s)
    training_step(s, model, objective, x, "objective")


def check_objective_state_dict(s: Subject) -> None:
    """Its state_dict, saved in a checkpoint and loaded into a fresh one, gives the same loss."""
    import torch

    from zoo.checkpoint import load_checkpoint, save_checkpoint
    from zoo.composition import build_objective

    model, objective, x = _objective_setup(s)
    for _ in range(2):  # advance any schedule
        s.call("objective(model, x)", lambda: objective(model, x))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "objective.pt"
        payload = {"spec": model.spec, "model": model.state_dict(), "objective": objective.state_dict()}
        s.call("saving its state_dict", lambda: save_checkpoint(path, payload))
        fresh = build_objective(s.target, s.options(), model)[0]
        s.call("loading its state_dict", lambda: fresh.load_state_dict(load_checkpoint(path)["objective"]))
    losses = []
    for obj in (objective.eval(), fresh.eval()):
        torch.manual_seed(3)
        with torch.no_grad():
            losses.append(obj(model, x).loss)
    if not torch.allclose(losses[0], losses[1]):
        s.fail(
            "after a state_dict round trip through a checkpoint it must give the same loss (keep its state "
            "in persistent buffers)"
        )


# -- recipes ----------------------------------------------------------------------------------


def training_step(s: Subject, model, objective, x, anchor: str, doc: str = INTERFACES_DOC) -> None:
    import torch

    from zoo.objectives import TrainingStep

    model.train()
    objective.train()
    # As the trainer runs it: the components' own losses (add_loss) join the objective's, and the
    # losses of the objective's own updates (a discriminator's) reach their parameters.
    out = s.call("objective(model, x)", lambda: TrainingStep(model, objective)(x), anchor)
    loss = out[0] if isinstance(out, tuple) else out
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0 or not bool(torch.isfinite(loss)):
        s.fail(f"a training step must give a finite scalar loss (got {loss!r:.80})", anchor, doc)
    for value in (getattr(out, "losses", None) or {}).values():
        loss = loss + value
    s.call("loss.backward()", loss.backward, anchor)
    for name, p in [*model.named_parameters(), *(("objective." + n, q) for n, q in objective.named_parameters())]:
        if p.grad is None:
            s.fail(
                f"a training step must give every parameter a gradient, but {name} got none (a KL warm-up "
                "starting at weight 0 still gives zeros, not none)",
                anchor,
                doc,
            )
        if not bool(torch.isfinite(p.grad).all()):
            s.fail(f"a training step must give finite gradients, but {name}'s is not finite", anchor, doc)


def check_recipe_training_step(s: Subject) -> tuple[int, ...]:
    """One training step of the recipe's model and objective on a random batch shaped like its data
    set; returns that shape."""
    import torch

    from zoo.composition import build_objective, from_recipe
    from zoo.plugins import get_registry

    registry = get_registry()
    recipe = registry.recipe(s.target)
    overrides = s.options()
    dataset = overrides.get("dataset", recipe.dataset)
    if dataset not in registry.ids("dataset"):
        pytest.skip(
            f"recipe {s.target!r}: its data set {dataset!r} is not registered by any loaded plugin, so its model's "
            "shape is unknown; load the plugin that registers it, or give the recipe override "
            "{'dataset': ...} of a registered one"
        )
    if overrides:
        recipe = s.call("applying the recipe overrides", lambda: recipe.with_overrides(overrides))
    recipe = dataclasses.replace(
        recipe,
        **{
            f"{kind}_options": {**getattr(recipe, f"{kind}_options"), **s.options(kind, getattr(recipe, kind))}
            for kind in COMPONENT_KINDS
        },
    )
    torch.manual_seed(0)
    model = s.call("building its model", lambda: from_recipe(recipe), "how-factories-receive-their-arguments")
    objective_options = {**recipe.objective_options, **s.options("objective", recipe.objective)}
    objective = s.call(
        "building its objective", lambda: build_objective(recipe.objective, objective_options, model)[0], "objective"
    )
    from zoo.composition import check_objective_fits

    s.call("checking its objective fits its encoder", lambda: check_objective_fits(model, objective), "objective")
    x = synthetic_batch(model.likelihood, model.data_shape, s.settings.batch_size)
    training_step(s, model, objective, x, "10-checking-your-plugin", TUTORIAL_DOC)
    return tuple(model.data_shape)
