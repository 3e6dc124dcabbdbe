"""The resnet plugin's discretized logistic likelihoods (PixelCNN++): the 256 grey-level
probabilities sum to one, match the textbook CDF differences, stay finite in the tails, and
sample on the grid."""

from __future__ import annotations

import math

import pytest
import torch

import zoo
from zoo_resnet.components import DiscretizedLogisticLikelihood, DiscretizedLogisticMixtureLikelihood
from zoo_resnet.distributions import DiscretizedLogistic, DiscretizedLogisticMixture, log_bin_mass

LEVELS = torch.arange(256, dtype=torch.float64) / 255  # every value one pixel can take

# Log-scales from below the clamp (-12 -> -8: sharper than one bin) to far wider than [0, 1].
LOG_SCALES = [-12.0, -8.0, -6.0, -4.5, -2.0, -0.5, 0.5, 3.0, 8.0]
LOCATIONS = [-2.0, 0.0, 0.37, 0.5 + 0.5 / 255, 1.0, 3.0]


@pytest.mark.parametrize("log_scale", LOG_SCALES)
def test_discretized_logistic_sums_to_one_over_the_256_levels(log_scale):
    loc = torch.tensor(LOCATIONS, dtype=torch.float64).unsqueeze(1)  # [6, 1]: one pixel per location
    dist = DiscretizedLogistic(loc, torch.full_like(loc, log_scale), event_dims=1)
    total = dist.log_prob(LEVELS.view(256, 1, 1)).exp().sum(0)  # all levels at once: [256, 6] -> [6]
    assert torch.allclose(total, torch.ones_like(total), atol=1e-5), total


def test_discretized_logistic_sums_to_one_in_float32():
    loc = torch.tensor(LOCATIONS).repeat_interleave(len(LOG_SCALES))
    log_scale = torch.tensor(LOG_SCALES).repeat(len(LOCATIONS))
    masses = log_bin_mass(LEVELS.float().unsqueeze(1), loc, log_scale.clamp_min(-8.0)).double().exp()  # [256, n]
    assert torch.allclose(masses.sum(0), torch.ones(len(loc), dtype=torch.float64), atol=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_discretized_logistic_mixture_sums_to_one_over_the_256_levels(seed):
    generator = torch.Generator().manual_seed(seed)
    pixels, components = 8, 10
    logits = 4 * torch.randn(pixels, components, 1, generator=generator, dtype=torch.float64)
    loc = torch.rand(pixels, components, 1, generator=generator, dtype=torch.float64) * 2 - 0.5
    log_scale = torch.rand(pixels, components, 1, generator=generator, dtype=torch.float64) * 14 - 10  # [-10, 4]
    dist = DiscretizedLogisticMixture(logits, loc, log_scale, event_dims=1)
    assert dist.batch_shape == (pixels,) and dist.event_shape == (1,)
    total = dist.log_prob(LEVELS.view(256, 1, 1)).exp().sum(0)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-5), total


def test_bin_masses_match_the_textbook_cdf_differences():
    """Where plain sigmoid differences are accurate (float64, moderate scales), they agree."""
    loc = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64).unsqueeze(1)
    for log_scale in (-6.0, -4.0, -2.0):
        scale = math.exp(log_scale)
        upper = torch.sigmoid((LEVELS + 0.5 / 255 - loc) / scale)
        lower = torch.sigmoid((LEVELS - 0.5 / 255 - loc) / scale)
        expected = upper - lower
        expected[:, 0] = upper[:, 0]  # the first bin takes the whole left tail
        expected[:, -1] = 1 - lower[:, -1]  # and the last the right one
        got = log_bin_mass(LEVELS, loc, torch.full_like(loc, log_scale)).exp()
        assert torch.allclose(got, expected, rtol=1e-6, atol=1e-12)


def test_far_tails_are_finite_with_finite_gradients():
    loc = torch.tensor([0.0, 1.0, -50.0, 0.5], requires_grad=True)
    log_scale = torch.tensor([-8.0, -8.0, -8.0, 30.0], requires_grad=True)
    x = torch.tensor([1.0, 0.0, 200 / 255, 17 / 255])
    log_p = log_bin_mass(x, loc, log_scale)
    assert torch.isfinite(log_p).all() and (log_p < 0).all()
    assert log_p[0].item() == pytest.approx(-(1 - 0.5 / 255) / math.exp(-8.0), rel=1e-3)  # logistic tail: -u
    log_p.sum().backward()
    assert torch.isfinite(loc.grad).all() and torch.isfinite(log_scale.grad).all()


def test_likelihood_modules_shape_their_parameters_and_sum_over_the_image():
    data_shape = (1, 4, 4)
    single = DiscretizedLogisticLikelihood(data_shape)
    mixture = DiscretizedLogisticMixtureLikelihood(data_shape, components=3)
    assert single.param_shape(data_shape) == (2, 4, 4)
    assert mixture.param_shape(data_shape) == (9, 4, 4)
    assert mixture.param_shape((3, 8, 8)) == (27, 8, 8)
    assert single.support == mixture.support == (0.0, 1.0)

    torch.manual_seed(0)
    x = torch.randint(0, 256, (5, *data_shape)) / 255
    params = torch.randn(2, 5, 2, 4, 4)  # leading [K, B]
    dist = single(params)
    assert dist.batch_shape == (2, 5) and dist.event_shape == data_shape
    per_pixel = log_bin_mass(x, params[:, :, :1], params[:, :, 1:])
    assert torch.allclose(dist.log_prob(x), per_pixel.sum((-3, -2, -1)), atol=1e-4)

    # One component: the mixture is the single logistic.
    one = DiscretizedLogisticMixtureLikelihood(data_shape, components=1)
    logits = torch.randn(2, 5, 1, 4, 4)
    as_mixture = one(torch.cat([logits, params], dim=2))
    assert torch.allclose(as_mixture.log_prob(x), dist.log_prob(x), atol=1e-4)


def test_samples_lie_on_the_grid_and_means_in_the_unit_interval():
    torch.manual_seed(0)
    data_shape = (1, 6, 6)
    likelihood = DiscretizedLogisticMixtureLikelihood(data_shape, components=4)
    dist = likelihood(3 * torch.randn(2, 12, 6, 6))
    samples = dist.sample((3,))
    assert samples.shape == (3, 2, *data_shape)
    assert torch.equal(samples, torch.round(samples * 255) / 255)
    assert samples.min() >= 0 and samples.max() <= 1
    assert dist.mean.shape == (2, *data_shape) and dist.mean.min() >= 0 and dist.mean.max() <= 1


@pytest.mark.parametrize("kind", ["single", "mixture"])
def test_sample_frequencies_match_the_probabilities(kind):
    torch.manual_seed(0)
    if kind == "single":
        dist = DiscretizedLogistic(torch.tensor([0.03]), torch.tensor([-3.0]), event_dims=1)
    else:
        dist = DiscretizedLogisticMixture(
            torch.tensor([[2.0], [0.0]]), torch.tensor([[0.9], [0.1]]), torch.tensor([[-4.0], [-2.5]]), event_dims=1
        )
    draws = dist.sample((20000,)).view(-1)
    frequencies = torch.bincount(torch.round(draws * 255).long(), minlength=256).double() / len(draws)
    probabilities = dist.log_prob(LEVELS.float().view(256, 1)).double().exp()
    assert 0.5 * (frequencies - probabilities).abs().sum() < 0.03  # total variation


def test_data_outside_the_unit_interval_is_rejected():
    likelihood = DiscretizedLogisticLikelihood((1, 2, 2))
    likelihood.check_data(torch.rand(3, 1, 2, 2))
    with pytest.raises(zoo.ZooError, match=r"outside \[0, 1\]"):
        likelihood.check_data(torch.full((3, 1, 2, 2), 255.0))
