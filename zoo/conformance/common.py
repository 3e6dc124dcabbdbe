"""The promises every component keeps as part of a model: it runs after a device or dtype change,
survives a checkpoint round trip, has readable and recorded options, and stores each parameter once."""

from __future__ import annotations

import inspect
import re
import tempfile
from pathlib import Path
from typing import Any

from zoo.conformance.probes import probe, synthetic_batch
from zoo.conformance.subject import UNKNOWN_OPTION, Subject, partner
from zoo.errors import ZooError


def check_device_dtype(s: Subject) -> None:
    """After model.to(torch.float64) (and to CUDA when there is one) the component still runs:
    float64 (or float32) outputs, finite, on the model's device."""
    import torch

    for dtype, device in [(torch.float64, "cpu"), *([(torch.float32, "cuda")] if torch.cuda.is_available() else [])]:
        torch.manual_seed(0)
        model = s.model()
        s.call(f"model.to({device}, {dtype})", lambda: model.to(device=device, dtype=dtype))
        x = synthetic_batch(model.likelihood, model.data_shape, s.settings.batch_size).to(device, dtype)
        outputs = s.call(f"running it after .to({device!r}, {dtype})", lambda: probe(s.kind, model, x))
        for out in outputs:
            if out.device.type != device:
                s.fail(f"after .to({device!r}) its outputs must be on {device} (got {out.device})")
            if out.is_floating_point() and out.dtype not in (dtype, torch.float32):
                s.fail(f"after .to({dtype}) its outputs must be {dtype} or float32 (got {out.dtype})")
            if not bool(torch.isfinite(out).all()):
                s.fail(f"after .to({device!r}, {dtype}) its outputs must be finite")


def check_checkpoint_round_trip(s: Subject) -> None:
    """A model holding it, saved with save_checkpoint and rebuilt by zoo.load, gives identical outputs."""
    import torch

    import zoo
    from zoo.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = s.model().eval()
    x = synthetic_batch(model.likelihood, model.data_shape, s.settings.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        s.call(
            "save_checkpoint",
            lambda: save_checkpoint(path, {"spec": model.spec, "model": model.state_dict()}),
            "components-built-in-python-and-what-makes-them-rebuildable",
        )
        torch.manual_seed(12345)  # the rebuilt model starts from other random weights
        loaded = s.call(
            "zoo.load of its checkpoint",
            lambda: zoo.load(path),
            "components-built-in-python-and-what-makes-them-rebuildable",
        )
    results = []
    for m in (model, loaded):
        torch.manual_seed(7)
        with torch.no_grad():
            results.append(s.call("running it", lambda: probe(s.kind, m, x)))
    for before, after in zip(*results):
        if before.shape != after.shape or not torch.allclose(before, after, rtol=1e-5, atol=1e-6):
            s.fail(
                "after a checkpoint round trip (save_checkpoint, zoo.load) it must give the same outputs with "
                "the same seed; keep everything its outputs depend on in parameters or persistent buffers",
                "components-built-in-python-and-what-makes-them-rebuildable",
            )


def _documented(factory: Any, name: str) -> bool:
    docs = [inspect.getdoc(factory) or ""]
    if inspect.isclass(factory):
        docs.append(inspect.getdoc(factory.__init__) or "")
    return re.search(rf"\b{re.escape(name)}\b", "\n".join(docs)) is not None


def check_options(s: Subject) -> None:
    """Its options are readable, have defaults (or are documented), build with their defaults, an
    unknown option is a ZooError, and what it was built with is recorded (it is rebuildable by id)."""
    from zoo.composition import build_objective
    from zoo.factories import factory_options
    from zoo.spec import identify

    anchor = "how-factories-receive-their-arguments"
    factory = s.factory()
    options = s.call("zoo.factory_options", lambda: factory_options(factory), anchor)
    given = s.options()
    required = {}
    for option in options:
        if not option["required"]:
            continue
        if not _documented(factory, option["name"]):
            s.fail(
                f"option {option['name']!r} has no default and is not documented; give it a default or "
                "describe it in the factory's docstring",
                anchor,
            )
        if option["name"] not in given:
            s.fail(
                f"option {option['name']!r} has no default: give it in the options of the conformance checks "
                f"({{'{s.kind}:{s.target}': {{'{option['name']}': ...}}}})",
                anchor,
            )
        required[option["name"]] = given[option["name"]]

    def build(opts):
        if s.kind == "objective":  # beside a small model, whose latent size and data shape it may take
            host = Subject("encoder", partner("encoder")[0], s.settings)
            return build_objective(s.target, opts, host.build_model())[0]
        return getattr(s.build_model(opts), s.slot)

    s.call("building it with its defaults", lambda: build(required), anchor)
    try:
        build({**given, UNKNOWN_OPTION: 1})
    except ZooError:
        pass
    except Exception as exc:  # noqa: BLE001
        s.fail(f"an unknown option ({UNKNOWN_OPTION}=1) must be a ZooError (got {type(exc).__name__}: {exc})", anchor)
    else:
        s.fail(
            f"an unknown option ({UNKNOWN_OPTION}=1) must be a ZooError, but it was accepted (a **kwargs "
            "parameter swallows it?); name every option in the signature",
            anchor,
        )
    if not inspect.isclass(factory):
        return  # objects returned by a function factory are rebuilt by id through the model's spec only
    obj = s.call(f"building it with {given}", lambda: build(given), anchor)
    record = identify(s.kind, obj)
    rebuild = "components-built-in-python-and-what-makes-them-rebuildable"
    if record.get("id") != s.target:
        s.fail(
            f"an object built with {given} must be recorded by id ({record.get('problem', record.get('id'))})", rebuild
        )
    if record["options"] != given:
        s.fail(
            f"its recorded constructor options must be the options it was built with, {given} "
            f"(recorded {record['options']})",
            rebuild,
        )


def check_stored_once(s: Subject) -> None:
    """Every parameter is stored once; a component given another one (``encoder``...) keeps that
    one, not a copy of it."""
    import torch

    from zoo.factories import injected_kinds

    anchor = "components-that-use-each-other"
    model = s.model()
    seen: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            s.fail(f"parameter {name} is registered a second time (also as {seen[id(p)]})", anchor)
        seen[id(p)] = name
    own = s.component(model).state_dict()
    for kind in injected_kinds(s.factory()):
        theirs = getattr(model, kind).state_dict()
        if not theirs:
            continue
        first = next(iter(theirs))
        for key in own:
            if not key.endswith("." + first):
                continue
            prefix = key[: -len(first)]
            copied = all(
                prefix + k in own and own[prefix + k].shape == v.shape and torch.equal(own[prefix + k], v)
                for k, v in theirs.items()
            )
            if copied:
                s.fail(
                    f"it stores its own copy of the model's {kind} (its state_dict repeats the {kind}'s keys "
                    f"under '{s.kind}.{prefix}'); keep the {kind} zoo passes in, not a copy",
                    anchor,
                )
