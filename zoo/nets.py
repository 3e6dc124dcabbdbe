"""Networks plugins build their components from: :func:`mlp`, the multi-layer perceptron.

The helper returns a plain :class:`torch.nn.Sequential`, so a plugin can use it as its whole
network or unpack it into a longer one; its parameters are named by position (``0.weight``,
``2.weight``, ...), as if the plugin had written the layers out itself::

    self.net = nn.Sequential(nn.Flatten(), *zoo.mlp([784, 200, 200, 2 * latent_size]))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from zoo.errors import ZooError, is_count


def mlp(sizes: Sequence[int], activation: Callable[[], nn.Module] = nn.Tanh) -> nn.Sequential:
    """Linear layers from ``sizes[0]`` units through each of ``sizes[1:]``, with a fresh
    ``activation()`` after every layer but the last (the output is left linear).

    ``mlp([784, 200, 200, 100])`` is Linear(784, 200), Tanh, Linear(200, 200), Tanh,
    Linear(200, 100): Burda et al.'s two hidden layers of 200 tanh units. ``activation`` is a
    module class or any function returning a module (``nn.ReLU``, ``lambda: nn.LeakyReLU(0.1)``).
    The layers are created in order, so a seed gives the same weights as writing them out.
    """
    sizes = list(sizes)
    if len(sizes) < 2 or not all(is_count(size) for size in sizes):
        raise ZooError(
            f"an mlp needs two or more layer sizes, each a positive integer (got {sizes}); "
            "check the network's width and depth options"
        )
    layers: list[nn.Module] = []
    for i, (inputs, outputs) in enumerate(zip(sizes, sizes[1:])):
        if i:
            layers.append(activation())
        layers.append(nn.Linear(inputs, outputs))
    return nn.Sequential(*layers)
