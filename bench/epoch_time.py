"""Time training epochs of the reference convolutional VAE three ways, in one run on one machine.

    python bench/epoch_time.py --data-dir ../shared/data --epochs 1 [--skip-pythae] [--json-out FILE]

(a) zoo    the zoo trainer through its public API: ``zoo.Trainer("vae-conv-mnist", ...).fit()``;
(b) seed   the seed article's plain loop, re-implemented: its ``ConvolutionalVAE`` and ``vae_loss``,
           torchvision's ``MNIST`` with ``ToTensor`` in a ``DataLoader`` (batch 100, shuffled),
           Adam lr 1e-3;
(c) pythae pythae's own ``TrainingPipeline`` (``BaseTrainer``) training a ``VAE`` with the same
           convolutional encoder/decoder, ``reconstruction_loss="bce"``, latent size 20,
           batch 100, Adam lr 1e-3, no evaluation set. Optional: ``pip install -e .[bench]``
           (see bench/README.md for installing it without touching torch).

For each it prints the training seconds of each epoch (training alone: no evaluation, no
start-up) and the test negative ELBO, in nats per image averaged over the 10,000 MNIST test
images, after the last epoch. See bench/README.md for the meaning of every column.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from seed_reference import ConvolutionalVAE, seed_decoder, seed_encoder, vae_loss

BATCH = 100
LR = 1e-3
LATENT = 20
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
PYTHAE_HELP = (
    "pythae is not installed. Install it without letting pip touch torch:\n"
    "    pip install --no-deps 'pythae==0.1.2'\n"
    "    pip install 'pydantic>=2' cloudpickle imageio scikit-learn scipy\n"
    "or pass --skip-pythae."
)


# -- data -------------------------------------------------------------------------------------


def find_raw(data_dir: str | None) -> Path:
    """The folder holding MNIST's IDX files (torchvision layout: <root>/MNIST/raw)."""
    root = Path(data_dir or os.environ.get("ZOO_DATA") or ".").expanduser()
    for raw in (root / "MNIST" / "raw", root / "raw", root):
        if all((raw / f"{n}.gz").is_file() or (raw / n).is_file() for n in MNIST_FILES):
            return raw
    sys.exit(f"MNIST files not found under {root}: expected {root}/MNIST/raw/{{{','.join(MNIST_FILES)}}}.gz")


def torchvision_root(raw: Path, scratch: Path) -> Path:
    """A writable torchvision-layout root with the files uncompressed (the data root may be
    read-only, and torchvision's MNIST would extract beside the .gz files)."""
    target = scratch / "MNIST" / "raw"
    target.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES:
        if (raw / name).is_file():
            shutil.copyfile(raw / name, target / name)
        else:
            with gzip.open(raw / f"{name}.gz", "rb") as src, open(target / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return scratch


def mnist_tensors(root: Path, train: bool) -> Tensor:
    """MNIST images as float [N, 1, 28, 28] in [0, 1] (what ToTensor gives, all at once)."""
    from torchvision.datasets import MNIST

    data = MNIST(str(root), train=train, download=False).data
    return data.unsqueeze(1).float().div_(255)


# -- a common yardstick -------------------------------------------------------------------------


def negative_elbo(x: Tensor, probs_or_logits: Tensor, mu: Tensor, log_var: Tensor, logits: bool) -> Tensor:
    """Per-image negative ELBO in nats: Bernoulli reconstruction (BCE summed over pixels) plus
    the analytic KL(N(mu, sigma^2) || N(0, I)), at one reparameterised sample of z."""
    x = x.flatten(1)
    out = probs_or_logits.flatten(1)
    if logits:
        rec = F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(1)
    else:
        rec = F.binary_cross_entropy(out, x, reduction="none").sum(1)
    kl = -0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).sum(1)
    return rec + kl


# -- (b) the seed's loop ------------------------------------------------------------------------


def run_seed(root: Path, epochs: int, seed: int, test: Tensor) -> dict:
    from torchvision import transforms
    from torchvision.datasets import MNIST

    torch.manual_seed(seed)
    transform = transforms.Compose([transforms.ToTensor()])
    train_set = MNIST(str(root), train=True, download=False, transform=transform)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=BATCH, shuffle=True)
    vae = ConvolutionalVAE(LATENT)
    vae.train()
    optimizer = torch.optim.Adam(vae.parameters(), lr=LR)
    epoch_seconds, train_losses = [], []
    for _epoch in range(epochs):
        start = time.perf_counter()
        epoch_loss = 0.0
        for images, _labels in train_loader:
            outputs, mu, sigma = vae(images)
            batch_loss = vae_loss(images, outputs, mu, sigma)
            epoch_loss += batch_loss.item()
            optimizer.zero_grad()
            batch_loss.backward()
            optimizer.step()
        epoch_seconds.append(time.perf_counter() - start)
        train_losses.append(epoch_loss / len(train_loader.dataset))
    vae.eval()
    with torch.no_grad():
        mu, log_var = vae.encode(test)
        probs = vae.decode(vae.sample_z(mu, log_var))
        test_loss = negative_elbo(test, probs, mu.flatten(1), log_var.flatten(1), logits=False).mean().item()
    return {"epoch_seconds": epoch_seconds, "train_loss": train_losses, "test_loss": test_loss}


# -- (c) pythae --------------------------------------------------------------------------------


def run_pythae(root: Path, epochs: int, seed: int, test: Tensor, scratch: Path, train: Tensor) -> dict:
    try:
        from pythae.models import VAE, VAEConfig
        from pythae.models.base.base_utils import ModelOutput
        from pythae.models.nn import BaseDecoder, BaseEncoder
        from pythae.pipelines import TrainingPipeline
        from pythae.trainers import BaseTrainerConfig
        from pythae.trainers.training_callbacks import TrainingCallback
    except ImportError:
        print(PYTHAE_HELP, file=sys.stderr)
        raise

    import logging

    logging.getLogger("pythae").setLevel(logging.WARNING)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("pythae"):
            logging.getLogger(name).setLevel(logging.WARNING)

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.net = seed_encoder(LATENT)

        def forward(self, x):
            mu, log_var = self.net(x).flatten(1).chunk(2, dim=1)
            return ModelOutput(embedding=mu, log_covariance=log_var)

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = seed_decoder(LATENT)

        def forward(self, z):
            return ModelOutput(reconstruction=self.net(z[:, :, None, None]))

    class EpochTimer(TrainingCallback):
        def __init__(self):
            self.seconds, self._start = [], None

        def on_epoch_begin(self, training_config, **kwargs):
            self._start = time.perf_counter()

        def on_epoch_end(self, training_config, **kwargs):
            self.seconds.append(time.perf_counter() - self._start)

    torch.manual_seed(seed)
    config = VAEConfig(input_dim=(1, 28, 28), latent_dim=LATENT, reconstruction_loss="bce")
    model = VAE(model_config=config, encoder=Encoder(), decoder=Decoder())
    training_config = BaseTrainerConfig(
        output_dir=str(scratch / "pythae"),
        num_epochs=epochs,
        per_device_train_batch_size=BATCH,
        learning_rate=LR,
        optimizer_cls="Adam",
        no_cuda=True,
        seed=seed,
        keep_best_on_train=True,  # without an eval set pythae 0.1.2 needs this to pick its final model
    )
    timer = EpochTimer()
    pipeline = TrainingPipeline(training_config=training_config, model=model)
    start = time.perf_counter()
    pipeline(train_data=train, eval_data=None, callbacks=[timer])
    total = time.perf_counter() - start
    trained = pipeline.trainer.model
    trained.eval()
    with torch.no_grad():
        enc = trained.encoder(test)
        mu, log_var = enc.embedding, enc.log_covariance
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        probs = trained.decoder(z).reconstruction
        test_loss = negative_elbo(test, probs, mu, log_var, logits=False).mean().item()
    return {"epoch_seconds": timer.seconds, "test_loss": test_loss, "pipeline_seconds": total}


# -- (a) zoo -----------------------------------------------------------------------------------


def run_zoo(data_dir: str | None, epochs: int, seed: int, scratch: Path, extra: dict) -> dict:
    import zoo

    Trainer = getattr(zoo, "Trainer", None)
    if Trainer is None:
        from zoo.trainer import Trainer  # noqa: N813
    trainer = Trainer(
        "vae-conv-mnist",
        overrides={"epochs": epochs},
        device="cpu",
        seed=seed,
        data_dir=data_dir,
        out=str(scratch / "zoo-run"),
        progress=False,
        **extra,
    )
    start = time.perf_counter()
    metrics = trainer.fit()
    total = time.perf_counter() - start
    return {
        "epoch_seconds": [m["epoch_seconds"] for m in metrics],
        "train_loss": [m.get("train_loss") for m in metrics],
        "test_loss": metrics[-1]["test_loss"],
        "fit_seconds": total,
    }


# -- report ------------------------------------------------------------------------------------


def summarise(results: dict, epochs: int) -> list[dict]:
    rows = []
    for name, r in results.items():
        secs = r["epoch_seconds"]
        steady = secs[1:] if len(secs) > 1 else secs
        rows.append({
            "system": name,
            "first_epoch_s": secs[0],
            "mean_epoch_s": sum(secs) / len(secs),
            "steady_epoch_s": sum(steady) / len(steady),
            "test_loss": r["test_loss"],
        })
    by = {row["system"]: row for row in rows}
    for row in rows:
        for ref in ("seed", "pythae"):
            if ref in by:
                row[f"x_vs_{ref}"] = by[ref]["mean_epoch_s"] / row["mean_epoch_s"]
    return rows


def print_table(rows: list[dict], epochs: int) -> None:
    print()
    print(f"{'system':8s} {'epoch s (mean)':>14s} {'first epoch s':>13s} {'test -ELBO':>11s} {'x vs seed':>9s} {'x vs pythae':>11s}")
    for row in rows:
        vs_seed = f"{row['x_vs_seed']:.2f}" if "x_vs_seed" in row else "-"
        vs_pythae = f"{row['x_vs_pythae']:.2f}" if "x_vs_pythae" in row else "-"
        print(
            f"{row['system']:8s} {row['mean_epoch_s']:14.2f} {row['first_epoch_s']:13.2f} "
            f"{row['test_loss']:11.2f} {vs_seed:>9s} {vs_pythae:>11s}"
        )
    print(f"\nepoch s: training seconds per epoch, mean over {epochs} epoch(s); test -ELBO: nats/image, "
          "mean over the 10,000 test images; 'x vs': how many times faster than that system (>1 = faster).")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None, help="data root in torchvision layout (MNIST/raw/*.gz); default $ZOO_DATA")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-zoo", action="store_true")
    p.add_argument("--skip-seed", action="store_true")
    p.add_argument("--skip-pythae", action="store_true")
    p.add_argument("--zoo-compile", action="store_true", help="pass compile=True to zoo.Trainer")
    p.add_argument("--json-out", default=None, help="also write the results as JSON here")
    args = p.parse_args(argv)

    if not args.skip_pythae:
        try:
            import pythae  # noqa: F401
        except ImportError:
            print(PYTHAE_HELP, file=sys.stderr)
            return 2

    raw = find_raw(args.data_dir)
    data_dir = args.data_dir or os.environ.get("ZOO_DATA")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; {args.epochs} epoch(s), batch {BATCH}, Adam lr {LR}")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        scratch = Path(tmp)
        root = torchvision_root(raw, scratch / "data")
        test = mnist_tensors(root, train=False)
        if not args.skip_zoo:
            print("zoo: training ...", flush=True)
            extra = {"compile": True} if args.zoo_compile else {}
            results["zoo"] = run_zoo(data_dir, args.epochs, args.seed, scratch, extra)
            print(f"  zoo: epochs {[round(s, 2) for s in results['zoo']['epoch_seconds']]} s", flush=True)
        if not args.skip_seed:
            print("seed loop: training ...", flush=True)
            results["seed"] = run_seed(root, args.epochs, args.seed, test)
            print(f"  seed: epochs {[round(s, 2) for s in results['seed']['epoch_seconds']]} s", flush=True)
        if not args.skip_pythae:
            print("pythae: training ...", flush=True)
            train = mnist_tensors(root, train=True)
            results["pythae"] = run_pythae(root, args.epochs, args.seed, test, scratch, train)
            print(f"  pythae: epochs {[round(s, 2) for s in results['pythae']['epoch_seconds']]} s", flush=True)
    if not results:
        print("nothing to run")
        return 0
    rows = summarise(results, args.epochs)
    print_table(rows, args.epochs)
    if args.json_out:
        payload = {
            "epochs": args.epochs,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "rows": rows,
            "raw": results,
        }
        Path(args.json_out).write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
