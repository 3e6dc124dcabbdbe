"""The helpers zoo offers plugin authors (``zoo.diagonal_gaussian``), and what the first-party plugins
promise about the components built with them: checkpoints keep loading (parameter names and shapes
are pinned), and a refused option is one :class:`zoo.ZooError` line."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

import zoo

# -- zoo.diagonal_gaussian ------------------------------------------------------------------------


def test_diagonal_gaussian_is_torchs_independent_normal():
    mean, log_var = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    q = zoo.diagonal_gaussian(mean, log_var)
    assert isinstance(q, Independent) and isinstance(q.base_dist, Normal)
    assert q.batch_shape == (2, 3) and q.event_shape == (5,) and q.has_rsample
    reference = Independent(Normal(mean, torch.exp(0.5 * log_var)), 1)
    z = q.rsample()
    torch.testing.assert_close(q.log_prob(z), reference.log_prob(z))
    torch.testing.assert_close(q.stddev, log_var.mul(0.5).exp())
    # the analytic KL of torch's registry still applies (the ELBO's closed form)
    prior = Independent(Normal(torch.zeros(5), torch.ones(5)), 1)
    torch.testing.assert_close(kl_divergence(q, prior), kl_divergence(reference, prior))


@pytest.mark.parametrize(
    "dtype, expected",
    [
        (torch.bfloat16, torch.float32),
        (torch.float16, torch.float32),
        (torch.float32, torch.float32),
        (torch.float64, torch.float64),
    ],
)
def test_diagonal_gaussian_computes_in_at_least_float32(dtype, expected):
    q = zoo.diagonal_gaussian(torch.zeros(4, 3, dtype=dtype), torch.zeros(4, 3, dtype=dtype))
    assert q.mean.dtype == expected and q.stddev.dtype == expected


def test_diagonal_gaussian_passes_gradients_to_both_inputs():
    mean, log_var = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    zoo.diagonal_gaussian(mean, log_var).rsample().sum().backward()
    assert mean.grad is not None and log_var.grad is not None and log_var.grad.abs().sum() > 0


def test_diagonal_gaussian_lets_a_nan_through_to_the_loss():
    """No argument validation: the trainer reports a non-finite loss, not an error from inside forward."""
    q = zoo.diagonal_gaussian(torch.full((2, 3), float("nan")), torch.zeros(2, 3))
    assert torch.isnan(q.rsample()).all()


# -- zoo.mlp ----------------------------------------------------------------------------------------


def test_mlp_is_the_stack_written_out_with_the_same_weights_for_a_seed():
    torch.manual_seed(0)
    net = zoo.mlp([6, 5, 4, 3], torch.nn.ReLU)
    torch.manual_seed(0)
    by_hand = torch.nn.Sequential(
        torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3)
    )
    assert [type(m) for m in net] == [type(m) for m in by_hand]
    assert net.state_dict().keys() == by_hand.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), by_hand.state_dict().values()))
    assert isinstance(zoo.mlp([2, 3, 1])[1], torch.nn.Tanh)  # by default
    assert len(zoo.mlp([2, 3])) == 1  # no activation after the output layer


@pytest.mark.parametrize("sizes", [[4], [4, 0, 2], [4, True, 2], [4, 2.0]])
def test_mlp_refuses_sizes_that_are_not_positive_integers(sizes):
    with pytest.raises(zoo.ZooError, match="positive integer") as info:
        zoo.mlp(sizes)
    assert len(str(info.value).splitlines()) == 1


# -- checkpoints keep loading: the parameter names and shapes of the networks built with the helpers --

BURDA = {"layers": [3, 2], "hidden": 4}
#: (encoder, decoder, prior, their options, latent size) -> the model's state_dict: names and shapes
PINNED = {
    "burda-mlp": (
        ("burda-mlp", "burda-mlp", "burda-hierarchical"),
        (BURDA, BURDA, BURDA),
        5,
        {
            "encoder.stages.0.net.0.weight": (4, 64),
            "encoder.stages.0.net.0.bias": (4,),
            "encoder.stages.0.net.2.weight": (4, 4),
            "encoder.stages.0.net.2.bias": (4,),
            "encoder.stages.0.net.4.weight": (6, 4),
            "encoder.stages.0.net.4.bias": (6,),
            "encoder.stages.1.net.0.weight": (2, 3),
            "encoder.stages.1.net.0.bias": (2,),
            "encoder.stages.1.net.2.weight": (2, 2),
            "encoder.stages.1.net.2.bias": (2,),
            "encoder.stages.1.net.4.weight": (4, 2),
            "encoder.stages.1.net.4.bias": (4,),
            "decoder.net.0.weight": (4, 3),
            "decoder.net.0.bias": (4,),
            "decoder.net.2.weight": (4, 4),
            "decoder.net.2.bias": (4,),
            "decoder.net.4.weight": (64, 4),
            "decoder.net.4.bias": (64,),
            "prior.zeros": (2,),
            "prior.stages.0.net.0.weight": (2, 2),
            "prior.stages.0.net.0.bias": (2,),
            "prior.stages.0.net.2.weight": (2, 2),
            "prior.stages.0.net.2.bias": (2,),
            "prior.stages.0.net.4.weight": (6, 2),
            "prior.stages.0.net.4.bias": (6,),
        },
    ),
    "deep-mlp": (
        ("deep-mlp", "deep-mlp", "realnvp"),
        ({"hidden": 4}, {"hidden": 4, "layers": 1}, {"layers": 1, "hidden": 3}),
        2,
        {
            "encoder.net.1.weight": (4, 64),
            "encoder.net.1.bias": (4,),
            "encoder.net.3.weight": (4, 4),
            "encoder.net.3.bias": (4,),
            "encoder.net.5.weight": (4, 4),
            "encoder.net.5.bias": (4,),
            "decoder.net.0.weight": (4, 2),
            "decoder.net.0.bias": (4,),
            "decoder.net.2.weight": (64, 4),
            "decoder.net.2.bias": (64,),
            "prior.couplings.0.scale": (2,),
            "prior.couplings.0.net.0.weight": (3, 2),
            "prior.couplings.0.net.0.bias": (3,),
            "prior.couplings.0.net.2.weight": (3, 3),
            "prior.couplings.0.net.2.bias": (3,),
            "prior.couplings.0.net.4.weight": (4, 3),
            "prior.couplings.0.net.4.bias": (4,),
        },
    ),
    "gated-mlp": (
        ("gated-mlp", "gated-mlp", "standard-normal"),
        ({"hidden": 4, "layers": 1},) * 2 + ({},),
        2,
        {
            "encoder.body.1.linear.weight": (4, 64),
            "encoder.body.1.linear.bias": (4,),
            "encoder.body.1.gate.weight": (4, 64),
            "encoder.body.1.gate.bias": (4,),
            "encoder.mean.weight": (2, 4),
            "encoder.mean.bias": (2,),
            "encoder.log_var.weight": (2, 4),
            "encoder.log_var.bias": (2,),
            "decoder.body.0.linear.weight": (4, 2),
            "decoder.body.0.linear.bias": (4,),
            "decoder.body.0.gate.weight": (4, 2),
            "decoder.body.0.gate.bias": (4,),
            "decoder.out.weight": (64, 4),
            "decoder.out.bias": (64,),
        },
    ),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_parameter_names_and_shapes_are_pinned(name):
    (encoder, decoder, prior), (encoder_options, decoder_options, prior_options), latent_size, expected = PINNED[name]
    model = zoo.compose(
        encoder,
        decoder,
        prior,
        "bernoulli",
        latent_size=latent_size,
        data_shape=(1, 8, 8),
        encoder_options=encoder_options,
        decoder_options=decoder_options,
        prior_options=prior_options,
    )
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected


# -- a refused option is one ZooError line ----------------------------------------------------------


def _refusals():
    from zoo_aevb.components import ConvDecoder, ConvEncoder, GaussianLikelihood, MixtureOfGaussiansPrior
    from zoo_flows.components import DeepMLPDecoder, DeepMLPEncoder, RealNVPPrior
    from zoo_iwae.components import HierarchicalPrior, MLPDecoder, MLPEncoder
    from zoo_resnet.components import DiscretizedLogisticMixtureLikelihood, ResNetEncoder
    from zoo_vamp.components import GatedMLPEncoder

    shape = (1, 28, 28)
    return {
        "aevb encoder channels=0": (lambda: ConvEncoder(4, shape, channels=0), "channels must be a positive integer"),
        "aevb decoder channels=True": (lambda: ConvDecoder(4, shape, channels=True), "channels must be a positive"),
        "aevb mixture components=0": (
            lambda: MixtureOfGaussiansPrior(4, components=0),
            "components must be a positive",
        ),
        "aevb gaussian variance": (lambda: GaussianLikelihood(shape, variance="free"), "'fixed' or 'learned'"),
        "iwae encoder layers=[3, 0]": (
            lambda: MLPEncoder(4, shape, layers=[3, 0]),
            "non-empty list of positive integers",
        ),
        "iwae encoder layers=4": (lambda: MLPEncoder(4, shape, layers=4), "non-empty list of positive integers"),
        "iwae encoder layers sum": (lambda: MLPEncoder(4, shape, layers=[2, 3]), "set latent_size to their sum"),
        "iwae encoder hidden=0": (lambda: MLPEncoder(4, shape, hidden=0), "hidden must be a positive integer"),
        "iwae decoder layers sum": (lambda: MLPDecoder(4, shape, layers=[1, 1]), "set latent_size to their sum"),
        "iwae prior layers": (lambda: HierarchicalPrior(4, layers=["2", 2]), "non-empty list of positive integers"),
        "vamp encoder layers=0": (lambda: GatedMLPEncoder(4, shape, layers=0), "layers >= 1"),
        "flows encoder activation": (lambda: DeepMLPEncoder(4, shape, activation="swish"), "activation must be one of"),
        "flows decoder hidden=0": (lambda: DeepMLPDecoder(4, shape, hidden=0), "hidden >= 1"),
        "flows prior layers=0": (lambda: RealNVPPrior(4, layers=0), "layers >= 1"),
        "resnet encoder 3x3": (lambda: ResNetEncoder(4, (1, 3, 3)), "takes images of at least 4x4 pixels"),
        "resnet encoder flat": (lambda: ResNetEncoder(4, (784,)), r"takes images shaped \[channels, height, width\]"),
        "aevb encoder 2x9": (lambda: ConvEncoder(4, (1, 2, 9)), "at least 4x4 pixels, got 2x9; set downsamplings"),
        "aevb decoder downsamplings=0": (lambda: ConvDecoder(4, shape, downsamplings=0), "downsamplings must be"),
        "aevb gaussian mean": (lambda: GaussianLikelihood(shape, mean="tanh"), "'identity' or 'sigmoid'"),
        "resnet mixture components=0": (
            lambda: DiscretizedLogisticMixtureLikelihood(shape, components=0),
            "at least 1 component",
        ),
    }


@pytest.mark.parametrize("case", sorted(_refusals()))
def test_a_refused_option_is_one_zoo_error_line(case):
    build, message = _refusals()[case]
    with pytest.raises(zoo.ZooError, match=message) as info:
        build()
    assert type(info.value) is zoo.ZooError  # not a ValueError that zoo.compose would have to translate
    assert len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize(
    "kind, id, options",
    [
        ("encoder", "burda-mlp", {"layers": [2, 3]}),
        ("encoder", "conv-mnist", {"channels": 0}),
        ("prior", "mixture-of-gaussians", {"components": 0}),
    ],
)
def test_a_refused_option_by_id_names_the_component(kind, id, options):
    components = {
        "encoder": "conv-mnist",
        "decoder": "conv-mnist",
        "prior": "standard-normal",
        "likelihood": "bernoulli",
        kind: id,
    }
    with pytest.raises(zoo.ZooError) as info:
        zoo.compose(**components, latent_size=4, **{f"{kind}_options": options})
    message = str(info.value)
    assert message.startswith(f"{kind} {id!r}: ") and len(message.splitlines()) == 1, message
    assert "rejected its options" not in message  # the plugin's own sentence, not zoo's translation of a ValueError
