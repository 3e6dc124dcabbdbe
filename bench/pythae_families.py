"""The zoo's recipes of the newer families against pythae 0.1.2's implementation of the same model:
same networks, same initial weights, same data, same batch size, learning rate and epochs; seconds
per epoch side by side, and both models scored by one function on the same test images.

    python bench/pythae_families.py --data-dir ../shared/data --epochs 2 --limit 2000 \\
        --family beta-vae beta-tc-vae factor-vae wae ae rae-l2 [--json-out FILE]

For each family the zoo side is its registered recipe trained by ``zoo.Trainer``. The pythae side is
pythae's model class for that family, whose encoder and decoder wrap copies of the zoo model's
networks as the zoo trainer initialised them (pythae's encoder receives the posterior's mean and
log-variance, or the code of a deterministic encoder, computed by the zoo network; its decoder the
sigmoid of the zoo decoder's logits), with the family's settings read from the zoo recipe; trained by
pythae's ``TrainingPipeline`` (its trainer for that model: the adversarial one for FactorVAE and the
adversarial AE, the coupled-optimizer one for RAE-L2).

Data: MNIST grey levels in [0, 1] for both (the Bernoulli likelihood of the zoo recipes is pythae's
``reconstruction_loss="bce"``). Score: after training, the pythae-trained networks are put back into a
copy of the zoo model and both are scored by the same function on the first N test images: the
negative ELBO (one sample, nats/image) for a model with a density, the reconstruction negative
log-likelihood -log p(x|z) at the code for a deterministic encoder; also the mean squared error of the
reconstructions. Seconds per epoch: the zoo trainer's training epoch against the time between pythae's
epoch callbacks, both with the same thread count (``--threads``, default 1: the machine may be shared),
as process CPU time (``--clock cpu``, the default: with one thread it is the work done, which other
jobs on a shared machine barely move) or wall-clock time (``--clock wall``); the fastest epoch of each.

pythae's networks (``--pythae-networks``): ``plain`` runs the zoo networks' layers as plain
``nn.Sequential`` stacks, as pythae's own benchmark networks are written; ``zoo`` runs the zoo
components' forward passes inside pythae's model, leaving only the training loops and the family's
own computation to compare; ``both`` (the default) runs each.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from machine import cpu_model
from torch import nn


@dataclass
class Family:
    """A zoo recipe and the pythae model (class and config names in ``pythae.models``) it is compared with."""

    recipe: str
    model: str
    config: str
    #: the recipe's objective options -> pythae config arguments
    settings: Callable[[dict[str, Any]], dict[str, Any]] = lambda o: {}
    extra: dict[str, Any] = field(default_factory=dict)


FAMILIES: dict[str, Family] = {
    "vae": Family("vae-conv-mnist", "VAE", "VAEConfig"),
    "beta-vae": Family("beta-vae-mnist", "BetaVAE", "BetaVAEConfig", lambda o: {"beta": o.get("beta", 1.0)}),
    "beta-tc-vae": Family(
        "beta-tc-vae-mnist",
        "BetaTCVAE",
        "BetaTCVAEConfig",
        lambda o: {k: o[k] for k in ("alpha", "beta", "gamma") if k in o},
    ),
    "factor-vae": Family("factor-vae-mnist", "FactorVAE", "FactorVAEConfig", lambda o: {"gamma": o.get("gamma", 2.0)}),
    "ae": Family("ae-conv-mnist", "AE", "AEConfig"),
    "rae-l2": Family(
        "rae-l2-conv-mnist",
        "RAE_L2",
        "RAE_L2_Config",
        lambda o: {k: o[k] for k in ("embedding_weight", "reg_weight") if k in o},
    ),
    "rae-gp": Family(
        "rae-gp-conv-mnist",
        "RAE_GP",
        "RAE_GP_Config",
        lambda o: {k: o[k] for k in ("embedding_weight", "reg_weight") if k in o},
    ),
    "wae": Family(
        "wae-mmd-conv-mnist",
        "WAE_MMD",
        "WAE_MMD_Config",
        lambda o: {k: o[k] for k in ("kernel_choice", "reg_weight", "kernel_bandwidth") if k in o},
    ),
    "info-vae": Family(
        "info-vae-mmd-conv-mnist",
        "INFOVAE_MMD",
        "INFOVAE_MMD_Config",
        lambda o: {k: o[k] for k in ("alpha", "lbd", "kernel_choice", "kernel_bandwidth", "scales") if k in o},
    ),
    "aae": Family(
        "aae-conv-mnist",
        "Adversarial_AE",
        "Adversarial_AE_Config",
        lambda o: {"adversarial_loss_scale": o.get("adversarial_scale", 0.5)},
    ),
    # pythae's MS-SSIM term has no scale (the zoo recipe weighs it by 784); its window is set to the zoo's 7
    "msssim-vae": Family(
        "msssim-vae-conv-mnist",
        "MSSSIM_VAE",
        "MSSSIM_VAEConfig",
        lambda o: {"beta": o.get("beta", 1.0)},
        {"window_size": 7},
    ),
    "hvae": Family(
        "hvae-conv-mnist",
        "HVAE",
        "HVAEConfig",
        lambda o: {
            "n_lf": o.get("steps", 3),
            "eps_lf": o.get("step_size", 1e-3),
            "beta_zero": o.get("beta0", 0.3),
            "learn_eps_lf": o.get("learn_step_size", False),
        },
    ),
}


# -- shared networks and scoring -------------------------------------------------------------


def _wrap(initial: nn.Module, shape: tuple[int, ...], plain: bool):
    """pythae encoder and decoder around copies of the zoo model's initialised networks.

    ``plain``: the copies' layers run as one ``nn.Sequential`` each, the way pythae's own
    benchmark networks (and a pythae user) write a conv VAE: the same layers and weights, so the
    same function, without the zoo components' CPU fast paths (two layers computed as matrix
    products, the single-channel layers' own passes). Otherwise the zoo components' own forward
    passes run inside pythae's model, which leaves only the training loops and the family's own
    computation to compare.
    """
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    deterministic = bool(getattr(initial.encoder, "deterministic", False))

    class Encoder(BaseEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.zoo = copy.deepcopy(initial.encoder)

        def forward(self, x):
            if plain:
                out = self.zoo.net(x).flatten(1)
                if deterministic:
                    return ModelOutput(embedding=out)
                mean, log_var = out.chunk(2, dim=1)
                return ModelOutput(embedding=mean, log_covariance=log_var)
            q = self.zoo(x)
            if deterministic:
                return ModelOutput(embedding=q.mean)
            normal = q.base_dist
            return ModelOutput(embedding=normal.loc, log_covariance=2 * normal.scale.log())

    class Decoder(BaseDecoder):
        def __init__(self) -> None:
            super().__init__()
            self.zoo = copy.deepcopy(initial.decoder)

        def forward(self, z):
            logits = self.zoo.net(z.view(len(z), -1, 1, 1)) if plain else self.zoo(z)
            return ModelOutput(reconstruction=torch.sigmoid(logits).reshape(len(z), *shape))

    return Encoder(), Decoder()


def plain_networks_fit(model: nn.Module) -> bool:
    """Whether the zoo model's encoder and decoder are the conv networks whose layers run as one
    ``nn.Sequential`` (an encoder ending in a conv over the whole map, a decoder starting on a 1x1 map)."""
    from zoo_aevb.components import ConvDecoder, ConvEncoder

    return isinstance(model.encoder, ConvEncoder) and isinstance(model.decoder, ConvDecoder)


@torch.no_grad()
def score(model: nn.Module, test: torch.Tensor, batch: int = 500) -> dict[str, float]:
    """Negative ELBO (or reconstruction NLL for a deterministic encoder) and MSE, per image, on ``test``."""
    model.eval()
    torch.manual_seed(0)
    loss = mse = 0.0
    for x in test.split(batch):
        q = model.encoder(x)
        p_x = model.likelihood(model.decoder(q.mean))
        mse += float(((p_x.mean - x) ** 2).flatten(1).sum(1).sum())
        if model.encoder.deterministic:
            loss += float(-p_x.log_prob(x).sum())
        else:
            loss += float(-model.elbo(x).elbo.sum())
    name = "recon_nll" if model.encoder.deterministic else "neg_elbo"
    return {name: loss / len(test), "mse": mse / len(test)}


# -- the two sides ---------------------------------------------------------------------------


def run_zoo(family: Family, epochs: int, seed: int, data_dir, scratch: Path, test: torch.Tensor) -> tuple[dict, Any]:
    import zoo

    trainer = zoo.Trainer(
        family.recipe,
        overrides={"epochs": epochs},
        seed=seed,
        data_dir=data_dir,
        out=str(scratch / family.recipe),
        progress=False,
        threads=torch.get_num_threads(),
    )
    initial = copy.deepcopy(trainer.model)
    cpu: list[float] = []
    train_epoch = trainer._train_epoch

    def timed_epoch(epoch: int):
        start = time.process_time()
        result = train_epoch(epoch)
        cpu.append(time.process_time() - start)
        return result

    trainer._train_epoch = timed_epoch
    rows = trainer.fit()
    # the weights after the last epoch, as on the pythae side
    seconds = {"epoch_seconds": [r["epoch_seconds"] for r in rows], "epoch_cpu_seconds": cpu}
    return {**seconds, **score(trainer.model.cpu(), test)}, initial, trainer


def run_pythae(
    family: Family, recipe, epochs: int, seed: int, train: torch.Tensor, test, scratch: Path, initial, plain: bool
):
    import pythae.models as models
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers.training_callbacks import TrainingCallback

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("pythae"):
            logging.getLogger(name).setLevel(logging.WARNING)

    class EpochTimer(TrainingCallback):
        def __init__(self) -> None:
            self.seconds, self.cpu, self._start, self._cpu_start = [], [], 0.0, 0.0

        def on_epoch_begin(self, training_config, **kwargs):
            self._start, self._cpu_start = time.perf_counter(), time.process_time()

        def on_epoch_end(self, training_config, **kwargs):
            self.seconds.append(time.perf_counter() - self._start)
            self.cpu.append(time.process_time() - self._cpu_start)

    torch.manual_seed(seed)
    shape = tuple(initial.data_shape)
    encoder, decoder = _wrap(initial, shape, plain)
    config = getattr(models, family.config)(
        input_dim=shape,
        latent_dim=initial.latent_size,
        reconstruction_loss="bce",
        **family.settings(dict(recipe.objective_options)),
        **family.extra,
    )
    net = getattr(models, family.model)(config, encoder=encoder, decoder=decoder)
    pipeline = TrainingPipeline(model=net)
    training = pipeline.training_config
    for key, value in {
        "output_dir": str(scratch / "pythae"),
        "num_epochs": epochs,
        "per_device_train_batch_size": recipe.training.batch_size,
        "learning_rate": recipe.training.lr,
        "no_cuda": True,
        "seed": seed,
        "keep_best_on_train": True,
    }.items():
        if hasattr(training, key):
            setattr(training, key, value)
    for key in ("encoder_learning_rate", "decoder_learning_rate"):  # the coupled-optimizer trainers
        if hasattr(training, key):
            setattr(training, key, recipe.training.lr)
    timer = EpochTimer()
    pipeline(train_data=train, eval_data=None, callbacks=[timer])
    trained_net = pipeline.trainer.model.cpu()
    scored = copy.deepcopy(initial).cpu()
    scored.encoder.load_state_dict(trained_net.encoder.zoo.state_dict())
    scored.decoder.load_state_dict(trained_net.decoder.zoo.state_dict())
    return {"epoch_seconds": timer.seconds, "epoch_cpu_seconds": timer.cpu, **score(scored, test)}


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", nargs="+", choices=sorted(FAMILIES), required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=2000, help="first N test images (0: all 10,000)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for both")
    parser.add_argument(
        "--pythae-networks",
        choices=["plain", "zoo", "both"],
        default="both",
        help="pythae's networks: the zoo's layers as plain nn.Sequential (as pythae writes them), the zoo "
        "components themselves (only the loops and the family's own computation differ), or both",
    )
    parser.add_argument(
        "--clock",
        choices=["cpu", "wall"],
        default="cpu",
        help="time an epoch by the process's CPU time (default: with one thread, the work done, whatever else "
        "the machine runs) or by the wall clock",
    )
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import zoo
    from zoo.plugins import get_registry

    dataset = get_registry().get("dataset", "mnist").load()
    train = dataset.load("train", args.data_dir)[0].float().div_(255)
    test = dataset.load("test", args.data_dir)[0].float().div_(255)
    test = test[: args.limit] if args.limit else test

    results: dict[str, dict] = {}
    for name in args.family:
        family = FAMILIES[name]
        recipe = zoo.get_recipe(family.recipe)
        with tempfile.TemporaryDirectory() as scratch:
            print(f"{name}: zoo {family.recipe}, {args.epochs} epochs ...", flush=True)
            zoo_side, initial, _ = run_zoo(family, args.epochs, args.seed, args.data_dir, Path(scratch), test)
            print(f"  {zoo_side}", flush=True)
            sides = {}
            for kind in ("plain", "zoo") if args.pythae_networks == "both" else (args.pythae_networks,):
                if kind == "plain" and not plain_networks_fit(initial):
                    print(f"{name}: no plain form of {type(initial.encoder).__name__}; pythae runs the zoo's")
                    continue
                print(f"{name}: pythae {family.model} ({kind} networks), {args.epochs} epochs ...", flush=True)
                try:
                    sides[kind] = run_pythae(
                        family, recipe, args.epochs, args.seed, train, test, Path(scratch), initial, kind == "plain"
                    )
                except Exception as exc:  # noqa: BLE001 - pythae refusing a setting is a result too
                    print(f"  pythae failed: {str(exc).splitlines()[0][:200]}", flush=True)
                    break
                print(f"  {sides[kind]}", flush=True)
        if sides:
            results[name] = {"zoo": zoo_side, "pythae": sides, "recipe": family.recipe, "pythae_model": family.model}

    print()
    print(f"`python {' '.join(shlex.quote(a) for a in ['bench/pythae_families.py', *sys.argv[1:]])}`")
    print(f"CPU: {cpu_model()}, {args.threads} thread(s), torch {torch.__version__}")
    print()
    kinds = [k for k in ("plain", "zoo") if any(k in r["pythae"] for r in results.values())]
    clock = "epoch_cpu_seconds" if args.clock == "cpu" else "epoch_seconds"
    print(f"seconds per epoch: {'process CPU time' if args.clock == 'cpu' else 'wall-clock time'}, the fastest epoch")
    heads = {"plain": "pythae, plain networks", "zoo": "pythae, zoo networks"}
    print(
        "| family | zoo recipe | pythae model | zoo s/epoch | "
        + " | ".join(f"{heads[k]} s/epoch | speed-up" for k in kinds)
        + " | score | zoo | "
        + " | ".join(heads[k] for k in kinds)
        + " |"
    )
    print("|---|---|---|---:|" + "---:|---:|" * len(kinds) + "---|---:|" + "---:|" * len(kinds))
    for name, r in results.items():
        # the fastest epoch of each: the first carries one-off costs, and the machine is shared
        z = min(r["zoo"][clock])
        key = "neg_elbo" if "neg_elbo" in r["zoo"] else "recon_nll"
        times, scores = [], []
        for k in kinds:
            side = r["pythae"].get(k)
            if side is None:
                times.append("– | –")
                scores.append("–")
                continue
            p = min(side[clock])
            r.setdefault("speedup", {})[k] = p / z
            times.append(f"{p:.1f} | {p / z:.2f}x")
            scores.append(f"{side[key]:.2f} / {side['mse']:.2f}")
        print(
            f"| {name} | {r['recipe']} | {r['pythae_model']} | {z:.1f} | {' | '.join(times)} | "
            f"{key.replace('_', ' ')} / MSE | {r['zoo'][key]:.2f} / {r['zoo']['mse']:.2f} | {' | '.join(scores)} |"
        )
    if args.json_out:
        args.json_out.write_text(
            json.dumps({"args": vars(args) | {"json_out": str(args.json_out)}, "cpu": cpu_model(), "results": results})
        )
    for k in kinds:
        worst = min((r["speedup"][k] for r in results.values() if k in r.get("speedup", {})), default=math.nan)
        print(f"slowest zoo speed-up over pythae with {heads[k].split(', ')[1]}: {worst:.2f}x")


if __name__ == "__main__":
    main()
