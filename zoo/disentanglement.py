"""Disentanglement metrics: how well a representation's dimensions line up with known factors of variation.

Five scores in the definitions Locatello et al. (2019) compared, each deterministic given its ``seed``:

:func:`mig` (Chen et al. 2018)
    Each code dimension discretised into 20 equal-width bins; the mutual information (sklearn's
    ``mutual_info_score``) of every dimension with every factor; per factor, the gap between the two
    most informative dimensions divided by the factor's entropy; the mean over factors. In [0, 1].
:func:`sap` (Kumar et al. 2018)
    A score for each (dimension, factor) pair: the balanced test accuracy of a threshold classifier
    predicting the factor from that one dimension (Kumar et al.'s definition for categorical factors;
    sklearn's ``DecisionTreeClassifier`` with as many leaves as the factor has values), rescaled so
    chance is 0 and perfect 1; per factor, the gap between the two best dimensions; the mean. In [0, 1].
    (disentanglement_lib uses a linear SVM here, which cannot separate more than two classes along one
    dimension, so even the true factors score low with it.)
:func:`dci` (Eastwood & Williams 2018)
    An importance matrix R (dimensions x factors) from one sklearn ``GradientBoostingClassifier`` per
    factor (its ``feature_importances_``). Disentanglement: 1 - the entropy (base F) of each
    dimension's row of R normalised, weighted by the dimension's share of R. Completeness: 1 - the
    entropy (base L) of each factor's column normalised, weighted by the factor's share.
    Informativeness: the classifiers' mean test accuracy.
:func:`factor_vae_score` (Kim & Mnih 2018)
    Codes scaled by their standard deviation over the data; dimensions whose variance is below 0.05
    are dropped as collapsed. A vote fixes one factor at a random value for a batch of 64 draws and
    takes the dimension of least variance in the batch; a majority-vote classifier maps each
    dimension to the factor it most often went with; the score is its accuracy on held-out votes.
:func:`beta_vae_score` (Higgins et al. 2017)
    A vote draws 64 pairs that share the value of one random factor and averages |z1 - z2|; sklearn's
    ``LogisticRegression`` predicts the factor from that average; the score is its held-out accuracy.

MIG, SAP and DCI are pure functions of codes ``[N, L]`` and factor classes ``[N, F]``. The two scores
that fix factors need draws: ``sample(classes) -> observations`` (the images of factor classes
``[M, F]``) and ``represent(observations) -> codes`` (numpy ``[M, L]``). For ground-truth codes MIG,
SAP, DCI and the two vote scores are near 1; for codes independent of the factors MIG, SAP and DCI's
disentanglement and completeness are near 0, and the vote scores near chance (1 / F).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from zoo.errors import ZooValueError

#: Bins of MIG's discretisation, the draws per vote, and the variance below which a dimension is collapsed.
MIG_BINS, VOTE_BATCH, COLLAPSED_VARIANCE = 20, 64, 0.05
#: The most draws :func:`all_scores` gives DCI: its gradient-boosted trees (one per class per stage)
#: dominate the time, about 2 minutes for 1,000 draws of dSprites' 113 classes on one busy CPU core.
DCI_POINTS = 1000


# -- checks ------------------------------------------------------------------------------------------


def check_inputs(codes: Any, factors: Any) -> tuple[np.ndarray, np.ndarray]:
    """``codes`` as float64 ``[N, L]`` and ``factors`` as int64 ``[N, F]``, or a one-line error saying what is wrong."""
    codes, factors = _numpy(codes), _numpy(factors)
    if codes.ndim != 2 or factors.ndim != 2:
        raise ZooValueError(
            f"codes must be [N, L] and factor classes [N, F]; got arrays shaped {codes.shape} and {factors.shape}"
        )
    if len(codes) != len(factors):
        raise ZooValueError(f"{len(codes)} codes but {len(factors)} rows of factor classes; give one row per code")
    if len(codes) < 10 or codes.shape[1] == 0 or factors.shape[1] == 0:
        raise ZooValueError(f"need at least 10 codes, 1 dimension and 1 factor; got {codes.shape} and {factors.shape}")
    if codes.dtype.kind not in "biuf" or factors.dtype.kind not in "biuf":
        raise ZooValueError(f"codes and factors must be numbers; got {codes.dtype} and {factors.dtype}")
    codes = codes.astype(np.float64)
    if not np.isfinite(codes).all():
        raise ZooValueError(f"codes hold {int((~np.isfinite(codes)).sum())} NaN or infinite values; check the encoder")
    if factors.dtype.kind == "f" and not (np.isfinite(factors).all() and (factors == np.round(factors)).all()):
        raise ZooValueError("factor classes must be whole numbers (class indices, not factor values)")
    factors = factors.astype(np.int64)
    _check_factor_values(factors)
    return codes, factors


def _check_factor_values(factors: np.ndarray) -> None:
    single = [j for j in range(factors.shape[1]) if len(np.unique(factors[:, j])) < 2]
    if single:
        raise ZooValueError(
            f"factor {single[0]} takes one value in these points; a factor must vary (drop it or sample more points)"
        )


def _check_sizes(sizes: Any) -> tuple[int, ...]:
    sizes = tuple(int(s) for s in sizes)
    if not sizes or any(s < 1 for s in sizes):
        raise ZooValueError(f"factor sizes must be positive counts; got {sizes}")
    if any(s < 2 for s in sizes):
        raise ZooValueError(f"factor {[s < 2 for s in sizes].index(True)} has one value; a factor must vary")
    return sizes


def _numpy(array: Any) -> np.ndarray:
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def _generator(seed: Any) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if hasattr(seed, "initial_seed"):  # a torch.Generator
        return np.random.default_rng(seed.initial_seed())
    return np.random.default_rng(seed)


def _split(n: int, rng: np.random.Generator, test_share: float = 1 / 3) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(n)
    cut = max(1, int(round(n * test_share)))
    return order[cut:], order[:cut]


# -- MIG ---------------------------------------------------------------------------------------------


def discretize(codes: np.ndarray, bins: int = MIG_BINS) -> np.ndarray:
    """Each column of ``codes`` as bin indices of ``bins`` equal-width bins over its range."""
    out = np.zeros(codes.shape, dtype=np.int64)
    for i in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, i], bins)
        out[:, i] = np.digitize(codes[:, i], edges[1:-1])
    return out


def mutual_information(codes: np.ndarray, factors: np.ndarray, bins: int = MIG_BINS) -> np.ndarray:
    """The mutual information (nats) of each discretised code dimension with each factor: ``[L, F]``."""
    from sklearn.metrics import mutual_info_score

    binned = discretize(codes, bins)
    return np.array([[mutual_info_score(f, c) for f in factors.T] for c in binned.T])


def mig(codes: Any, factors: Any, *, bins: int = MIG_BINS) -> dict[str, Any]:
    """The mutual information gap: ``{"mig": mean, "per_factor": [...]}``."""
    codes, factors = check_inputs(codes, factors)
    from sklearn.metrics import mutual_info_score

    info = mutual_information(codes, factors, bins)
    entropy = np.array([mutual_info_score(f, f) for f in factors.T])
    top = np.sort(info, axis=0)[::-1]
    second = top[1] if len(top) > 1 else np.zeros_like(top[0])
    gaps = (top[0] - second) / entropy
    return {"mig": float(gaps.mean()), "per_factor": gaps.tolist()}


# -- SAP ---------------------------------------------------------------------------------------------


def sap(codes: Any, factors: Any, *, seed: Any = 0) -> dict[str, Any]:
    """The separated attribute predictability: ``{"sap": mean gap, "per_factor": [...], "scores": [L][F]}``."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.tree import DecisionTreeClassifier

    codes, factors = check_inputs(codes, factors)
    rng = _generator(seed)
    train, test = _split(len(codes), rng)
    scores = np.zeros((codes.shape[1], factors.shape[1]))
    for j, f in enumerate(factors.T):
        values = len(np.unique(f[train]))
        if values < 2:
            continue  # too few points to learn this factor: it scores 0 everywhere
        for i, c in enumerate(codes.T):
            model = DecisionTreeClassifier(max_leaf_nodes=values, random_state=int(rng.integers(2**31)))
            model.fit(c[train, None], f[train])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a class absent from the test points
                balanced = balanced_accuracy_score(f[test], model.predict(c[test, None]))
            scores[i, j] = max(0.0, (balanced - 1 / values) / (1 - 1 / values))
    top = np.sort(scores, axis=0)[::-1]
    gaps = top[0] - (top[1] if len(top) > 1 else 0.0)
    return {"sap": float(gaps.mean()), "per_factor": gaps.tolist(), "scores": scores.tolist()}


# -- DCI ---------------------------------------------------------------------------------------------


def importance_matrix(codes: np.ndarray, factors: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """R ``[L, F]`` (gradient-boosted trees' feature importances) and their mean held-out accuracy."""
    from sklearn.ensemble import GradientBoostingClassifier

    train, test = _split(len(codes), rng)
    importance = np.zeros((codes.shape[1], factors.shape[1]))
    accuracy = []
    for j, f in enumerate(factors.T):
        if len(np.unique(f[train])) < 2:
            accuracy.append(float((f[test] == f[train][0]).mean()))
            continue
        model = GradientBoostingClassifier(random_state=int(rng.integers(2**31)))
        model.fit(codes[train], f[train])
        importance[:, j] = np.abs(model.feature_importances_)
        accuracy.append(float((model.predict(codes[test]) == f[test]).mean()))
    return importance, float(np.mean(accuracy))


def _one_minus_entropy(p: np.ndarray, base: int) -> np.ndarray:
    """1 - the entropy (base ``base``) of each row of non-negative ``p`` normalised; 0 for an all-zero row."""
    total = p.sum(axis=1, keepdims=True)
    q = np.divide(p, total, out=np.zeros_like(p), where=total > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(q > 0, q * np.log(q), 0.0).sum(axis=1) / np.log(base)
    return np.where(total[:, 0] > 0, 1.0 - h, 0.0)


def dci(codes: Any, factors: Any, *, seed: Any = 0) -> dict[str, Any]:
    """``{"disentanglement", "completeness", "informativeness", "importance": [L][F]}``."""
    codes, factors = check_inputs(codes, factors)
    r, informativeness = importance_matrix(codes, factors, _generator(seed))
    total = r.sum()
    if total <= 0:
        return {
            "disentanglement": 0.0,
            "completeness": 0.0,
            "informativeness": informativeness,
            "importance": r.tolist(),
        }
    # One dimension or one factor: the entropy is over one outcome, 0 by convention (base 1 is undefined).
    d = _one_minus_entropy(r, r.shape[1]) if r.shape[1] > 1 else np.ones(r.shape[0])
    c = _one_minus_entropy(r.T, r.shape[0]) if r.shape[0] > 1 else np.ones(r.shape[1])
    return {
        "disentanglement": float((d * r.sum(axis=1) / total).sum()),
        "completeness": float((c * r.sum(axis=0) / total).sum()),
        "informativeness": informativeness,
        "importance": r.tolist(),
    }


# -- the two scores that fix a factor ---------------------------------------------------------------


def random_classes(sizes: tuple[int, ...], count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` factor-class rows drawn uniformly: int64 ``[count, F]``."""
    return np.stack([rng.integers(0, s, size=count) for s in sizes], axis=1).astype(np.int64)


def _codes(represent: Callable, sample: Callable, classes: np.ndarray) -> np.ndarray:
    codes = _numpy(represent(sample(classes))).astype(np.float64)
    if codes.ndim != 2 or len(codes) != len(classes):
        raise ZooValueError(f"represent() returned codes shaped {codes.shape}, expected [{len(classes)}, L]")
    if not np.isfinite(codes).all():
        raise ZooValueError("represent() returned NaN or infinite codes; check the encoder")
    return codes


def factor_vae_score(
    represent: Callable,
    sample: Callable,
    sizes: Any,
    *,
    seed: Any = 0,
    train_votes: int = 800,
    eval_votes: int = 400,
    batch: int = VOTE_BATCH,
    variance_points: int = 5000,
) -> dict[str, Any]:
    """Kim & Mnih's score: ``{"factor_vae_score": eval accuracy, "train_accuracy", "active_dims"}``."""
    sizes = _check_sizes(sizes)
    _check_counts(train_votes=train_votes, eval_votes=eval_votes, batch=batch, variance_points=variance_points)
    if batch < 2:
        raise ZooValueError(f"batch must be at least 2 to have a variance; got {batch}")
    rng = _generator(seed)
    scale = np.std(_codes(represent, sample, random_classes(sizes, variance_points, rng)), axis=0)
    active = scale**2 >= COLLAPSED_VARIANCE
    if not active.any():
        return {"factor_vae_score": 0.0, "train_accuracy": 0.0, "active_dims": 0}

    def votes(count: int) -> np.ndarray:
        out = np.zeros((count, 2), dtype=np.int64)  # (dimension, factor)
        for v in range(count):
            k = int(rng.integers(len(sizes)))
            classes = random_classes(sizes, batch, rng)
            classes[:, k] = rng.integers(sizes[k])
            variance = np.var(_codes(represent, sample, classes)[:, active] / scale[active], axis=0, ddof=1)
            out[v] = (np.flatnonzero(active)[np.argmin(variance)], k)
        return out

    train, held = votes(train_votes), votes(eval_votes)
    table = np.zeros((len(scale), len(sizes)), dtype=np.int64)
    np.add.at(table, (train[:, 0], train[:, 1]), 1)
    guess = table.argmax(axis=1)
    return {
        "factor_vae_score": float((guess[held[:, 0]] == held[:, 1]).mean()),
        "train_accuracy": float((guess[train[:, 0]] == train[:, 1]).mean()),
        "active_dims": int(active.sum()),
    }


def beta_vae_score(
    represent: Callable,
    sample: Callable,
    sizes: Any,
    *,
    seed: Any = 0,
    train_votes: int = 800,
    eval_votes: int = 400,
    batch: int = VOTE_BATCH,
) -> dict[str, Any]:
    """Higgins et al.'s score: ``{"beta_vae_score": eval accuracy, "train_accuracy"}``."""
    from sklearn.linear_model import LogisticRegression

    sizes = _check_sizes(sizes)
    _check_counts(train_votes=train_votes, eval_votes=eval_votes, batch=batch)
    rng = _generator(seed)

    def votes(count: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = [], np.zeros(count, dtype=np.int64)
        for v in range(count):
            k = int(rng.integers(len(sizes)))
            first, second = random_classes(sizes, batch, rng), random_classes(sizes, batch, rng)
            second[:, k] = first[:, k]
            codes = _codes(represent, sample, np.concatenate([first, second]))
            x.append(np.abs(codes[:batch] - codes[batch:]).mean(axis=0))
            y[v] = k
        return np.stack(x), y

    (x_train, y_train), (x_eval, y_eval) = votes(train_votes), votes(eval_votes)
    if len(np.unique(y_train)) < 2:
        raise ZooValueError(f"the {train_votes} training votes fixed one factor only; use more votes")
    model = LogisticRegression(max_iter=1000, random_state=int(rng.integers(2**31)))
    model.fit(x_train, y_train)
    return {
        "beta_vae_score": float(model.score(x_eval, y_eval)),
        "train_accuracy": float(model.score(x_train, y_train)),
    }


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ZooValueError(f"{name} must be a whole number of at least 1; got {value!r}")


# -- all five ----------------------------------------------------------------------------------------


def all_scores(
    represent: Callable,
    sample: Callable,
    sizes: Any,
    *,
    points: int = 2000,
    votes: int = 200,
    seed: Any = 0,
    names: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The five metrics on ``points`` uniform draws (MIG, SAP; DCI on the first :data:`DCI_POINTS`) and
    ``votes`` votes each, two thirds to train (FactorVAE, BetaVAE), from one seed. A flat dict of floats, plus ``*_per_factor`` lists
    named by ``names``."""
    sizes = _check_sizes(sizes)
    _check_counts(points=points, votes=votes)
    if points < 10 or votes < 3:
        raise ZooValueError(f"need at least 10 points and 3 votes; got {points} and {votes}")
    rng = _generator(seed)
    classes = random_classes(sizes, points, rng)
    codes = _codes(represent, sample, classes)
    m, s, d = (
        mig(codes, classes),
        sap(codes, classes, seed=rng),
        dci(codes[:DCI_POINTS], classes[:DCI_POINTS], seed=rng),
    )
    split = dict(train_votes=votes - votes // 3, eval_votes=votes // 3)
    fv = factor_vae_score(represent, sample, sizes, seed=rng, variance_points=points, **split)
    bv = beta_vae_score(represent, sample, sizes, seed=rng, **split)
    return {
        "mig": m["mig"],
        "sap": s["sap"],
        "dci_disentanglement": d["disentanglement"],
        "dci_completeness": d["completeness"],
        "dci_informativeness": d["informativeness"],
        "factor_vae_score": fv["factor_vae_score"],
        "factor_vae_active_dims": fv["active_dims"],
        "beta_vae_score": bv["beta_vae_score"],
        "mig_per_factor": dict(zip(names or map(str, range(len(sizes))), m["per_factor"])),
        "sap_per_factor": dict(zip(names or map(str, range(len(sizes))), s["per_factor"])),
        "points": points,
        "votes": votes,
    }


# -- on a trained model -----------------------------------------------------------------------------


def check_requested(dataset, wanted: bool | None, points: int) -> bool:
    """Whether to score ``dataset`` (a :class:`zoo.DatasetInfo`): with ``wanted`` None, when it has factors.
    A one-line error when they are asked for and it has none, or ``points`` is not a count of at least 30."""
    from zoo.errors import ZooError

    has = bool(getattr(dataset, "factors", ())) and getattr(dataset, "factor_image_loader", None) is not None
    if wanted and not has:
        raise ZooError(
            f"--disentanglement needs a data set with ground-truth factors (dsprites, dsprites-colour); "
            f"{getattr(dataset, 'id', dataset)} has none"
        )
    if (wanted or (wanted is None and has)) and (
        isinstance(points, bool) or not isinstance(points, int) or points < 30
    ):
        raise ZooValueError(f"--disentanglement-points must be a whole number of at least 30 (got {points!r})")
    return has if wanted is None else bool(wanted)


def model_scores(model, dataset, data_dir=None, *, points: int = 2000, seed: int = 0, batch_size: int = 256) -> dict:
    """The five metrics of ``model`` (a composed zoo model) on ``dataset``'s factors, with the posterior
    mean as the representation, ``points`` uniform draws and ``points // 10`` votes; the metrics as
    top-level keys plus ``disentanglement`` (the settings, per-factor scores and seconds)."""
    import time

    import torch

    started = time.perf_counter()
    device = next(model.parameters()).device

    def represent(images) -> np.ndarray:
        codes = []
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                x = images[i : i + batch_size].to(device).float().div_(255)
                codes.append(model.encoder(x).mean.reshape(len(x), -1).double().cpu())
        return torch.cat(codes).numpy()

    def sample(classes: np.ndarray):
        return dataset.images_for_factors(classes, data_dir)

    names = tuple(name for name, _ in dataset.factors)
    sizes = tuple(size for _, size in dataset.factors)
    scores = all_scores(represent, sample, sizes, points=points, votes=max(3, points // 10), seed=seed, names=names)
    details = {k: scores.pop(k) for k in ("mig_per_factor", "sap_per_factor", "points", "votes")}
    details.update(seed=seed, representation="posterior mean", seconds=round(time.perf_counter() - started, 3))
    return {**scores, "disentanglement": details}


#: The metrics as ``zoo eval`` prints them: (key, label).
PRINTED = (
    ("mig", "MIG"),
    ("sap", "SAP"),
    ("dci_disentanglement", "DCI disentanglement"),
    ("dci_completeness", "DCI completeness"),
    ("dci_informativeness", "DCI informativeness"),
    ("factor_vae_score", "FactorVAE score"),
    ("beta_vae_score", "BetaVAE score"),
)
