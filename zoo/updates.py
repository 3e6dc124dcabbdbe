"""The extra optimisation steps an objective declares (:meth:`zoo.Objective.updates`, e.g. a
discriminator trained against the model): checking them, building their optimizers, and one
training step that gives each loss's gradient to its own parameters only."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from zoo.errors import ZooError

OPTIMIZERS = {
    "adam": "Adam",
    "adamw": "AdamW",
    "sgd": "SGD",
    "rmsprop": "RMSprop",
    "adagrad": "Adagrad",
}


class Updates:
    """The model's parameters and those of each declared update, with the updates' optimizers."""

    def __init__(self, objective: nn.Module, module: nn.Module, lr: float) -> None:
        declared = list(objective.updates())
        self.names: list[str] = []
        self.params: dict[str, list[nn.Parameter]] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        owned = {id(p) for p in objective.parameters()}
        claimed: set[int] = set()
        what = type(objective).__name__
        for update in declared:
            name = getattr(update, "name", None)
            if not isinstance(name, str) or not name.isidentifier() or name in self.names or name == "model":
                raise ZooError(f"{what}.updates(): each update needs its own name, a Python identifier (got {name!r})")
            params = update.parameters
            params = list(params.parameters() if isinstance(params, nn.Module) else params)
            if not params or not all(isinstance(p, nn.Parameter) for p in params):
                raise ZooError(f"{what}.updates(): update {name!r} has no parameters (give a module or its parameters)")
            if any(id(p) not in owned for p in params):
                raise ZooError(
                    f"{what}.updates(): update {name!r} names parameters that are not the objective's own; "
                    "an update trains the objective's modules (a discriminator), the model is trained by its optimizer"
                )
            if any(id(p) in claimed for p in params):
                raise ZooError(f"{what}.updates(): update {name!r} shares parameters with an earlier update")
            claimed.update(id(p) for p in params)
            kind = OPTIMIZERS.get(str(update.optimizer).lower())
            if kind is None:
                raise ZooError(
                    f"{what}.updates(): update {name!r} asks for optimizer {update.optimizer!r}; "
                    f"use one of {', '.join(OPTIMIZERS)}"
                )
            options = dict(update.options or {})
            on_fused_device = params[0].device.type in ("cpu", "cuda")
            if kind in ("Adam", "AdamW") and on_fused_device and not options.keys() & {"fused", "foreach"}:
                options["fused"] = True  # one kernel per step, as the model's optimizer (zoo/optimizers.py)
            try:
                optimizer = getattr(torch.optim, kind)(params, lr=lr if update.lr is None else update.lr, **options)
            except (TypeError, ValueError) as exc:
                raise ZooError(f"{what}.updates(): update {name!r}: {exc}") from None
            self.names.append(name)
            self.params[name] = params
            self.optimizers[name] = optimizer
        self.model_params = [p for p in module.parameters() if p.requires_grad and id(p) not in claimed]

    def __bool__(self) -> bool:
        return bool(self.names)

    def losses(self, given: dict[str, Tensor] | None, what: str) -> list[Tensor]:
        """The loss of each update, in order, from an objective's ``ObjectiveOutput.losses``."""
        given = given or {}
        missing = [n for n in self.names if n not in given]
        if missing:
            raise ZooError(
                f"{what} declares update(s) {', '.join(missing)} but returned no loss for them "
                "in ObjectiveOutput.losses"
            )
        return [given[n].float() for n in self.names]

    def backward(self, model_loss: Tensor, losses: list[Tensor], scale: Any = None) -> None:
        """Each loss's gradient into its own parameters only (the model's loss into the model's);
        without updates, the plain backward of the model's loss."""
        if not self.names:
            (scale(model_loss) if scale is not None else model_loss).backward()
            return
        pairs = [(model_loss, self.model_params), *zip(losses, self.params.values())]
        for i, (loss, params) in enumerate(pairs):
            (scale(loss) if scale is not None else loss).backward(inputs=params, retain_graph=i < len(pairs) - 1)

    def zero_grad(self) -> None:
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)

    def step(self, scaler: Any = None) -> None:
        for optimizer in self.optimizers.values():
            if scaler is not None:
                scaler.step(optimizer)
            else:
                optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()}

    def load_state_dict(self, states: dict[str, Any] | None, where: str) -> None:
        states = states or {}
        if set(states) != set(self.optimizers):
            raise ZooError(
                f"{where} holds the optimizers of updates {sorted(states) or 'none'}, but the objective "
                f"declares {self.names or 'none'}; resume with the objective the run was trained with"
            )
        for name, state in states.items():
            self.optimizers[name].load_state_dict(state)
