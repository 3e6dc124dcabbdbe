"""The model card (``README.md``) of an exported model, generated from its ``config.json``.

The YAML front matter is written by ``huggingface_hub``'s :class:`~huggingface_hub.ModelCardData`
(library name, license, tags, data set, metrics and a ``model-index`` with the measured IW-NLL), so
the Hub reads it as it reads any model card; the body says what the model is, the paper it
reproduces with the published figure beside the measured one, the evaluation, the training, the
learning curve and samples, how to load it, and the citation.
"""

from __future__ import annotations

import json
from typing import Any

#: Hub data set ids of zoo's data sets (the Hub lists the data set a model was trained on).
HUB_DATASETS = {
    "mnist": "ylecun/mnist",
    "binarized-mnist": "ylecun/mnist",
    "fashion-mnist": "zalando-datasets/fashion_mnist",
}
PIPELINE_TAG = "unconditional-image-generation"


def _fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def card_data(config: dict[str, Any], license: str = "mit", repo_id: str | None = None):
    """The card's front matter as a :class:`huggingface_hub.ModelCardData`."""
    from zoo.hub import require_hub

    require_hub("zoo export (the model card)")
    from huggingface_hub import EvalResult, ModelCardData

    dataset = (config.get("dataset") or {}).get("id", "")
    hub_dataset = HUB_DATASETS.get(dataset)
    recipe = config.get("recipe") or {}
    components = (config.get("spec") or {}).get("components") or {}
    tags = ["zoo", "vae", "variational-autoencoder", "pytorch", "safetensors"]
    tags += [f"{kind}-{c['id']}" for kind, c in components.items() if isinstance(c, dict) and c.get("id")]
    if recipe.get("objective"):
        tags.append(f"objective-{recipe['objective']}")
    if dataset:
        tags.append(dataset)
    metrics = config.get("metrics") or {}
    results = None
    if metrics.get("test_nll_iw") is not None and hub_dataset:
        results = [
            EvalResult(
                task_type=PIPELINE_TAG,
                task_name="Density estimation",
                dataset_type=hub_dataset,
                dataset_name=f"{dataset} (test set)",
                dataset_split="test",
                metric_type="nll",
                metric_name=f"test NLL, nats (importance-weighted, K={metrics['iw_samples']}, {metrics['n_images']} images)",
                metric_value=round(float(metrics["test_nll_iw"]), 2),
            )
        ]
    return ModelCardData(
        library_name="zoo",
        license=license,
        tags=tags,
        datasets=[hub_dataset] if hub_dataset else None,
        metrics=["nll"] if results else None,
        pipeline_tag=PIPELINE_TAG,
        model_name=repo_id or config.get("model"),
        eval_results=results,
    )


def render_card(config: dict[str, Any], license: str = "mit", repo_id: str | None = None) -> str:
    """The whole README.md: front matter and body."""
    data = card_data(config, license, repo_id)
    return f"---\n{data.to_yaml()}\n---\n\n{_body(config, repo_id)}"


def _body(config: dict[str, Any], repo_id: str | None) -> str:
    recipe = config.get("recipe") or {}
    reference = recipe.get("reference") or {}
    metrics = config.get("metrics") or {}
    training = config.get("training") or {}
    weights = config.get("weights") or {}
    dataset = config.get("dataset") or {}
    name = config.get("model", "model")
    where = f"hf://{repo_id}" if repo_id else "path/to/this-folder"
    lines = [f"# {name}", ""]
    if config.get("description"):
        lines += [config["description"], ""]
    lines += [
        f"A variational autoencoder trained with zoo, a plugin-based zoo of VAEs for PyTorch, "
        f"on {dataset.get('id', 'its data set')} ({dataset.get('description', '')}). "
        f"{weights.get('parameters', '?'):,} parameters, stored as {', '.join(weights.get('dtype') or ['?'])} in "
        f"`model.safetensors` ({weights.get('bytes', 0) / 1e6:.1f} MB, sha256 `{weights.get('sha256', '?')}`).",
        "",
        "## The model",
        "",
        "| part | id | options | plugin |",
        "|---|---|---|---|",
    ]
    spec = config.get("spec") or {}
    for kind, c in (spec.get("components") or {}).items():
        options = json.dumps(c.get("options") or {}) if c.get("options") else "-"
        plugin = f"{c.get('plugin')} ({c.get('distribution') or 'built in'} {c.get('version') or ''})".strip()
        lines.append(f"| {kind} | `{c.get('id')}` | `{options}` | {plugin} |")
    objective = spec.get("objective") or {}
    if objective:
        options = json.dumps(objective.get("options") or {}) if objective.get("options") else "-"
        lines.append(f"| objective | `{objective.get('id')}` | `{options}` | {objective.get('plugin')} |")
    lines += ["", f"Latent size {spec.get('latent_size')}, data shape {spec.get('data_shape')}. "
              f"Data: {dataset.get('preprocessing', '-')}.", ""]  # fmt: skip
    lines += _results(metrics, reference, training, where)
    lines += _training(config, training)
    lines += _usage(where, name, metrics)
    citation = reference.get("citation")
    lines += ["## Citation", ""]
    if citation:
        lines += [
            f"The paper this recipe reproduces ({reference.get('paper', '')}):",
            "",
            "```bibtex",
            citation.strip(),
            "```",
            "",
        ]
    elif reference.get("paper"):
        lines += [f"{reference['paper']}.", ""]
    else:
        lines += ["This model reproduces no paper; cite the data set and zoo as you see fit.", ""]
    return "\n".join(lines)


def _results(metrics: dict[str, Any], reference: dict[str, Any], training: dict[str, Any], where: str) -> list[str]:
    lines = ["## Results", ""]
    if not metrics:
        return lines + ["Not evaluated when exported: run `zoo eval` on it (see below).", ""]
    k, n = metrics.get("iw_samples"), metrics.get("n_images")
    lines += [
        f"Scored with `zoo eval` on {n} test images, K={k} importance samples per image, seed "
        f"{metrics.get('seed')}, on {metrics.get('machine')}, {metrics.get('date')}. Nats per image; ± is the "
        "standard error across the images.",
        "",
        "| metric | measured | published |",
        "|---|---:|---:|",
        f"| test NLL, importance-weighted (K={k}) | **{_fmt(metrics.get('test_nll_iw'))}** ± "
        f"{_fmt(metrics.get('test_nll_iw_stderr'))} | {_fmt(reference.get('test_nll'))} |",
        f"| test negative ELBO | {_fmt(metrics.get('test_neg_elbo'))} ± {_fmt(metrics.get('test_neg_elbo_stderr'))} | - |",
        f"| reconstruction / KL | {_fmt(metrics.get('test_recon'))} / {_fmt(metrics.get('test_kl'))} | - |",
        f"| bits per dimension | {_fmt(metrics.get('bits_per_dim'), 4)} | - |",
        f"| active units | {metrics.get('active_units')} of {metrics.get('latent_size')} | - |",
        "",
    ]
    if metrics.get("test_nll_iw_note"):  # a deterministic encoder
        lines += [f"No ELBO, importance-weighted NLL or bits per dimension: {metrics['test_nll_iw_note']}.", ""]
    elif metrics.get("bits_per_dim") is None:
        lines += [
            "No bits per dimension: the likelihood is not a distribution over a discrete set holding the test "
            "images (grey levels under a Bernoulli, or a density), so -log p(x) is not a code length.",
            "",
        ]
    if reference.get("paper"):
        epochs = training.get("epochs")
        schedule = reference.get("paper_epochs") or training.get("schedule_epochs")
        if isinstance(epochs, int) and isinstance(schedule, int) and epochs < schedule:
            trained = (
                f"These weights had {epochs} epochs of training against the paper's {schedule:,}, so the measured "
                "figure is where this run stands, not the paper's result reproduced."
            )
        else:
            trained = f"These weights had {epochs} epochs of training."
        lines += [f"Published: {reference['paper']}; {reference.get('protocol', '')}. {trained}", ""]
    limit = f" --limit {n}" if metrics.get("command", "").find("--limit") >= 0 else ""
    lines += [
        "Reproduce the measured figure (the same K, images and seed give the same number):",
        "",
        "```bash",
        f"zoo eval {where} --iw-samples {k}{limit} --seed {metrics.get('seed')} --no-fid",
        "```",
        "",
    ]
    return lines


def _training(config: dict[str, Any], training: dict[str, Any]) -> list[str]:
    minutes = (training.get("seconds") or 0) / 60
    device = training.get("device") or "-"
    threads = f", {training['threads']} thread(s)" if training.get("threads") else ""
    lines = [
        "## Training",
        "",
        f"{training.get('epochs')} epochs in {minutes:.1f} minutes (sum of the epochs) on {device} "
        f"({training.get('precision') or '-'}{threads}), with zoo {(config.get('versions') or {}).get('zoo', '-')} "
        f"and torch {(config.get('versions') or {}).get('torch', '-')}:",
        "",
        "```bash",
        training.get("command") or "",
        "```",
        "",
    ]
    images = config.get("images") or {}
    if images.get("curve"):
        lines += [f"![The test negative ELBO against epochs]({images['curve']})", ""]
    if images.get("samples"):
        lines += [
            "Samples from the prior, decoded (the likelihood's mean):",
            "",
            f"![64 samples]({images['samples']})",
            "",
        ]
    return lines


def _usage(where: str, name: str, metrics: dict[str, Any]) -> list[str]:
    return [
        "## How to use",
        "",
        "```bash",
        "pip install 'zoo[hub]'   # zoo and huggingface_hub",
        "```",
        "",
        "```python",
        "import zoo",
        "",
        f'model = zoo.load("{where}")  # a zoo.VAE (torch.nn.Module), in eval mode',
        "x = model.sample(16)  # [16, *data_shape]",
        "nll = -model.iwae(x, samples=1000)  # importance-weighted -log p(x), nats per image",
        "```",
        "",
        f"A model in zoo's pretrained index (`zoo info {name}` then shows a `pretrained` line) also loads by id: "
        f'`zoo.create("{name}", pretrained=True)`. From the command line: '
        f"`zoo sample {where} --n 64 --out samples.png`, `zoo eval {where}`, and fine-tuning from these "
        f"weights with `zoo train {name} --init-from {where}`. With `HF_HUB_OFFLINE=1` a Hub model is read "
        "from the local Hugging Face cache only.",
        "",
    ]
