"""The four component interfaces every model in the zoo is composed of.

All four are :class:`torch.nn.Module` subclasses, so they carry their own parameters and move
with ``.to(device)``. Each produces or consumes :class:`torch.distributions.Distribution`
objects; the objectives in :mod:`zoo.objectives` need nothing else.

Shapes (B = batch, L = ``latent_size``, D = the data shape, e.g. ``(1, 28, 28)``):

=============  ================================  ==========================================
component      call                              returns
=============  ================================  ==========================================
Encoder        ``encoder(x)``, x: [B, *D]        q(z|x): batch shape [B], event shape [L],
                                                 supports ``rsample``
Decoder        ``decoder(z)``, z: [..., L]       parameters of p(x|z): a tensor shaped
                                                 [..., *likelihood.param_shape(D)]
Prior          ``prior()``                       p(z): event shape [L], empty batch shape
Likelihood     ``likelihood(params)``            p(x|z): ``log_prob(x)`` sums over D
=============  ================================  ==========================================

Decoders accept any number of leading sample/batch dimensions (the importance-weighted bound
decodes [K, B, L]); a decoder may flatten them itself or inherit :meth:`Decoder.forward`, which
flattens them around :meth:`Decoder.decode`.

The fifth interface, :class:`Objective`, is what a model is trained with: it receives the model
and a batch and returns the loss and what it wants logged.

Every interface records the keyword arguments its constructor was called with (see
:func:`constructor_options`), so a component built in Python can be written down by id and
options, and :func:`zoo.load` can rebuild it.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

Shape = tuple[int, ...]

_OPTIONS_ATTR = "_zoo_constructor_options"


class _RecordsOptions(nn.Module):
    """Remembers the arguments of the outermost ``__init__`` call of every subclass.

    ``cuda_graph_safe``: whether a training step through this component can be captured once in
    a CUDA graph and replayed (docs/training.md, "Speed"). A component whose forward keeps state
    that changes from step to step in Python (a counter, a schedule held in a float, a sleep)
    sets it to False, and the trainer then trains it without graphs. State kept in tensors and
    updated in place (a registered buffer) is replayed correctly.
    """

    cuda_graph_safe: bool = True

    def add_loss(self, name: str, value: Tensor) -> None:
        """Add an auxiliary loss term from this training forward pass: a scalar (nats per example,
        averaged over the batch) that every objective's loss gets added and that is logged as
        ``train_aux_<name>`` (a VQ codebook and commitment loss, a regulariser). Ignored outside
        training (``self.training`` false). A distribution a component returns may carry the same
        as an ``aux_losses`` dict attribute instead. Several passes in one step are averaged."""
        if self.training:
            self.__dict__.setdefault("_zoo_aux_losses", []).append((name, value))

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None or getattr(init, "_zoo_records", False):
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self, *args: Any, **kw: Any) -> None:
            if _OPTIONS_ATTR not in self.__dict__:
                try:
                    bound = signature.bind(self, *args, **kw)
                except TypeError:
                    bound = None  # let the real __init__ raise its own error
                if bound is not None:
                    arguments = dict(bound.arguments)
                    arguments.pop(next(iter(signature.parameters)), None)  # self
                    for name, param in signature.parameters.items():
                        if param.kind is param.VAR_KEYWORD and name in arguments:
                            arguments.update(arguments.pop(name))
                        elif param.kind is param.VAR_POSITIONAL:
                            arguments.pop(name, None)
                    # Plain attribute on the instance dict: nn.Module.__init__ has not run yet.
                    self.__dict__[_OPTIONS_ATTR] = arguments
            init(self, *args, **kw)

        recording_init._zoo_records = True  # type: ignore[attr-defined]
        cls.__init__ = recording_init  # type: ignore[method-assign]


def constructor_options(component: nn.Module) -> dict[str, Any] | None:
    """The keyword arguments ``component`` was constructed with (``None`` if not recorded)."""
    options = component.__dict__.get(_OPTIONS_ATTR)
    return dict(options) if options is not None else None


class Encoder(_RecordsOptions):
    """x -> q(z|x).

    Subclasses set ``self.latent_size`` and implement :meth:`forward` returning a distribution
    with batch shape [B] and event shape [latent_size] that supports ``rsample``.

    A deterministic encoder (an autoencoder's) sets ``deterministic = True`` and returns a
    :class:`zoo.PointMass`: its code has no density, so the ELBO and the IW-NLL do not apply.
    """

    latent_size: int
    deterministic: bool = False

    def forward(self, x: Tensor) -> Distribution:  # pragma: no cover - interface
        raise NotImplementedError


class Decoder(_RecordsOptions):
    """z -> parameters of p(x|z).

    Subclasses set ``self.latent_size`` and ``self.output_shape`` (the parameter shape the
    likelihood asked for) and implement :meth:`decode` on a flat batch ``[N, L] -> [N, *output_shape]``.
    """

    latent_size: int
    output_shape: Shape

    def decode(self, z: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def forward(self, z: Tensor) -> Tensor:
        lead = z.shape[:-1]
        out = self.decode(z.reshape(-1, z.shape[-1]))
        return out.reshape(*lead, *out.shape[1:])


class Prior(_RecordsOptions):
    """p(z). May hold learnable parameters; they are trained with the model.

    Subclasses set ``self.latent_size`` and implement :meth:`forward` returning a distribution
    with event shape [latent_size] (built from the module's parameters and buffers, so it
    lives on the module's device).
    """

    latent_size: int

    def forward(self) -> Distribution:  # pragma: no cover - interface
        raise NotImplementedError

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z), summed over the latent dimensions."""
        return self().log_prob(z)

    def sample(self, n: int) -> Tensor:
        """``n`` draws from p(z), shaped [n, latent_size]."""
        return self().sample((n,))


class Sampler(Prior):
    """A prior fitted after training to the codes of the training set (pythae's "samplers"): a
    Gaussian mixture, a normalizing flow, a second-stage VAE, a PixelCNN over discrete codes.

    It is a :class:`Prior` (``forward``/``log_prob`` where it has a density, ``sample``), built like
    one from its options, then fitted once with :meth:`fit` by ``zoo fit-prior``. What it learns is
    kept in parameters and buffers, so the fitted model's checkpoint holds it and ``zoo.load``
    rebuilds it. A sampler without a density (a second-stage VAE) sets ``has_density = False``; the
    evaluator then reports what needs only samples (FID).
    """

    has_density: bool = True

    def fit(self, codes: Tensor, **settings: Any) -> dict[str, float]:  # pragma: no cover - interface
        """Fit to ``codes`` ([N, latent_size], the encoder's means of the training images); return
        figures worth reporting (a final loss, a log-likelihood per code)."""
        raise NotImplementedError


class Likelihood(_RecordsOptions):
    """Decoder output -> p(x|z), a distribution whose ``log_prob(x)`` sums over the data dims.

    :meth:`param_shape` tells the decoder how many numbers to produce per data point (a
    Bernoulli needs one logit per pixel, a Gaussian with learned variance two). The returned
    distribution must provide ``log_prob``, ``mean`` and ``sample``.
    """

    #: Data must lie in this closed interval (``None``: any real value).
    support: tuple[float, float] | None = None
    #: A discrete likelihood may declare that it puts all its mass on this many values spread
    #: evenly over ``support`` (``levels = 256`` for 8-bit grey levels); see :meth:`level_values`.
    levels: int | None = None

    def level_values(self) -> Tensor | None:
        """The declared ``levels`` values, evenly spaced over ``support`` (float64), or ``None``."""
        if self.levels is None:
            return None
        if self.support is None:
            from zoo.errors import ZooError

            raise ZooError(f"{type(self).__name__} declares levels = {self.levels} but no support to spread them over")
        lo, hi = self.support
        return torch.linspace(lo, hi, int(self.levels), dtype=torch.float64)

    def param_shape(self, data_shape: Sequence[int]) -> Shape:
        """Shape of the decoder output for one data point of ``data_shape``."""
        return tuple(data_shape)

    def forward(self, params: Tensor) -> Distribution:  # pragma: no cover - interface
        raise NotImplementedError

    def check_data(self, x: Tensor) -> None:
        """Raise :class:`zoo.ZooError` when ``x`` is outside the likelihood's support."""
        if self.support is None:
            return
        lo, hi = self.support
        bad = (x < lo) | (x > hi) | torch.isnan(x)
        if bool(bad.any()):
            from zoo.errors import ZooError

            raise ZooError(
                f"data outside [{lo:g}, {hi:g}] for the {type(self).__name__} likelihood "
                f"(min {x.min().item():.4g}, max {x.max().item():.4g}); scale images to [0, 1] "
                "or choose a likelihood for real-valued data"
            )


@dataclass
class TrainingContext:
    """What an objective may know of the run training it, as ``objective.context`` (``None``
    outside a :class:`zoo.Trainer`).

    ``dataset_size`` (training images), ``batch_size`` (the global batch), ``steps_per_epoch``,
    ``epochs`` and ``world_size`` are fixed for the run. ``epoch`` (1-based, the one being trained)
    and ``step`` (optimisation steps done before this one, over the whole run) are Python numbers
    updated by the trainer: an objective that reads them inside its forward pass must set
    ``cuda_graph_safe = False`` (a CUDA graph replays the values seen when it was captured), or
    count in a buffer instead, as the KL warm-up does.
    """

    dataset_size: int
    batch_size: int
    steps_per_epoch: int
    epochs: int
    world_size: int = 1
    epoch: int = 1
    step: int = 0


class _LossAndLogs(NamedTuple):
    loss: Tensor
    logs: dict[str, Tensor]


class ObjectiveOutput(_LossAndLogs):
    """What an objective returns: the scalar loss to minimise and scalars to log (means over the
    batch), unpacked as ``loss, logs = objective(model, x)``.

    ``losses`` (a keyword, not unpacked): for an objective that declares :meth:`Objective.updates`,
    the loss of each update by its name (a discriminator's), minimised by that update's optimizer alone.
    """

    def __new__(cls, loss: Tensor, logs: dict[str, Tensor], losses: dict[str, Tensor] | None = None):
        out = super().__new__(cls, loss, logs)
        out.losses = losses
        return out


@dataclass
class Update:
    """An optimisation step an objective runs each training step on parameters of its own (a
    discriminator's), besides the model's, minimising ``ObjectiveOutput.losses[name]``.

    ``parameters``: the objective's own (they are then left out of the model's optimizer).
    ``optimizer``: a ``torch.optim`` class name in lower case (``adam``, ``adamw``, ``sgd``,
    ``rmsprop``, ``adagrad``); ``lr`` (default: the recipe's) and ``options`` (its other keyword
    arguments, e.g. ``{"betas": [0.5, 0.9]}``) configure it.
    """

    name: str
    parameters: Any
    optimizer: str = "adam"
    lr: float | None = None
    options: dict[str, Any] | None = None


class Objective(_RecordsOptions):
    """What a model is trained with: ``objective(model, x) -> ObjectiveOutput(loss, logs)``.

    ``loss`` is a scalar to minimise (nats per example, averaged over the batch); ``logs`` holds
    scalar tensors the trainer averages over each epoch and writes as ``train_<name>``. An
    objective may keep state in buffers (a KL warm-up counts its steps); the trainer stores its
    ``state_dict`` in every checkpoint, so a resumed run continues exactly. It must count steps
    only while ``self.training`` is true (evaluation runs it in eval mode).

    Objectives never change how a model is *evaluated*: the trainer's test metrics are always
    the negative ELBO and its two terms, so runs trained differently compare.

    ``context`` is the :class:`TrainingContext` of the run (the data set's size, the step, the
    epoch) while a :class:`zoo.Trainer` trains with it, ``None`` otherwise. The auxiliary losses
    of the model's components (:meth:`add_loss`) are added to ``loss`` by the trainer's step
    (:class:`zoo.objectives.TrainingStep`), so an objective need not know of them.
    """

    context: TrainingContext | None = None
    #: Whether the objective needs log q(z|x) (the ELBO's, the IWAE's): such an objective refuses a
    #: deterministic encoder. Objectives for autoencoders (``ae``, WAE, RAE) set it to False.
    needs_density: bool = True

    def updates(self) -> list[Update]:
        """Optimisation steps on the objective's own parameters, run after the model's step in
        this order (none by default): see :class:`Update`."""
        return []

    def forward(self, model: nn.Module, x: Tensor) -> ObjectiveOutput:  # pragma: no cover - interface
        raise NotImplementedError


def num_elements(shape: Sequence[int]) -> int:
    return math.prod(shape)
