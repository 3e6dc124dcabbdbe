"""Speed of the importance-weighted NLL estimate: zoo against pythae's ``VAE.get_nll``.

Both score the same MNIST test images with the same number of importance samples per image,
on the same architecture with the same weights (the seed's conv encoder/decoder: zoo's
``vae-conv-mnist``, copied into a pythae ``VAE`` with ``reconstruction_loss="bce"``), in the same
process with the same thread count. Rounds alternate between the two, because the machine may
be shared; the best round of each is compared. Both estimates are printed too: with the same
weights they must agree within Monte-Carlo error.

    python bench/iw_speed.py --data-dir ../shared/data [--run RUN] [--images 1000] [--samples 100]

Prints samples/second for each, the ratio, and the time zoo would take for K=5000 on the full
10,000-image test set at the measured rate. Needs ``pip install pythae==0.1.2`` (the ``bench``
extra).
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import nn

import zoo
from zoo.estimators import importance_weighted, prepare_for_inference


def pythae_twin(model):
    """A pythae VAE computing exactly what ``model`` (a zoo conv VAE) computes, sharing its weights."""
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            mean, log_var = self.net(x).flatten(1).chunk(2, dim=1)
            return ModelOutput(embedding=mean, log_covariance=log_var)

    class Decoder(BaseDecoder):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z[:, :, None, None])))

    config = VAEConfig(input_dim=tuple(model.data_shape), latent_dim=model.latent_size, reconstruction_loss="bce")
    return VAE(config, encoder=Encoder(model.encoder.net), decoder=Decoder(model.decoder.net)).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="folder holding MNIST/raw (default: $ZOO_DATA or the cache)")
    parser.add_argument(
        "--run", default=None, help="a trained vae-conv-mnist run or checkpoint (default: random weights)"
    )
    parser.add_argument("--images", type=int, default=1000, help="test images scored by each (default 1000)")
    parser.add_argument("--samples", type=int, default=100, help="importance samples per image (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best of each is kept")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (both run there)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from zoo.plugins import get_registry

    images, _ = get_registry().get("dataset", "mnist").load().load("test", args.data_dir, download=False)
    device = torch.device(args.device)
    x = images[: args.images].float().div(255).to(device)
    torch.manual_seed(0)
    model = zoo.load(args.run) if args.run else zoo.create("vae-conv-mnist").eval()
    model.check_inputs = False
    model = model.to(device)
    twin = pythae_twin(model).to(device)  # shares the weights: built before zoo's model turns channels-last
    zoo_model = prepare_for_inference(model)

    n, k = len(x), args.samples
    print(
        f"IW estimate on {n} MNIST test images x {k} samples, vae-conv-mnist "
        f"({'weights of ' + args.run if args.run else 'random weights'}), {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, device {device}"
        f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}"
    )
    best = {"pythae": math.inf, "zoo": math.inf}
    nll = {}
    for round_ in range(1, args.rounds + 1):
        torch.manual_seed(round_)
        start = time.perf_counter()
        with torch.no_grad():
            nll["pythae"] = -float(twin.get_nll(x, n_samples=k, batch_size=100))
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        best["pythae"] = min(best["pythae"], seconds)
        print(
            f"  round {round_}: pythae get_nll  {seconds:7.2f} s  {n * k / seconds:10,.0f} samples/s"
            f"  NLL {nll['pythae']:.2f}",
            flush=True,
        )

        torch.manual_seed(round_)
        estimate = importance_weighted(zoo_model, x.split(100), k)
        seconds = estimate.seconds
        nll["zoo"] = -float(estimate.log_px.mean())
        best["zoo"] = min(best["zoo"], seconds)
        print(
            f"  round {round_}: zoo             {seconds:7.2f} s  {n * k / seconds:10,.0f} samples/s"
            f"  NLL {nll['zoo']:.2f}",
            flush=True,
        )

    rate = {name: n * k / seconds for name, seconds in best.items()}
    full = 10_000 * 5000 / rate["zoo"]
    print()
    print(f"| implementation | seconds ({n} images x {k} samples) | samples/s |")
    print("|---|---:|---:|")
    print(f"| pythae 0.1.2 `VAE.get_nll` | {best['pythae']:.2f} | {rate['pythae']:,.0f} |")
    print(f"| zoo `importance_weighted` | {best['zoo']:.2f} | {rate['zoo']:,.0f} |")
    print()
    print(f"zoo / pythae: {rate['zoo'] / rate['pythae']:.1f}x samples per second")
    print(
        f"K=5000 on the full 10,000-image test set at zoo's rate: {full / 60:.1f} min "
        f"(pythae's rate: {10_000 * 5000 / rate['pythae'] / 60:.1f} min)"
    )


if __name__ == "__main__":
    main()
