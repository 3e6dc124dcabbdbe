"""Time training epochs of the reference convolutional VAE three ways, side by side, on one machine.

    python bench/epoch_time.py --data-dir ../shared/data --epochs 1 [--device cuda] [--load 0,1]
                               [--skip-pythae] [--json-out FILE]

(a) zoo    what a user runs: ``zoo train vae-conv-mnist --epochs N --device D`` with its defaults;
(b) seed   the seed article's plain loop, re-implemented: its ``ConvolutionalVAE`` and ``vae_loss``,
           torchvision's ``MNIST`` with ``ToTensor`` in a ``DataLoader`` (batch 100, shuffled),
           Adam lr 1e-3 (on a GPU, each batch is moved to the device, as a port of it would);
(c) pythae pythae's own ``TrainingPipeline`` (``BaseTrainer``) training a ``VAE`` with the same
           convolutional encoder/decoder, ``reconstruction_loss="bce"``, latent size 20,
           batch 100, Adam lr 1e-3, no evaluation set. Optional: ``pip install -e .[bench]``
           (see bench/README.md for installing it without touching torch).

Each system runs in a process of its own, with the environment it would have by itself (the
zoo chooses its own thread count; the others run with torch's defaults). ``--load 0,1`` runs
the whole comparison once idle and once beside one CPU-bound process (``yes``-like), and prints
how much each system slows down. For each it prints the training seconds of each epoch
(training alone: no evaluation, no start-up) and the test negative ELBO, in nats per image
averaged over the 10,000 MNIST test images, after the last epoch; for the zoo also the wall
time of the whole command (start-up, data, every epoch's evaluation and checkpoint included).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from machine import cpu_model
from seed_reference import ConvolutionalVAE, seed_decoder, seed_encoder, vae_loss
from torch import Tensor

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


def run_seed(root: Path, epochs: int, seed: int, test: Tensor, device: str) -> dict:
    from torchvision import transforms
    from torchvision.datasets import MNIST

    torch.manual_seed(seed)
    transform = transforms.Compose([transforms.ToTensor()])
    train_set = MNIST(str(root), train=True, download=False, transform=transform)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=BATCH, shuffle=True)
    vae = ConvolutionalVAE(LATENT).to(device)
    vae.train()
    optimizer = torch.optim.Adam(vae.parameters(), lr=LR)
    epoch_seconds, train_losses = [], []
    for _epoch in range(epochs):
        start = time.perf_counter()
        epoch_loss = 0.0
        for images, _labels in train_loader:
            images = images.to(device)
            outputs, mu, sigma = vae(images)
            batch_loss = vae_loss(images, outputs, mu, sigma)
            epoch_loss += batch_loss.item()
            optimizer.zero_grad()
            batch_loss.backward()
            optimizer.step()
        epoch_seconds.append(time.perf_counter() - start)
        train_losses.append(epoch_loss / len(train_loader.dataset))
    vae.eval().cpu()
    with torch.no_grad():
        mu, log_var = vae.encode(test)
        probs = vae.decode(vae.sample_z(mu, log_var))
        test_loss = negative_elbo(test, probs, mu.flatten(1), log_var.flatten(1), logits=False).mean().item()
    return {"epoch_seconds": epoch_seconds, "train_loss": train_losses, "test_loss": test_loss}


# -- (c) pythae --------------------------------------------------------------------------------


def run_pythae(root: Path, epochs: int, seed: int, test: Tensor, scratch: Path, train: Tensor, device: str) -> dict:
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
        no_cuda=device == "cpu",
        seed=seed,
        keep_best_on_train=True,  # without an eval set pythae 0.1.2 needs this to pick its final model
    )
    timer = EpochTimer()
    pipeline = TrainingPipeline(training_config=training_config, model=model)
    start = time.perf_counter()
    pipeline(train_data=train, eval_data=None, callbacks=[timer])
    total = time.perf_counter() - start
    trained = pipeline.trainer.model.cpu()
    trained.eval()
    with torch.no_grad():
        enc = trained.encoder(test)
        mu, log_var = enc.embedding, enc.log_covariance
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        probs = trained.decoder(z).reconstruction
        test_loss = negative_elbo(test, probs, mu, log_var, logits=False).mean().item()
    return {"epoch_seconds": timer.seconds, "test_loss": test_loss, "pipeline_seconds": total}


# -- (a) zoo -----------------------------------------------------------------------------------


def run_zoo(data_dir: str | None, epochs: int, seed: int, scratch: Path, device: str, extra: list[str]) -> dict:
    """``zoo train`` in a process of its own, as a user runs it; the figures come from its metrics.jsonl."""
    run = scratch / f"zoo-run-{time.time_ns()}"
    command = [
        sys.executable,
        "-m",
        "zoo",
        "train",
        "vae-conv-mnist",
        "--epochs",
        str(epochs),
        "--device",
        device,
        "--seed",
        str(seed),
        "--out",
        str(run),
        "--no-progress",
        *extra,
    ]
    if data_dir:
        command += ["--data-dir", str(data_dir)]
    # stderr is read as it comes, so the moment epoch 1's line appears (after its test evaluation)
    # gives the first epoch with everything before it: start-up, data, precision trial, capture.
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err_lines: list[str] = []
    first_epoch_done: float | None = None
    for line in proc.stderr:
        if first_epoch_done is None and line.startswith("epoch 1/"):
            first_epoch_done = time.perf_counter() - start
        err_lines.append(line)
    code = proc.wait()
    total = time.perf_counter() - start
    stderr = "".join(err_lines)
    if code != 0:
        raise RuntimeError(f"zoo train failed ({code}):\n{stderr[-3000:]}")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    notes = [line for line in stderr.splitlines() if line.startswith(("precision auto", "note:"))]
    config = json.loads((run / "config.json").read_text())
    return {
        "epoch_seconds": [r["epoch_seconds"] for r in rows],
        "train_loss": [r.get("train_loss") for r in rows],
        "test_loss": rows[-1]["test_loss"],
        "command_seconds": total,
        "to_first_epoch_seconds": first_epoch_done,
        "resolved": config.get("resolved", {}),
        "notes": notes,
    }


# -- report ------------------------------------------------------------------------------------


def summarise(results: dict) -> list[dict]:
    rows = []
    for (load, name), r in results.items():
        secs = r["epoch_seconds"]
        steady = secs[1:] if len(secs) > 1 else secs
        rows.append(
            {
                "load": load,
                "system": name,
                "first_epoch_s": secs[0],
                "mean_epoch_s": sum(secs) / len(secs),
                "steady_epoch_s": sum(steady) / len(steady),
                "test_loss": r["test_loss"],
                "command_s": r.get("command_seconds"),
                "to_epoch_1_s": r.get("to_first_epoch_seconds"),
            }
        )
    by = {(row["load"], row["system"]): row for row in rows}
    for row in rows:
        for ref in ("seed", "pythae"):
            if (row["load"], ref) in by:
                row[f"x_vs_{ref}"] = by[(row["load"], ref)]["mean_epoch_s"] / row["mean_epoch_s"]
        if row["load"] and (0, row["system"]) in by:
            row["slowdown_vs_idle"] = row["mean_epoch_s"] / by[(0, row["system"])]["mean_epoch_s"]
    return rows


def print_table(rows: list[dict], epochs: int) -> None:
    print()
    print(
        f"{'load':>4s} {'system':8s} {'epoch s (mean)':>14s} {'first epoch s':>13s} {'test -ELBO':>11s} "
        f"{'x vs seed':>9s} {'x vs pythae':>11s} {'x idle time':>11s} {'command s':>9s} {'to epoch 1 s':>12s}"
    )
    for row in rows:

        def fmt(key: str, width: int) -> str:
            return f"{row[key]:{width}.2f}" if row.get(key) is not None else f"{'-':>{width}s}"

        print(
            f"{row['load']:4d} {row['system']:8s} {fmt('mean_epoch_s', 14)} {fmt('first_epoch_s', 13)} "
            f"{fmt('test_loss', 11)} {fmt('x_vs_seed', 9)} {fmt('x_vs_pythae', 11)} "
            f"{fmt('slowdown_vs_idle', 11)} {fmt('command_s', 9)} {fmt('to_epoch_1_s', 12)}"
        )
    print(
        f"\nload: CPU-bound processes running beside it; epoch s: training seconds per epoch, mean over {epochs} "
        "epoch(s); test -ELBO: nats/image, mean over the 10,000 test images; 'x vs': how many times faster than "
        "that system at the same load (>1 = faster); x idle time: epoch time at this load / at load 0 (same "
        "system); command s: wall time of the whole 'zoo train' command (start-up, data, evaluation, checkpoints); "
        "to epoch 1 s: from starting that command to its epoch 1 line (start-up included, test evaluation too)."
    )


def busy_processes(count: int) -> list[subprocess.Popen]:
    """``count`` CPU-bound processes (a Python loop each), for measuring under load."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def worker(args) -> int:
    """Run one of seed / pythae in this process and write its result as JSON (``--worker``)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    raw = find_raw(args.data_dir)
    scratch = Path(args.scratch)
    root = torchvision_root(raw, scratch / "data")
    test = mnist_tensors(root, train=False)
    if args.worker == "seed":
        result = run_seed(root, args.epochs, args.seed, test, args.device)
    else:
        result = run_pythae(root, args.epochs, args.seed, test, scratch, mnist_tensors(root, train=True), args.device)
    Path(args.result).write_text(json.dumps(result))
    return 0


def run_in_process(name: str, args, scratch: Path) -> dict:
    result = scratch / f"{name}.json"
    command = [
        sys.executable,
        __file__,
        "--worker",
        name,
        "--epochs",
        str(args.epochs),
        "--seed",
        str(args.seed),
        "--device",
        args.device,
        "--scratch",
        str(scratch),
        "--result",
        str(result),
    ]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(result.read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data-dir", default=None, help="data root in torchvision layout (MNIST/raw/*.gz); default $ZOO_DATA"
    )
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument(
        "--load",
        default="0",
        help="comma-separated counts of CPU-bound processes to run beside each measurement, e.g. 0,1 (default 0)",
    )
    p.add_argument("--skip-zoo", action="store_true")
    p.add_argument("--skip-seed", action="store_true")
    p.add_argument("--skip-pythae", action="store_true")
    p.add_argument("--zoo-args", default="", help="extra arguments for 'zoo train', e.g. '--precision bf16'")
    p.add_argument("--json-out", default=None, help="also write the results as JSON here")
    p.add_argument("--worker", choices=["seed", "pythae"], help=argparse.SUPPRESS)
    p.add_argument("--scratch", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)

    if not args.skip_pythae:
        try:
            import pythae  # noqa: F401
        except ImportError:
            print(PYTHAE_HELP, file=sys.stderr)
            return 2
    loads = [int(n) for n in args.load.split(",")]
    if 0 not in loads and len(loads) > 1:
        loads = [0, *loads]
    find_raw(args.data_dir)  # fail early on a bad data root
    data_dir = args.data_dir or os.environ.get("ZOO_DATA")
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") and torch.cuda.is_available() else None
    print(
        f"torch {torch.__version__}, {cpu_model()}, {os.cpu_count()} CPUs{', ' + gpu if gpu else ''}; "
        f"device {args.device}; {args.epochs} epoch(s), batch {BATCH}, Adam lr {LR}; loads {loads}"
    )
    results: dict[tuple[int, str], dict] = {}
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        scratch = Path(tmp)
        for load in loads:
            busy = busy_processes(load)
            try:
                for name, skip in (("zoo", args.skip_zoo), ("seed", args.skip_seed), ("pythae", args.skip_pythae)):
                    if skip:
                        continue
                    print(f"load {load}: {name} ...", flush=True)
                    if name == "zoo":
                        result = run_zoo(data_dir, args.epochs, args.seed, scratch, args.device, args.zoo_args.split())
                    else:
                        result = run_in_process(name, args, scratch)
                    results[(load, name)] = result
                    extra = "".join(f"\n    {note}" for note in result.get("notes", []))
                    print(f"  {name}: epochs {[round(s, 2) for s in result['epoch_seconds']]} s{extra}", flush=True)
            finally:
                for proc in busy:
                    proc.kill()
                    proc.wait()
    if not results:
        print("nothing to run")
        return 0
    rows = summarise(results)
    print_table(rows, args.epochs)
    if args.json_out:
        payload = {
            "epochs": args.epochs,
            "torch": torch.__version__,
            "cpu": cpu_model(),
            "gpu": gpu,
            "device": args.device,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "rows": rows,
            "raw": {f"{load}:{name}": r for (load, name), r in results.items()},
        }
        Path(args.json_out).write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
