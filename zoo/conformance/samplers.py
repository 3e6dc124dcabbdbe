"""The promises a sampler (a post-hoc prior, :class:`zoo.Sampler`) keeps: fitted to codes it
returns its figures, draws codes of the latent size, scores them where it has a density, and a
checkpoint of the fitted model gives the same draws."""

from __future__ import annotations

import tempfile
from pathlib import Path

from zoo.conformance.subject import Subject

SAMPLING_DOC = "docs/sampling.md"


def synthetic_codes(latent_size: int, n: int = 200):
    """``n`` codes from two Gaussian modes, [n, latent_size]."""
    import torch

    g = torch.Generator().manual_seed(0)
    centres = torch.zeros(2, latent_size)
    centres[0, 0], centres[1, 0] = -2.0, 2.0
    return centres[torch.randint(0, 2, (n,), generator=g)] + 0.5 * torch.randn(n, latent_size, generator=g)


def check_sampler_fit(s: Subject) -> None:
    """``fit(codes)`` returns a dict of figures; ``sample(n)`` is [n, L] and finite; with a density,
    ``log_prob`` is one finite number per code and equals ``prior().log_prob``; the fitted model's
    checkpoint, loaded by zoo.load, draws the same codes with the same seed."""
    import torch

    import zoo
    from zoo.checkpoint import save_checkpoint

    anchor = "writing-a-sampler"

    def fail(promise: str, _anchor: str = anchor) -> None:
        s.fail(promise, _anchor, SAMPLING_DOC)

    L, B = s.settings.latent_size, s.settings.batch_size
    torch.manual_seed(0)
    model = s.model()
    sampler = model.prior
    if not isinstance(sampler, zoo.Sampler):
        fail(f"it must be a zoo.Sampler (got {type(sampler).__name__})", anchor)
    figures = s.call("fit(codes)", lambda: sampler.fit(synthetic_codes(L)), anchor)
    if not isinstance(figures, dict) or not all(isinstance(k, str) for k in figures):
        fail(f"fit(codes) must return a dict of figures by name (got {type(figures).__name__})", anchor)
    model.eval()
    torch.manual_seed(1)
    z = s.call("sample(n)", lambda: sampler.sample(B), anchor)
    if tuple(z.shape) != (B, L) or not bool(torch.isfinite(z).all()):
        fail(f"sample({B}) must be finite codes shaped [{B}, {L}] (got {tuple(z.shape)})", anchor)
    if sampler.has_density:
        log_p = s.call("log_prob(z)", lambda: sampler.log_prob(z), anchor)
        if tuple(log_p.shape) != (B,) or not bool(torch.isfinite(log_p).all()):
            fail(f"log_prob of [{B}, {L}] codes must be {B} finite numbers (got {tuple(log_p.shape)})", anchor)
        through = s.call("prior().log_prob(z)", lambda: sampler().log_prob(z), anchor)
        if not torch.allclose(through, log_p, rtol=1e-4, atol=1e-4):
            fail("log_prob(z) must equal prior().log_prob(z): the model's estimates use the latter", anchor)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fitted.pt"
        save_checkpoint(path, {"spec": model.spec, "model": model.state_dict()})
        torch.manual_seed(12345)
        loaded = s.call("zoo.load of the fitted model", lambda: zoo.load(path), anchor)
    torch.manual_seed(1)
    again = loaded.prior.sample(B)
    if not torch.allclose(again, z, rtol=1e-5, atol=1e-6):
        fail("a fitted model's checkpoint must draw the same codes: keep what fit() learns in parameters or "
               "persistent buffers", anchor)  # fmt: skip
