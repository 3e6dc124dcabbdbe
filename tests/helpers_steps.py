"""A training step shared by the tests that check a composed model really trains."""

from __future__ import annotations

import torch


def assert_one_step_moves_every_parameter(model, x: torch.Tensor, lr: float = 1e-3) -> None:
    """One Adam step on ``x``: the loss is finite and every parameter changes."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    before = [p.detach().clone() for p in model.parameters()]
    loss = model.loss(model(x))
    assert torch.isfinite(loss)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
