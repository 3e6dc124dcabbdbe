"""Performance probe: which CPU training-step configuration of ``vae-conv-mnist`` is fastest?

Times ``--steps`` training steps (batch 100, Adam 1e-3) of ``zoo.create("vae-conv-mnist")``
with MNIST held as a uint8 tensor and batched by a permutation, for several variants, each
interleaved with the plain-fp32 baseline in the same process (the machine is shared and noisy),
and prints seconds per epoch (600 steps, extrapolated) and the ratio to the baseline.

    python bench/perf_probe.py --data-dir ../shared/data --steps 150 [--only NAME ...]
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
import torch.nn.functional as F

import zoo
from zoo.plugins import get_registry

BATCH = 100
STEPS_PER_EPOCH = 600


def load_mnist(data_dir):
    info = get_registry().get("dataset", "mnist").load()
    train, _ = info.load("train", data_dir, download=False)
    test, _ = info.load("test", data_dir, download=False)
    return train, test


def closed_form_elbo(model, x):
    """Same maths as model.elbo, without torch.distributions (to measure their overhead only)."""
    h = model.encoder.net(x).flatten(1)
    mean, log_var = h.chunk(2, dim=1)
    std = torch.exp(0.5 * log_var)
    z = mean + std * torch.randn_like(std)
    logits = model.decoder.net(z[:, :, None, None]).float()
    recon = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    kl = 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).sum(1)
    return recon - kl


def _full_map_conv_as_linear(conv):
    """Conv2d whose kernel covers its whole input map (7x7 on 7x7): the same maths as a Linear."""

    def forward(x):
        out = F.linear(x.reshape(x.shape[0], -1), conv.weight.reshape(conv.out_channels, -1), conv.bias)
        return out[:, :, None, None]

    conv.forward = forward


def _one_by_one_transpose_as_linear(convt):
    """ConvTranspose2d applied to a 1x1 map: the same maths as a Linear to C*H*W outputs,
    produced directly in channels_last order."""
    c_in, c_out, kh, kw = convt.weight.shape

    def forward(z):
        w = convt.weight.permute(0, 2, 3, 1).reshape(c_in, kh * kw * c_out)
        out = torch.matmul(z.reshape(z.shape[0], c_in), w).view(z.shape[0], kh, kw, c_out)
        return (out + convt.bias).permute(0, 3, 1, 2)

    convt.forward = forward


def linear_layers(model):
    _full_map_conv_as_linear(model.encoder.net[4])
    _one_by_one_transpose_as_linear(model.decoder.net[0])


class Variant:
    """Builds a model, optimiser and step function; ``run(n)`` times n steps."""

    def __init__(
        self,
        images,
        *,
        channels_last=False,
        compile=None,
        adam=None,
        threads=None,
        closed_form=False,
        bf16=False,
        flush_denormal=False,
        linear=False,
        mkldnn=True,
        zero_grad="none",
        seed=0,
    ):
        torch.manual_seed(seed)
        self.images = images
        self.threads = threads
        self.flush_denormal = flush_denormal
        self.mkldnn = mkldnn
        self.channels_last = channels_last
        model = zoo.create("vae-conv-mnist")
        model.check_inputs = False
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        if linear:
            linear_layers(model)
        self.model = model
        self.opt = torch.optim.Adam(model.parameters(), lr=1e-3, **(adam or {}))
        self.gen = torch.Generator().manual_seed(seed)
        autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

        def loss_fn(x):
            with autocast():
                if closed_form:
                    return -closed_form_elbo(model, x).mean()
                return model.loss(model(x))

        def step(x):
            loss = loss_fn(x)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            return loss.detach()

        self.compile_mode = compile
        if compile == "loss":
            loss_fn = torch.compile(loss_fn)
        elif compile == "model":
            model.forward = torch.compile(model.forward)  # keep model.loss eager
        elif compile == "step":
            step = torch.compile(step)
        elif compile == "step-maxautotune":
            step = torch.compile(step, mode="max-autotune-no-cudagraphs")
        self.step = step
        self.perm = torch.randperm(len(images), generator=self.gen)
        self.pos = 0

    def batch(self):
        if self.pos + BATCH > len(self.images):
            self.perm = torch.randperm(len(self.images), generator=self.gen)
            self.pos = 0
        idx = self.perm[self.pos : self.pos + BATCH]
        self.pos += BATCH
        x = self.images[idx].float().div_(255)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @contextlib.contextmanager
    def settings(self):
        old_threads = torch.get_num_threads()
        old_mkldnn = torch.backends.mkldnn.enabled
        if self.threads:
            torch.set_num_threads(self.threads)
        torch.backends.mkldnn.enabled = self.mkldnn
        torch.set_flush_denormal(self.flush_denormal)
        try:
            yield
        finally:
            torch.set_flush_denormal(False)
            torch.set_num_threads(old_threads)
            torch.backends.mkldnn.enabled = old_mkldnn

    def run(self, n):
        with self.settings():
            losses = []
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(n):
                losses.append(self.step(self.batch()))
            loss = torch.stack(losses).mean().item()
            self.last_cpu = time.process_time() - c0
            return time.perf_counter() - t0, loss


VARIANTS = {
    "baseline": {},
    "channels_last": dict(channels_last=True),
    "flush_denormal": dict(flush_denormal=True),
    "adam_foreach": dict(adam=dict(foreach=True)),
    "adam_fused": dict(adam=dict(fused=True)),
    "threads1": dict(threads=1),
    "no_mkldnn": dict(mkldnn=False),
    "closed_form": dict(closed_form=True),
    "bf16": dict(bf16=True),
    "compile_model": dict(compile="model"),
    "compile_loss": dict(compile="loss"),
    "compile_step": dict(compile="step"),
    "cl+linear": dict(channels_last=True, linear=True),
    "cl+linear+compile_step": dict(channels_last=True, linear=True, compile="step"),
    "cl+fused": dict(channels_last=True, adam=dict(fused=True)),
    "cl+compile_loss": dict(channels_last=True, compile="loss"),
    "cl+compile_step": dict(channels_last=True, compile="step"),
    "cl+compile_step+fused": dict(channels_last=True, compile="step", adam=dict(fused=True)),
    "cl+bf16": dict(channels_last=True, bf16=True),
    "cl+closed_form": dict(channels_last=True, closed_form=True),
    "cl+compile_step_maxautotune": dict(channels_last=True, compile="step-maxautotune"),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=None)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for every variant")
    p.add_argument("--only", nargs="*", default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    train, _ = load_mnist(args.data_dir)
    names = args.only or [n for n in VARIANTS if n != "baseline"]
    base = Variant(train, **VARIANTS["baseline"])
    base.run(20)  # warm up
    print("ratio = baseline min chunk / variant min chunk (>1: variant faster); median = median of paired chunk ratios")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.steps} steps x {args.rounds} rounds")
    print(
        f"{'variant':32s} {'warmup s':>9s} {'s/epoch':>8s} {'base s/ep':>9s} {'ratio':>6s} {'median':>7s} {'loss':>8s} {'base loss':>9s} {'cpu s':>7s} {'base cpu':>7s} {'cpu ratio':>6s}"
    )
    for name in names:
        v = Variant(train, **VARIANTS[name])
        t0 = time.perf_counter()
        v.run(3)  # first steps include any compilation
        warm = time.perf_counter() - t0
        v.run(10)
        vt, bt, ratios, vc, bc = [], [], [], [], []
        for _ in range(args.rounds):  # short alternating chunks: both see the same load
            b, bl = base.run(args.steps)
            bc.append(base.last_cpu)
            t, vl = v.run(args.steps)
            vc.append(v.last_cpu)
            vt.append(t)
            bt.append(b)
            ratios.append(b / t)
        scale = STEPS_PER_EPOCH / args.steps
        v_ep, b_ep = min(vt) * scale, min(bt) * scale
        ratios.sort()
        med = ratios[len(ratios) // 2]
        print(
            f"{name:32s} {warm:9.1f} {v_ep:8.2f} {b_ep:9.2f} {b_ep / v_ep:6.2f} {med:7.2f} {vl:8.2f} {bl:9.2f} {min(vc) * scale:7.2f} {min(bc) * scale:7.2f} {min(bc) / min(vc):6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
