"""Models: an encoder, a decoder, a prior and a likelihood composed into a VAE.

:func:`compose` builds one from component ids (looked up in the registry) or objects;
:func:`create` builds a registered recipe by id. The :class:`VAE` owns its objective
(:meth:`VAE.elbo`, :meth:`VAE.iwae`), so a trainer needs nothing model-specific.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from zoo.errors import IncompatibleComponentsError, PluginError, ZooError
from zoo.interfaces import Decoder, Encoder, Likelihood, Prior
from zoo.objectives import ELBOTerms, kl_term
from zoo.recipe import COMPONENT_KINDS, Recipe

_INTERFACES = {"encoder": Encoder, "decoder": Decoder, "prior": Prior, "likelihood": Likelihood}


class VAE(nn.Module):
    """A variational autoencoder composed of the four components.

    ``forward(x)`` is :meth:`elbo`, so wrappers such as DistributedDataParallel work unchanged.
    ``spec`` describes how the model was built (component ids and options, latent size, data
    shape); checkpoints store it so :func:`zoo.load` can rebuild the model.
    """

    def __init__(
        self,
        encoder: Encoder,
        decoder: Decoder,
        prior: Prior,
        likelihood: Likelihood,
        *,
        data_shape: Sequence[int],
        beta: float = 1.0,
        spec: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior
        self.likelihood = likelihood
        self.data_shape = tuple(data_shape)
        self.beta = beta
        self.spec = spec or {}
        #: Check every input against the likelihood's support. The trainer checks its data set
        #: once and switches this off, so the hot loop does not synchronise on it.
        self.check_inputs = True

    @property
    def latent_size(self) -> int:
        return self.prior.latent_size

    @property
    def device(self) -> torch.device:
        for tensor in (*self.parameters(), *self.buffers()):
            return tensor.device
        return torch.device("cpu")

    def _check(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != self.data_shape:
            raise ZooError(
                f"input shaped {tuple(x.shape)}, but this model takes [B, {', '.join(map(str, self.data_shape))}]"
            )
        if self.check_inputs:
            self.likelihood.check_data(x)

    def forward(self, x: Tensor) -> ELBOTerms:
        return self.elbo(x)

    def elbo(self, x: Tensor) -> ELBOTerms:
        """Per-example ELBO terms with one reparameterised sample of z."""
        self._check(x)
        q = self.encoder(x)
        z = q.rsample()
        p_x = self.likelihood(self.decoder(z))
        recon = p_x.log_prob(x)
        kl = kl_term(q, self.prior(), z)
        return ELBOTerms(recon - kl, recon, kl)

    def loss(self, terms: ELBOTerms) -> Tensor:
        """The training objective: the negative beta-weighted ELBO, mean over the batch (nats/example)."""
        if self.beta == 1.0:
            return -terms.elbo.mean()
        return -(terms.recon - self.beta * terms.kl).mean()

    def iw_terms(self, x: Tensor, samples: int, chunk_size: int | None = None):
        """Yield ``(log p(x|z_k), log q(z_k|x) - log p(z_k))`` for ``samples`` draws per example,
        in chunks shaped [k, B]; their difference is the log importance weight.

        Decoding ``chunk_size`` draws at a time (default: about 4096 decoded examples) keeps
        memory bounded however many samples are asked for.
        """
        if samples < 1:
            raise ZooError(f"samples must be at least 1 (got {samples})")
        self._check(x)
        q = self.encoder(x)
        prior = self.prior()
        chunk = chunk_size or max(1, min(samples, 4096 // max(1, x.shape[0])))
        # All latents are drawn at once ([K, B, L] is small next to the decoded images), so the
        # result for a given RNG seed does not depend on the chunk size.
        z_all = q.rsample((samples,))
        for start in range(0, samples, chunk):
            z = z_all[start:start + chunk]  # [k, B, L]
            log_px = self.likelihood(self.decoder(z)).log_prob(x.expand(len(z), *x.shape))
            yield log_px, q.log_prob(z) - prior.log_prob(z)

    def iw_log_weights(self, x: Tensor, samples: int, chunk_size: int | None = None):
        """Yield log p(x, z_k) - log q(z_k|x) for ``samples`` draws per example, in chunks [k, B]."""
        for log_px, log_ratio in self.iw_terms(x, samples, chunk_size):
            yield log_px - log_ratio

    def iwae(self, x: Tensor, samples: int = 50, chunk_size: int | None = None) -> Tensor:
        """Importance-weighted bound (Burda et al.) per example [B], with ``samples`` draws.

        Decoding happens in chunks of ``chunk_size`` draws (default: about 4096 decoded images
        at a time), so memory stays bounded for large ``samples``.
        """
        running = None  # logsumexp over the chunks seen so far
        for log_w in self.iw_log_weights(x, samples, chunk_size):
            part = torch.logsumexp(log_w, dim=0)
            running = part if running is None else torch.logaddexp(running, part)
        assert running is not None
        return running - math.log(samples)

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """``n`` images: the likelihood's mean at z drawn from the prior, [n, *data_shape]."""
        z = self.prior.sample(n)
        return self.likelihood(self.decoder(z)).mean

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """The likelihood's mean at the posterior mean of each input."""
        self._check(x)
        return self.likelihood(self.decoder(self.encoder(x).mean)).mean

    def extra_repr(self) -> str:
        return f"latent_size={self.latent_size}, data_shape={self.data_shape}, beta={self.beta}"


# -- building --------------------------------------------------------------------------------


def _call_factory(factory: Any, options: dict[str, Any], context: dict[str, Any], what: str) -> Any:
    """Call ``factory`` with ``options`` plus whichever of ``context`` its signature takes."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in context.items() if takes_any or k in params}
    unknown = [k for k in options if not takes_any and k not in params]
    if unknown:
        valid = [n for n, p in params.items() if n not in context and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        raise ZooError(f"{what} has no option {', '.join(map(repr, unknown))} (its options: {', '.join(valid) or 'none'})")
    kwargs.update(options)
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise ZooError(f"{what}: bad options {options}: {exc}") from None


def _build(kind: str, spec: Any, options: dict[str, Any], context: dict[str, Any]) -> tuple[nn.Module, dict | None]:
    interface = _INTERFACES[kind]
    if isinstance(spec, interface):
        if options:
            raise ZooError(f"{kind} options {options} given with a ready-made {kind} object; pass them to its constructor")
        return spec, None
    if isinstance(spec, nn.Module) or not isinstance(spec, str):
        raise ZooError(
            f"{kind} must be a registered id or a zoo.{interface.__name__} instance, got {type(spec).__name__}"
        )
    from zoo.plugins import get_registry

    entry = get_registry().get(kind, spec)
    obj = _call_factory(entry.load(), options, context, f"{kind} {spec!r}")
    if not isinstance(obj, interface):
        raise PluginError(
            f"plugin {entry.plugin!r}: {kind} {spec!r} built a {type(obj).__name__}, not a zoo.{interface.__name__}"
        )
    from zoo.plugins import get_registry as _reg

    info = _reg().plugins.get(entry.plugin)
    return obj, {"id": spec, "options": options, "plugin": entry.plugin,
                 "distribution": getattr(info, "distribution", None), "version": getattr(info, "version", None)}


def _describe(kind: str, obj: nn.Module, source: dict | None) -> str:
    return f"{kind} {source['id']!r}" if source else f"{kind} {type(obj).__name__}"


def compose(
    encoder: str | Encoder,
    decoder: str | Decoder,
    prior: str | Prior = "standard-normal",
    likelihood: str | Likelihood = "bernoulli",
    *,
    latent_size: int,
    data_shape: Sequence[int] = (1, 28, 28),
    beta: float = 1.0,
    encoder_options: dict[str, Any] | None = None,
    decoder_options: dict[str, Any] | None = None,
    prior_options: dict[str, Any] | None = None,
    likelihood_options: dict[str, Any] | None = None,
) -> VAE:
    """Compose a :class:`VAE` from component ids, objects, or a mix.

    Registered factories receive their options plus whichever of ``latent_size``,
    ``data_shape`` and ``output_shape`` (the decoder's output shape, asked of the likelihood)
    they accept. Components that do not fit together raise :class:`IncompatibleComponentsError`
    naming them.
    """
    if not isinstance(latent_size, int) or latent_size < 1:
        raise ZooError(f"latent_size must be a positive integer (got {latent_size!r})")
    data_shape = tuple(int(d) for d in data_shape)
    options = {
        "encoder": dict(encoder_options or {}),
        "decoder": dict(decoder_options or {}),
        "prior": dict(prior_options or {}),
        "likelihood": dict(likelihood_options or {}),
    }
    context: dict[str, Any] = {"latent_size": latent_size, "data_shape": data_shape}
    lik, lik_id = _build("likelihood", likelihood, options["likelihood"], context)
    context["output_shape"] = tuple(lik.param_shape(data_shape))
    enc, enc_id = _build("encoder", encoder, options["encoder"], context)
    dec, dec_id = _build("decoder", decoder, options["decoder"], context)
    pri, pri_id = _build("prior", prior, options["prior"], context)
    ids = {"encoder": enc_id, "decoder": dec_id, "prior": pri_id, "likelihood": lik_id}
    objs = {"encoder": enc, "decoder": dec, "prior": pri, "likelihood": lik}

    problems, fitting = [], []
    for kind in ("encoder", "decoder", "prior"):
        size = getattr(objs[kind], "latent_size", None)
        described = f"{_describe(kind, objs[kind], ids[kind])} has latent_size {size}"
        (fitting if size == latent_size else problems).append(described)
    if problems:
        # Name every side of the mismatch: the odd ones out and the ones they disagree with.
        others = f" (while {', '.join(fitting)})" if fitting else ""
        raise IncompatibleComponentsError(
            f"components do not fit together for latent_size {latent_size}: {'; '.join(problems)}{others}"
        )
    out_shape = tuple(getattr(dec, "output_shape", context["output_shape"]))
    if out_shape != context["output_shape"]:
        raise IncompatibleComponentsError(
            f"{_describe('decoder', dec, dec_id)} outputs {out_shape} per example but "
            f"{_describe('likelihood', lik, lik_id)} needs {context['output_shape']} for data {data_shape}"
        )
    spec = {
        "components": dict(ids),
        "latent_size": latent_size,
        "data_shape": list(data_shape),
        "beta": beta,
    }
    return VAE(enc, dec, pri, lik, data_shape=data_shape, beta=beta, spec=spec)


def create(model_id: str, **overrides: Any) -> VAE:
    """Build the registered recipe ``model_id`` (``zoo list``), with optional overrides.

    ``overrides`` use the keys of ``zoo train --set``: ``latent_size=16``, ``beta=4.0``,
    ``encoder.hidden=256``; training-only keys (``epochs``, ``lr``...) are accepted and ignored here.
    """
    from zoo.plugins import get_registry

    registry = get_registry()
    recipe: Recipe = registry.recipe(model_id)
    if overrides:
        recipe = recipe.with_overrides(overrides)
    return from_recipe(recipe)


def from_recipe(recipe: Recipe) -> VAE:
    """Build the model a :class:`Recipe` describes."""
    from zoo.plugins import get_registry

    dataset = get_registry().get("dataset", recipe.dataset).load()
    model = compose(
        recipe.encoder,
        recipe.decoder,
        recipe.prior,
        recipe.likelihood,
        latent_size=recipe.latent_size,
        data_shape=dataset.shape,
        beta=recipe.training.beta,
        encoder_options=recipe.encoder_options,
        decoder_options=recipe.decoder_options,
        prior_options=recipe.prior_options,
        likelihood_options=recipe.likelihood_options,
    )
    model.spec["recipe"] = recipe.to_dict()
    return model


def from_spec(spec: dict[str, Any]) -> VAE:
    """Rebuild a model from its :attr:`VAE.spec` (as stored in a checkpoint)."""
    components = spec.get("components", {})
    missing = [k for k in COMPONENT_KINDS if not components.get(k)]
    if missing:
        raise ZooError(
            f"this model was composed from unregistered {', '.join(missing)} object(s) and cannot be rebuilt "
            "by id; rebuild it in Python and load the weights with model.load_state_dict(checkpoint['model'])"
        )
    from zoo.errors import UnknownIdError

    try:
        model = _compose_from(components, spec)
    except UnknownIdError as exc:
        kind = exc.kind
        if kind not in COMPONENT_KINDS or components[kind]["id"] != exc.id:
            raise
        c = components[kind]
        where = c.get("distribution") or c.get("plugin")
        raise ZooError(
            f"this checkpoint needs {kind} {c['id']!r} from plugin {c.get('plugin')!r}"
            f"{f' (package {where!r})' if where else ''}, which is not installed; install it "
            "(pip install ...) and check 'zoo plugins'"
        ) from None
    if "recipe" in spec:
        model.spec["recipe"] = spec["recipe"]
    return model


def _compose_from(components: dict[str, Any], spec: dict[str, Any]) -> VAE:
    return compose(
        **{k: components[k]["id"] for k in COMPONENT_KINDS},
        latent_size=spec["latent_size"],
        data_shape=spec["data_shape"],
        beta=spec.get("beta", 1.0),
        **{f"{k}_options": components[k]["options"] for k in COMPONENT_KINDS},
    )
