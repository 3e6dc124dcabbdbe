"""The promises each kind of component keeps on its own (docs/interfaces.md): shapes, gradients,
log-densities that sum over the event, and a likelihood that is normalised."""

from __future__ import annotations

import pytest

from zoo.conformance.probes import param_name, shape_text, support_values, synthetic_batch
from zoo.conformance.subject import PROBE_LEVELS, Subject
from zoo.recipe import COMPONENT_KINDS


def check_encoder_shapes(s: Subject) -> None:
    """q(z|x) has batch shape [B] and event shape [L], and rsample() is [B, L]."""
    model = s.model()
    B, L = s.settings.batch_size, s.settings.latent_size
    x = synthetic_batch(model.likelihood, model.data_shape, B)
    q = s.call("encoder(x)", lambda: model.encoder(x))
    from torch.distributions import Distribution

    if not isinstance(q, Distribution):
        s.fail(f"encoder(x) must return a torch.distributions.Distribution (got {type(q).__name__})")
    if tuple(q.batch_shape) != (B,):
        s.fail(f"q(z|x) must have batch shape [{B}] for a batch of {B} (got {shape_text(q.batch_shape)})")
    if tuple(q.event_shape) != (L,):
        s.fail(f"q(z|x) must have event shape [{L}] (got {shape_text(q.event_shape)})")
    if not q.has_rsample:
        s.fail("q(z|x) must support rsample (reparameterised samples)")
    z = s.call("q.rsample((2,))", lambda: q.rsample((2,)))
    if tuple(z.shape) != (2, B, L):
        s.fail(f"q.rsample((2,)) must be [2, {B}, {L}] (got {shape_text(z.shape)})")


def check_encoder_deterministic(s: Subject) -> None:
    """An encoder that says ``deterministic = True`` returns a :class:`zoo.PointMass`, and one that
    returns a PointMass says so (the trainer and ``zoo eval`` read the attribute, not the output)."""
    from zoo.distributions import PointMass

    model = s.model()
    x = synthetic_batch(model.likelihood, model.data_shape, s.settings.batch_size)
    q = s.call("encoder(x)", lambda: model.encoder(x))
    says = bool(getattr(model.encoder, "deterministic", False))
    if says and not isinstance(q, PointMass):
        s.fail(f"a deterministic encoder (deterministic = True) must return a zoo.PointMass (got {type(q).__name__})")
    if isinstance(q, PointMass) and not says:
        s.fail("it returns a zoo.PointMass, so it must declare deterministic = True (a class attribute)")


def check_decoder_shapes(s: Subject) -> None:
    """decoder(z) is [..., *output_shape] for leading dims [K, B] and [B]; output_shape is the likelihood's."""
    import torch

    model = s.model()
    B, L = s.settings.batch_size, s.settings.latent_size
    wanted = tuple(model.likelihood.param_shape(model.data_shape))
    if tuple(model.decoder.output_shape) != wanted:
        s.fail(
            f"output_shape must be the likelihood's param_shape {shape_text(wanted)} "
            f"(got {shape_text(model.decoder.output_shape)})"
        )
    for lead in ((B,), (2, B)):
        out = s.call(f"decoder(z) for z {shape_text((*lead, L))}", lambda: model.decoder(torch.randn(*lead, L)))
        if tuple(out.shape) != (*lead, *wanted):
            s.fail(
                f"decoder(z) for z {shape_text((*lead, L))} must be {shape_text((*lead, *wanted))} (got {shape_text(out.shape)})"
            )


def check_prior_shapes(s: Subject) -> None:
    """p(z) has event shape [L] and an empty batch shape; sample(n) is [n, L]."""
    model = s.model()
    L = s.settings.latent_size
    p = s.call("prior()", lambda: model.prior())
    if tuple(p.event_shape) != (L,):
        s.fail(f"p(z) must have event shape [{L}] (got {shape_text(p.event_shape)})")
    if tuple(p.batch_shape) != ():
        s.fail(f"p(z) must have an empty batch shape (got {shape_text(p.batch_shape)})")
    z = s.call("prior.sample(3)", lambda: model.prior.sample(3))
    if tuple(z.shape) != (3, L):
        s.fail(f"prior.sample(3) must be [3, {L}] (got {shape_text(z.shape)})")


def check_likelihood_shapes(s: Subject) -> None:
    """log_prob(x) is [B] (and [K, B] for parameters [K, B, *P]); mean and sample are [B, *D]."""
    import torch

    model = s.model()
    B, D = s.settings.batch_size, model.data_shape
    x = synthetic_batch(model.likelihood, D, B)
    P = tuple(model.likelihood.param_shape(D))
    dist = s.call("likelihood(params)", lambda: model.likelihood(torch.randn(B, *P)))
    lp = s.call("log_prob(x)", lambda: dist.log_prob(x))
    if tuple(lp.shape) != (B,):
        s.fail(f"log_prob(x) must sum over the data dims to [{B}] (got {shape_text(lp.shape)})")
    lp2 = s.call(
        "log_prob(x) for parameters [2, B, *P]",
        lambda: model.likelihood(torch.randn(2, B, *P)).log_prob(x.expand(2, *x.shape)),
    )
    if tuple(lp2.shape) != (2, B):
        s.fail(f"log_prob(x) for parameters {shape_text((2, B, *P))} must be [2, {B}] (got {shape_text(lp2.shape)})")
    for attribute in ("mean", "sample"):
        value = s.call(attribute, lambda: dist.mean if attribute == "mean" else dist.sample())
        if tuple(value.shape) != (B, *D):
            s.fail(f"p(x|z).{attribute} must be {shape_text((B, *D))} (got {shape_text(value.shape)})")


def _own_parameters(s: Subject, model) -> list:
    component = s.component(model)
    others = {id(p) for k in COMPONENT_KINDS if k != s.kind for p in getattr(model, k).parameters()}
    return [p for p in component.parameters() if id(p) not in others]


def _require_gradients(s: Subject, model, parameters, how: str) -> None:
    import torch

    for p in parameters:
        if p.grad is None:
            s.fail(f"{how} must reach every parameter, but {param_name(model, p)} got no gradient")
        if not bool(torch.isfinite(p.grad).all()):
            s.fail(f"{how} gave {param_name(model, p)} a gradient that is not finite")


def check_encoder_gradients(s: Subject) -> None:
    """Gradients of q.rsample() and q.log_prob (of q.rsample() alone for a deterministic encoder)
    reach every encoder parameter."""
    model = s.model()
    x = synthetic_batch(model.likelihood, model.data_shape, s.settings.batch_size)

    from zoo.objectives import take_aux_losses

    def backward() -> None:
        model.train()
        take_aux_losses(model)
        q = model.encoder(x)
        z = q.rsample()
        loss = z.square().sum()
        if not model.deterministic:  # a PointMass has no log_prob
            loss = loss + q.log_prob(z.detach()).sum()
        for value in take_aux_losses(model).values():  # a codebook reached only by its own loss
            loss = loss + value
        if loss.requires_grad:  # else nothing reaches the parameters: reported below
            loss.backward()

    s.call("backward through q.rsample()", backward)
    _require_gradients(
        s,
        model,
        list(model.encoder.parameters()),
        "the gradient of q.rsample(), q.log_prob and the encoder's own losses",
    )


def check_prior_gradients(s: Subject) -> None:
    """Gradients of log p(z) reach z and every parameter the prior owns (for a Monte-Carlo KL)."""
    import torch

    model = s.model()
    z = torch.randn(s.settings.batch_size, s.settings.latent_size, requires_grad=True)
    s.call("backward through prior().log_prob(z)", lambda: model.prior().log_prob(z).sum().backward())
    if z.grad is None or not bool(torch.isfinite(z.grad).all()):
        s.fail("the gradient of log p(z) with respect to z must exist and be finite (the Monte-Carlo KL needs it)")
    _require_gradients(s, model, _own_parameters(s, model), "the gradient of log p(z)")
    own = _own_parameters(s, model)
    p = s.call("prior()", lambda: model.prior())
    if own and p.has_rsample:
        z = s.call("prior().rsample((3,))", lambda: p.rsample((3,)))
        if not z.requires_grad:
            s.fail(
                "prior().rsample() must carry the gradient to the prior's parameters (it says has_rsample, "
                "but its samples are detached: build the distribution from the parameters, without .detach() "
                "or torch.no_grad)"
            )


def _log_prob_sums(s: Subject, dist, value, batch: int, name: str) -> None:
    """log_prob(value) is [batch], permutes with the examples, and sums an Independent's base."""
    import torch
    from torch.distributions import Independent

    lp = s.call(f"{name}.log_prob", lambda: dist.log_prob(value))
    if tuple(lp.shape) != (batch,):
        s.fail(
            f"{name}.log_prob must sum over the event to one number per example, [{batch}] (got {shape_text(lp.shape)})"
        )
    if isinstance(dist, Independent):
        dims = tuple(range(-dist.reinterpreted_batch_ndims, 0))
        per_dim = dist.base_dist.log_prob(value)
        if not torch.allclose(lp, per_dim.sum(dims) if dims else per_dim, rtol=1e-4, atol=1e-4):
            s.fail(f"{name}.log_prob must be the sum of its per-dimension log-densities")


def _permutes_with_batch(s: Subject, call: str, log_prob_of_permuted, log_prob, what: str) -> None:
    """Examples are independent: the log-densities of a permuted batch are the permuted log-densities."""
    import torch

    perm = torch.arange(len(log_prob)).flip(0)
    permuted = s.call(f"{call} on permuted examples", lambda: log_prob_of_permuted(perm))
    if not torch.allclose(permuted, log_prob[perm], rtol=1e-4, atol=1e-4):
        s.fail(f"{what}.log_prob must treat examples independently: permuting the batch must permute the results")


def check_encoder_log_prob(s: Subject) -> None:
    """q.log_prob(z) is one number per example: it sums over the latent dimensions."""
    model = s.model()
    if model.deterministic:
        pytest.skip(f"{s.what} is deterministic: q(z|x) is a point and has no log_prob to check")
    B = s.settings.batch_size
    x = synthetic_batch(model.likelihood, model.data_shape, B)
    q = s.call("encoder(x)", lambda: model.encoder(x))
    z = q.rsample().detach()
    _log_prob_sums(s, q, z, B, "q(z|x)")
    _permutes_with_batch(
        s, "encoder(x)", lambda perm: model.encoder(x[perm]).log_prob(z[perm]), q.log_prob(z), "q(z|x)"
    )


def check_prior_log_prob(s: Subject) -> None:
    """log p(z) is one number per example: it sums over the latent dimensions."""
    import torch

    model = s.model()
    B = s.settings.batch_size
    p = s.call("prior()", lambda: model.prior())
    z = torch.randn(B, s.settings.latent_size)
    _log_prob_sums(s, p, z, B, "p(z)")
    provided = s.call("prior.log_prob(z)", lambda: model.prior.log_prob(z))
    if not torch.allclose(provided, p.log_prob(z), rtol=1e-4, atol=1e-4):
        s.fail("prior.log_prob(z) must equal prior().log_prob(z)")


def check_likelihood_log_prob(s: Subject) -> None:
    """log p(x|z) sums over the data dims, one number per example, permuting with the batch."""
    import torch

    model = s.model()
    B, D = s.settings.batch_size, model.data_shape
    x = synthetic_batch(model.likelihood, D, B)
    params = torch.randn(B, *model.likelihood.param_shape(D))
    dist = s.call("likelihood(params)", lambda: model.likelihood(params))
    _log_prob_sums(s, dist, x, B, "p(x|z)")
    _permutes_with_batch(
        s,
        "likelihood(params)",
        lambda perm: model.likelihood(params[perm]).log_prob(x[perm]),
        dist.log_prob(x),
        "p(x|z)",
    )


def check_likelihood_normalised(s: Subject) -> None:
    """Over one pixel, a discrete likelihood's probabilities sum to 1 and a density on a bounded
    support integrates to 1 (for random parameters)."""
    import torch

    from zoo.factories import call_factory

    factory = s.factory()
    one_pixel = (1,) * len(s.data_shape)
    likelihood = s.call(
        "building it for one pixel",
        lambda: call_factory(
            factory, s.options(), {"latent_size": s.settings.latent_size, "data_shape": one_pixel}, s.what
        ),
    )
    torch.manual_seed(0)
    params = 1.5 * torch.randn(3, *likelihood.param_shape(one_pixel))

    def mass(values):
        x = values.float().view(-1, 1, *one_pixel).expand(-1, len(params), *one_pixel)
        lp = likelihood(params.expand(len(values), *params.shape)).log_prob(x)
        return lp  # [V, 3]

    declared = s.call("reading its support values", lambda: support_values(likelihood, one_pixel))
    if declared is not None:
        total = s.call("log_prob over its support", lambda: mass(declared).exp().sum(0))
        if not torch.allclose(total, torch.ones_like(total), atol=1e-3):
            s.fail(
                f"p(x|z) over the {len(declared)} values of one pixel must sum to 1 (got "
                f"{', '.join(f'{t:.4g}' for t in total.tolist())})",
                "likelihood",
            )
        return
    if likelihood.support is None:
        pytest.skip(f"{s.what} is a density on the real line: normalisation is not checked")
    lo, hi = likelihood.support
    levels = torch.linspace(lo, hi, PROBE_LEVELS, dtype=torch.float64)
    summed = s.call("log_prob over 256 levels", lambda: mass(levels).exp().sum(0))
    if torch.allclose(summed, torch.ones_like(summed), atol=1e-3):
        return  # discrete over 256 levels
    grid = torch.linspace(lo, hi, 4097, dtype=torch.float64)
    density = s.call("log_prob over its support", lambda: mass(grid).exp().double())
    integral = torch.trapezoid(density, grid, dim=0)
    if not torch.allclose(integral, torch.ones_like(integral), atol=1e-2):
        s.fail(
            f"p(x|z) for one pixel must integrate to 1 over its support [{lo:g}, {hi:g}] (got "
            f"{', '.join(f'{t:.4g}' for t in integral.tolist())}) or, for a discrete likelihood, sum to 1 over "
            f"its levels (got {', '.join(f'{t:.4g}' for t in summed.tolist())} over {PROBE_LEVELS}; declare "
            "`levels` on the likelihood if it has another number)",
            "likelihood",
        )
