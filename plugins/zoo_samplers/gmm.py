"""``gmm``: a Gaussian mixture with full covariances fitted to the codes by EM (scikit-learn's
``GaussianMixture``), pythae's ``GaussianMixtureSampler`` (10 components by default)."""

from __future__ import annotations

import time

import torch
from torch import Tensor
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

import zoo
from zoo_samplers.fitting import check_codes, standard_normal_nll


class GaussianMixtureSampler(zoo.Sampler):
    """p(z) = sum_k w_k N(z; mu_k, Sigma_k), fitted by EM with full covariances.

    The weights, means and Cholesky factors of the covariances are buffers, so the fitted model's
    checkpoint holds them; before :meth:`fit` the mixture is ``components`` copies of N(0, I).
    ``reg_covar`` is added to each covariance's diagonal (scikit-learn's default), ``max_iter``
    bounds the EM iterations and ``init`` picks the initial responsibilities (``kmeans`` or ``random``).
    """

    def __init__(
        self, latent_size: int, components: int = 10, reg_covar: float = 1e-6, max_iter: int = 100, init: str = "kmeans"
    ) -> None:
        super().__init__()
        if isinstance(components, bool) or not isinstance(components, int) or components < 1:
            raise zoo.ZooError(f"gmm option components must be a positive integer (got {components!r})")
        if reg_covar < 0 or max_iter < 1:
            raise zoo.ZooError(f"gmm needs reg_covar >= 0 and max_iter >= 1 (got {reg_covar}, {max_iter})")
        if init not in ("kmeans", "random"):
            raise zoo.ZooError(f"gmm option init must be 'kmeans' or 'random' (got {init!r})")
        self.latent_size = latent_size
        self.components, self.reg_covar, self.max_iter, self.init = components, reg_covar, max_iter, init
        self.register_buffer("weights", torch.full((components,), 1.0 / components))
        self.register_buffer("means", torch.zeros(components, latent_size))
        self.register_buffer("scale_tril", torch.eye(latent_size).repeat(components, 1, 1))

    def forward(self) -> MixtureSameFamily:
        mixing = Categorical(probs=self.weights, validate_args=False)
        parts = MultivariateNormal(self.means, scale_tril=self.scale_tril, validate_args=False)
        return MixtureSameFamily(mixing, parts, validate_args=False)

    def fit(self, codes: Tensor, seed: int = 0) -> dict[str, float]:
        """EM on ``codes`` [N, latent_size]; returns the mean log-likelihood per code and EM's figures."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture

        codes = check_codes(codes, self.latent_size, "gmm", at_least=self.components)
        started = time.perf_counter()
        mixture = GaussianMixture(
            n_components=self.components,
            covariance_type="full",
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            init_params=self.init,
            random_state=seed,
        )
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            try:
                mixture.fit(codes.cpu().double().numpy())
            except ValueError as exc:
                raise zoo.ZooError(f"gmm could not fit the codes: {str(exc).splitlines()[0]}") from None
        device = self.means.device
        self.weights.copy_(torch.as_tensor(mixture.weights_, dtype=torch.float32, device=device))
        self.means.copy_(torch.as_tensor(mixture.means_, dtype=torch.float32, device=device))
        covariances = torch.as_tensor(mixture.covariances_, dtype=torch.float64)
        self.scale_tril.copy_(torch.linalg.cholesky(covariances).float().to(device))
        with torch.no_grad():
            log_likelihood = float(self.log_prob(codes.to(device)).mean())
        return {
            "log_likelihood": log_likelihood,
            "standard_normal_log_likelihood": -standard_normal_nll(codes),
            "em_iterations": int(mixture.n_iter_),
            "converged": bool(mixture.converged_),
            "seconds": round(time.perf_counter() - started, 3),
        }
