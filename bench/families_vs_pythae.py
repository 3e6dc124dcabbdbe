"""The zoo's IWAE and VampPrior recipes against pythae's IWAE and VAMP: same data, same networks,
same epochs, scored on the same test images with the same K.

    python bench/families_vs_pythae.py --data-dir ../shared/data --model iwae --epochs 5 \\
        --samples 1000 --limit 1000 [--json-out FILE]

For ``--model iwae`` both train Burda et al.'s one-layer MLP (784-200-200-50 tanh, mirrored decoder,
Bernoulli output) with the IWAE bound at k=50, batch 20, Adam lr 1e-3; for ``--model vamp`` the
VampPrior paper's gated MLP (2 gated layers of 300 units, 40 latents, log-variance clipped to
[-6, 2]) with a VampPrior of 500 pseudo-inputs, batch 100, Adam lr 5e-4 and a linear KL warm-up
over 100 epochs. The zoo side is the registered recipe (``iwae-burda-mnist``,
``vamp-mlp-binarized-mnist``) trained by ``zoo.Trainer``; the pythae side is pythae 0.1.2's
``IWAE`` / ``VAMP`` whose encoder and decoder are copies of the zoo model's networks as the zoo
trainer initialised them (pseudo-inputs too), so both start from the same weights; trained by
pythae's ``TrainingPipeline``.

Data: both train on MNIST binarized afresh every time an image is drawn (dynamic binarization;
for pythae through a ``BaseDataset`` whose ``__getitem__`` draws the binary image), and are
scored on the zoo's fixed binarization of the test set. The zoo is scored with
``zoo.evaluate.evaluate`` (what ``zoo eval`` runs), pythae with its own ``get_nll`` (under
``torch.no_grad``), both at K importance samples on the first N test images.

Printed: seconds per epoch (mean over epochs; pythae's between its epoch callbacks), test IW-NLL
and its standard error for both, the seconds each estimate took, and the ratios. The thread
count is the same for both (``--threads``, default 1: the machine may be shared).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch
from machine import cpu_model
from torch import nn

RECIPES = {"iwae": "iwae-burda-mnist", "vamp": "vamp-mlp-binarized-mnist"}


# -- the zoo ---------------------------------------------------------------------------------


def run_zoo(
    model: str,
    epochs: int,
    seed: int,
    data_dir: str | None,
    scratch: Path,
    samples: int,
    limit: int | None,
    device: str,
) -> tuple[dict, nn.Module]:
    """Train and score the zoo recipe; also returns a copy of the model as initialised."""
    import copy

    import zoo
    from zoo.evaluate import evaluate

    out = scratch / "zoo"
    trainer = zoo.Trainer(
        RECIPES[model],
        overrides={"epochs": epochs},
        device=device,
        seed=seed,
        data_dir=data_dir,
        out=str(out),
        progress=False,
        threads=torch.get_num_threads() if device == "cpu" else None,
    )
    initial = copy.deepcopy(trainer.model)
    rows = trainer.fit()
    start = time.perf_counter()
    metrics = evaluate(
        out,
        iw_samples=samples,
        limit=limit,
        data_dir=data_dir,
        fid=False,
        images=False,
        out=scratch / "zoo-eval",
        device=device,
        progress=False,
        threads=torch.get_num_threads() if device == "cpu" else None,
    )
    return {
        "epoch_seconds": [r["epoch_seconds"] for r in rows],
        "nll": metrics["test_nll_iw"],
        "nll_stderr": metrics["test_nll_iw_stderr"],
        "estimate_seconds": time.perf_counter() - start,
        "test_neg_elbo": metrics["test_neg_elbo"],
    }, initial


# -- pythae ----------------------------------------------------------------------------------


def _pythae_nets(model: str, initial: nn.Module):
    """pythae encoder and decoder computing what the zoo's networks compute, starting from the same
    initial weights (copies of the zoo model's modules, as the zoo trainer initialised them)."""
    import copy

    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    if model == "iwae":
        body = copy.deepcopy(initial.encoder.stages[0].net)  # 784-200-200 tanh, then 2 x 50
        mean_head = log_var_head = None
        decoder_net = copy.deepcopy(initial.decoder.net)  # 50-200-200 tanh-784
        clip = None
    else:
        body = copy.deepcopy(initial.encoder.body)  # flatten, 2 gated layers of 300
        mean_head, log_var_head = copy.deepcopy(initial.encoder.mean), copy.deepcopy(initial.encoder.log_var)
        decoder_net = nn.Sequential(copy.deepcopy(initial.decoder.body), copy.deepcopy(initial.decoder.out))
        clip = (-6.0, 2.0)

    class Encoder(BaseEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.mean, self.log_var = body, mean_head, log_var_head

        def forward(self, x):
            h = self.body(x.reshape(len(x), -1))
            if self.mean is None:
                mean, log_var = h.chunk(2, dim=-1)
            else:
                mean, log_var = self.mean(h), nn.functional.hardtanh(self.log_var(h), *clip)
            return ModelOutput(embedding=mean, log_covariance=log_var)

    class Decoder(BaseDecoder):
        def __init__(self) -> None:
            super().__init__()
            self.net = decoder_net

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)).reshape(len(z), 1, 28, 28))

    return initial.latent_size, Encoder(), Decoder()


def run_pythae(
    model: str,
    epochs: int,
    seed: int,
    train: torch.Tensor,
    test: torch.Tensor,
    scratch: Path,
    samples: int,
    initial: nn.Module,
    device: str,
) -> dict:
    from pythae.data.datasets import BaseDataset, DatasetOutput
    from pythae.models import IWAE, VAMP, IWAEConfig, VAMPConfig
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig
    from pythae.trainers.training_callbacks import TrainingCallback

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("pythae"):
            logging.getLogger(name).setLevel(logging.WARNING)

    class DynamicallyBinarized(BaseDataset):
        """MNIST grey levels; every access draws a fresh binary image (as the zoo's binarized-mnist)."""

        def __getitem__(self, index):
            return DatasetOutput(data=torch.bernoulli(self.data[index]), labels=self.labels[index])

    class EpochTimer(TrainingCallback):
        def __init__(self) -> None:
            self.seconds, self._start = [], 0.0

        def on_epoch_begin(self, training_config, **kwargs):
            self._start = time.perf_counter()

        def on_epoch_end(self, training_config, **kwargs):
            self.seconds.append(time.perf_counter() - self._start)

    torch.manual_seed(seed)
    latent, encoder, decoder = _pythae_nets(model, initial)
    if model == "iwae":
        config = IWAEConfig(input_dim=(1, 28, 28), latent_dim=latent, reconstruction_loss="bce", number_samples=50)
        net, batch, lr = IWAE(config, encoder=encoder, decoder=decoder), 20, 1e-3
    else:
        config = VAMPConfig(
            input_dim=(1, 28, 28),
            latent_dim=latent,
            reconstruction_loss="bce",
            number_components=500,
            linear_scheduling_steps=100,
        )
        net, batch, lr = VAMP(config, encoder=encoder, decoder=decoder), 100, 5e-4
        with torch.no_grad():  # the same initial pseudo-inputs: pythae keeps them as a Linear from one-hot inputs
            weights = initial.prior.pseudo_input_weights.reshape(len(initial.prior.pseudo_input_weights), -1)
            net.pseudo_inputs[0].weight.copy_(weights.T)
            net.pseudo_inputs[0].bias.zero_()
    training = BaseTrainerConfig(
        output_dir=str(scratch / "pythae"),
        num_epochs=epochs,
        per_device_train_batch_size=batch,
        learning_rate=lr,
        optimizer_cls="Adam",
        no_cuda=device == "cpu",
        seed=seed,
        keep_best_on_train=True,
    )
    timer = EpochTimer()
    pipeline = TrainingPipeline(training_config=training, model=net)
    pipeline(train_data=DynamicallyBinarized(train, torch.zeros(len(train))), eval_data=None, callbacks=[timer])
    trained = pipeline.trainer.model.eval().to(device)
    test = test.to(device)
    start = time.perf_counter()
    per_image = []
    with torch.no_grad():
        # get_nll averages over the images it is given; one image at a time gives the standard error too
        for x in test:
            with contextlib.redirect_stdout(io.StringIO()):  # get_nll prints a line per image
                per_image.append(-trained.get_nll(x[None], n_samples=samples, batch_size=min(samples, 1000)))
    if device != "cpu":
        torch.cuda.synchronize()
    values = torch.tensor([float(v) for v in per_image], dtype=torch.float64)
    return {
        "epoch_seconds": timer.seconds,
        "nll": values.mean().item(),
        "nll_stderr": (values.std() / math.sqrt(len(values))).item(),
        "estimate_seconds": time.perf_counter() - start,
    }


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(RECIPES), required=True)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--samples", type=int, default=1000, help="importance samples K per test image")
    parser.add_argument("--limit", type=int, default=1000, help="first N test images (0: all 10,000)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for both (CPU only)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where both train and score")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    limit = args.limit or None

    from zoo.evaluate import _test_images
    from zoo.plugins import get_registry

    dataset = get_registry().get("dataset", "binarized-mnist").load()
    test, _ = _test_images(dataset, args.data_dir, limit, torch.device("cpu"))
    train = dataset.load("train", args.data_dir)[0].float().div_(255)  # grey levels; binarized when drawn

    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        print(f"zoo: training {RECIPES[args.model]} for {args.epochs} epochs ...", flush=True)
        results["zoo"], initial = run_zoo(
            args.model, args.epochs, args.seed, args.data_dir, Path(scratch), args.samples, limit, args.device
        )
        print(f"  {results['zoo']}", flush=True)
        print(f"pythae: training {args.model.upper()} for {args.epochs} epochs ...", flush=True)
        results["pythae"] = run_pythae(
            args.model, args.epochs, args.seed, train, test, Path(scratch), args.samples, initial, args.device
        )
        print(f"  {results['pythae']}", flush=True)

    print()
    print(f"`python {' '.join(shlex.quote(a) for a in ['bench/families_vs_pythae.py', *sys.argv[1:]])}`")
    gpu = f", {torch.cuda.get_device_name(0)}" if args.device != "cpu" else ""
    print(f"CPU: {cpu_model()}, {args.threads} thread(s), torch {torch.__version__}; device {args.device}{gpu}")
    print()
    print(
        f"| system | s/epoch (mean of {args.epochs}) | test IW-NLL, K={args.samples}, {len(test)} images | estimate s |"
    )
    print("|---|---:|---:|---:|")
    for name, r in results.items():
        mean = sum(r["epoch_seconds"]) / len(r["epoch_seconds"])
        r["epoch_seconds_mean"] = mean
        print(f"| {name} | {mean:.1f} | {r['nll']:.2f} ± {r['nll_stderr']:.2f} | {r['estimate_seconds']:.1f} |")
    zoo_r, py = results["zoo"], results["pythae"]
    print()
    print(
        f"zoo is {py['epoch_seconds_mean'] / zoo_r['epoch_seconds_mean']:.2f}x pythae per epoch, "
        f"{py['estimate_seconds'] / zoo_r['estimate_seconds']:.2f}x on the estimate; "
        f"IW-NLL difference zoo - pythae = {zoo_r['nll'] - py['nll']:+.2f} nats "
        f"(combined s.e. {math.hypot(zoo_r['nll_stderr'], py['nll_stderr']):.2f})"
    )
    if args.json_out:
        args.json_out.write_text(
            json.dumps(
                {"args": vars(args) | {"json_out": str(args.json_out)}, "cpu": cpu_model(), "results": results},
                indent=1,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
