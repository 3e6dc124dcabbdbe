"""The figures ``zoo eval`` reports for each kind of model: the likelihood bounds of a model with a
density, the reconstruction of one with a deterministic encoder (whose bounds are ``None`` with a note
saying why), and a model whose prior has no density (a two-stage sampler), each with the description
of the run that every result carries. :mod:`zoo.evaluate` picks which and adds FID and images.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from zoo.estimators import IWEstimate, reconstruction_scores
from zoo.metrics import active_units, bits_per_dim, likelihood_is_discrete, standard_error

#: Why a deterministic encoder's model has no ELBO, IW-NLL or bits per dimension.
NO_DENSITY_NOTE = "not applicable: the encoder is deterministic, q(z|x) has no density"


def batched(images: Tensor, size: int) -> Iterator[Tensor]:
    """``images`` in consecutive batches of at most ``size``."""
    for start in range(0, len(images), size):
        yield images[start : start + size]


def likelihood_results(model, x: Tensor, iw: IWEstimate, source, dev: torch.device, used: int | None) -> dict[str, Any]:
    """The likelihood metrics, the run's description and the estimate's speed (``fid`` still ``None``)."""
    if iw is None:  # a prior without a density: every likelihood figure is None
        return {**dict.fromkeys(_LIKELIHOOD_KEYS), **_description(model, x, source, dev, None, None)}
    nll = -iw.log_px
    neg_elbo = -iw.elbo
    dims = math.prod(model.data_shape)
    discrete = likelihood_is_discrete(model, x)
    result: dict[str, Any] = {
        "test_neg_elbo": float(neg_elbo.mean()),
        "test_neg_elbo_stderr": standard_error(neg_elbo),
        "test_recon": float(-iw.recon.mean()),
        "test_kl": float(iw.kl.mean()),
        "test_nll_iw": float(nll.mean()),
        "test_nll_iw_stderr": standard_error(nll),
        "iw_samples": iw.samples,
        "bits_per_dim": bits_per_dim(float(nll.mean()), dims) if discrete else None,
        "active_units": active_units(iw.posterior_mean),
        **_description(model, x, source, dev, iw, used),
    }
    if not discrete:
        result["bits_per_dim_note"] = (
            "not reported: the likelihood is a density over real values or the data are not in its discrete "
            "support (grey levels under a Bernoulli), so -log p(x) is not a code length"
        )
    return result


_LIKELIHOOD_KEYS = (
    "test_neg_elbo", "test_neg_elbo_stderr", "test_recon", "test_kl", "test_nll_iw", "test_nll_iw_stderr",
    "iw_samples", "bits_per_dim", "active_units",
)  # fmt: skip


def _description(model, x: Tensor, source, dev: torch.device, iw, used: int | None) -> dict[str, Any]:
    """The run's description and the estimate's speed (``None`` without an estimate)."""
    return {
        "latent_size": model.latent_size,
        "fid": None,
        "fid_features": None,
        "n_images": len(x),
        "model": source.recipe.get("id"),
        "dataset": source.dataset_id,
        "checkpoint": str(source.checkpoint),
        "epoch": source.payload.get("epoch"),
        "device": str(dev),
        "iw_seconds": round(iw.seconds, 3) if iw is not None else None,
        "iw_samples_per_second": round(iw.samples_per_second, 1) if iw is not None else None,
        "threads": used,
    }


def no_density_results(model, x: Tensor, source, dev: torch.device) -> dict[str, Any]:
    """The results of a model whose prior has no density (a two-stage sampler): its likelihood
    figures are ``None`` with a note saying why; FID and the images still come."""
    result = likelihood_results(model, x, None, source, dev, None)
    result["test_nll_iw_note"] = (
        f"not reported: the prior {type(model.prior).__name__} has no density, so the negative ELBO and the "
        "IW-NLL do not apply; FID and the samples do"
    )
    return result


def squared_error(model, x: Tensor, batch_size: int, threads: int | None) -> float:
    """``test_mse``: squared error of the reconstructions at the posterior mean, summed over each image."""
    from zoo.threads import cpu_threads

    with cpu_threads(threads) if threads else contextlib.nullcontext():
        return float(reconstruction_scores(model, batched(x, batch_size)).squared_error.mean())


def reconstruction_results(
    model, x: Tensor, source, dev: torch.device, batch_size: int, threads: int | None
) -> dict[str, Any]:
    """What applies to a model with a deterministic encoder: reconstruction error and active units;
    the likelihood bounds as ``None`` with a note (``fid`` still ``None``)."""
    from zoo.threads import check_thread_count, choose_threads, cpu_threads

    check_thread_count(threads)
    used = choose_threads(threads)[0] if x.device.type == "cpu" else None
    with cpu_threads(used) if used else contextlib.nullcontext():
        scores = reconstruction_scores(model, batched(x, batch_size))
    return {
        "test_neg_elbo": None,
        "test_neg_elbo_stderr": None,
        "test_neg_elbo_note": NO_DENSITY_NOTE,
        "test_recon": float(scores.recon.mean()),
        "test_recon_stderr": standard_error(scores.recon),
        "test_kl": None,
        "test_nll_iw": None,
        "test_nll_iw_stderr": None,
        "test_nll_iw_note": NO_DENSITY_NOTE,
        "iw_samples": None,
        "bits_per_dim": None,
        "bits_per_dim_note": NO_DENSITY_NOTE,
        "test_mse": float(scores.squared_error.mean()),
        "active_units": active_units(scores.posterior_mean),
        "deterministic_encoder": True,
        **{k: v for k, v in _description(model, x, source, dev, None, used).items() if not k.startswith("iw_")},
        "recon_seconds": round(scores.seconds, 3),
    }
