"""The disentanglement metrics on codes with known answers, their bad inputs, and ``zoo eval`` computing them.

Known answers: the true factor classes as codes score (near) 1 on every metric; the same codes with
their dimensions permuted, rescaled and shifted keep their scores; codes independent of the factors
score near 0 (MIG, SAP, DCI disentanglement and completeness) or near chance (the two vote scores).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers_plugin_source import one_epoch_runs, plugin_from_source

import zoo
from zoo import disentanglement as D
from zoo import plugins
from zoo.cli import main

SIZES = (3, 6, 10, 8)
PERM, SCALE, SHIFT = [2, 0, 3, 1], np.array([3.0, 0.5, -2.0, 10.0]), np.array([1.0, -4.0, 0.0, 7.5])


@pytest.fixture(scope="module")
def factors():
    return D.random_classes(SIZES, 600, np.random.default_rng(0))


def _static(codes, factors):
    m, s, d = D.mig(codes, factors), D.sap(codes, factors, seed=1), D.dci(codes, factors, seed=1)
    return {
        "mig": m["mig"],
        "sap": s["sap"],
        **{k: d[k] for k in ("disentanglement", "completeness", "informativeness")},
    }


def test_true_factors_score_near_the_maximum(factors):
    scores = _static(factors.astype(float), factors)
    assert scores["mig"] > 0.95 and scores["sap"] > 0.95
    assert min(scores["disentanglement"], scores["completeness"], scores["informativeness"]) > 0.95


def test_a_permuted_and_rescaled_oracle_keeps_its_scores(factors):
    oracle = _static(factors.astype(float), factors)
    moved = _static(factors[:, PERM] * SCALE + SHIFT, factors)
    for key, value in oracle.items():
        assert moved[key] == pytest.approx(value, abs=0.02), key


def test_random_codes_score_near_zero(factors):
    scores = _static(np.random.default_rng(3).normal(size=(len(factors), 4)), factors)
    assert scores["mig"] < 0.05 and scores["sap"] < 0.05
    assert scores["disentanglement"] < 0.1 and scores["completeness"] < 0.1
    assert scores["informativeness"] < 0.4  # chance is 1/3 for 3 shapes, far lower for the rest


def _oracle(x):
    return x


def _moved(x):
    return x[:, PERM] * SCALE + SHIFT


def _noise(x):
    return np.random.default_rng(int(x.sum()) % 2**32).normal(size=x.shape)


def _sample(classes):
    return classes.astype(float)


@pytest.mark.parametrize("represent", [_oracle, _moved])
def test_vote_scores_of_oracles_are_one(represent):
    fv = D.factor_vae_score(represent, _sample, SIZES, seed=0, train_votes=120, eval_votes=60)
    bv = D.beta_vae_score(represent, _sample, SIZES, seed=0, train_votes=120, eval_votes=60)
    assert fv["factor_vae_score"] == 1.0 and fv["active_dims"] == 4
    assert bv["beta_vae_score"] == 1.0


def test_vote_scores_of_random_codes_are_near_chance():
    fv = D.factor_vae_score(_noise, _sample, SIZES, seed=0, train_votes=200, eval_votes=200)
    bv = D.beta_vae_score(_noise, _sample, SIZES, seed=0, train_votes=200, eval_votes=200)
    assert fv["factor_vae_score"] < 0.45 and bv["beta_vae_score"] < 0.45  # chance 0.25


def test_collapsed_dimensions_are_pruned_from_the_factor_vae_vote():
    def with_dead(x):
        return np.concatenate([x, np.zeros((len(x), 3))], axis=1)

    fv = D.factor_vae_score(with_dead, _sample, SIZES, seed=0, train_votes=60, eval_votes=30)
    assert fv["active_dims"] == 4 and fv["factor_vae_score"] == 1.0
    dead = D.factor_vae_score(lambda x: np.zeros((len(x), 2)), _sample, SIZES, seed=0, train_votes=6, eval_votes=3)
    assert dead == {"factor_vae_score": 0.0, "train_accuracy": 0.0, "active_dims": 0}


def test_scores_are_deterministic_given_the_seed(factors):
    codes, factors = factors[:200] + np.random.default_rng(5).normal(size=(200, 4)), factors[:200]
    assert D.sap(codes, factors, seed=7) == D.sap(codes, factors, seed=7)
    assert D.dci(codes, factors, seed=7) == D.dci(codes, factors, seed=7)
    first = D.all_scores(lambda x: x + 0.3 * _noise(x), _sample, SIZES, points=100, votes=12, seed=4)
    again = D.all_scores(lambda x: x + 0.3 * _noise(x), _sample, SIZES, points=100, votes=12, seed=4)
    assert first == again
    assert set(first) >= {k for k, _ in D.PRINTED}


def test_torch_codes_and_a_torch_generator_are_accepted(factors):
    import torch

    result = D.sap(torch.from_numpy(factors).float(), torch.from_numpy(factors), seed=torch.Generator().manual_seed(3))
    assert result["sap"] > 0.95


@pytest.mark.parametrize(
    ("codes", "classes", "match"),
    [
        (np.zeros((50,)), np.zeros((50, 2)), "must be \\[N, L\\]"),
        (np.zeros((50, 3)), np.zeros((40, 2)), "50 codes but 40 rows"),
        (np.zeros((5, 3)), np.zeros((5, 2)), "at least 10 codes"),
        (np.full((50, 3), np.nan), np.arange(100).reshape(50, 2) % 3, "NaN or infinite"),
        (np.zeros((50, 3)), np.zeros((50, 2)), "factor 0 takes one value"),
        (np.zeros((50, 3)), np.full((50, 2), 0.5), "whole numbers"),
        (np.array([["a"] * 3] * 50), np.zeros((50, 2)), "must be numbers"),
    ],
)
def test_bad_codes_and_factors_are_one_line_errors(codes, classes, match):
    with pytest.raises(zoo.ZooError, match=match):
        D.mig(codes, classes)


def test_bad_sizes_and_counts_are_one_line_errors():
    with pytest.raises(zoo.ZooError, match="factor 1 has one value"):
        D.factor_vae_score(_oracle, _sample, (3, 1))
    with pytest.raises(zoo.ZooError, match="train_votes must be"):
        D.beta_vae_score(_oracle, _sample, SIZES, train_votes=0)
    with pytest.raises(zoo.ZooError, match="represent\\(\\) returned NaN"):
        D.factor_vae_score(lambda x: x * np.nan, _sample, SIZES, train_votes=2, eval_votes=2, variance_points=10)
    with pytest.raises(zoo.ZooError, match="codes shaped"):
        D.beta_vae_score(lambda x: x[:1], _sample, SIZES, train_votes=2, eval_votes=2)


# -- zoo eval ------------------------------------------------------------------------------------

PLUGIN_MODULE = "zoo_disentanglement_tiny"

TINY_PLUGIN = '''
"""Test plugin (tests/test_disentanglement.py): 28x28 images of a 6x6 square at 5 x 5 positions, with factors."""
import numpy as np
import zoo
from zoo.data import DatasetInfo


def images_for_factors(root, classes, download):
    import torch

    classes = np.asarray(classes)
    out = torch.zeros(len(classes), 1, 28, 28, dtype=torch.uint8)
    for n, (x, y) in enumerate(classes):
        out[n, 0, 4 * y : 4 * y + 6, 4 * x : 4 * x + 6] = 255
    return out


def load_factors(root, split, download):
    grid = np.stack(np.unravel_index(np.arange(25), (5, 5)), axis=1)
    return np.tile(grid, (8 if split == "train" else 2, 1))


def load(root, split, download):
    import torch

    classes = load_factors(root, split, download)
    return images_for_factors(root, classes, download), torch.from_numpy(classes[:, 0].copy())


@zoo.hookimpl
def register_datasets(register):
    register(DatasetInfo("tiny-squares", "a square at 5 x 5 positions", (1, 28, 28), load, {},
                         {"train": 200, "test": 50}, num_classes=5, factors=(("x", 5), ("y", 5)),
                         factor_loader=load_factors, factor_image_loader=images_for_factors))
    register(DatasetInfo("tiny-plain", "the same images, no factors", (1, 28, 28), load, {},
                         {"train": 200, "test": 50}, num_classes=5))


@zoo.hookimpl
def register_recipes(register):
    for dataset in ("tiny-squares", "tiny-plain"):
        register(zoo.Recipe(id=f"{dataset}-vae", encoder="conv-mnist", decoder="conv-mnist", prior="standard-normal",
                            likelihood="bernoulli", latent_size=4, dataset=dataset,
                            encoder_options={"channels": 4}, decoder_options={"channels": 4},
                            training=zoo.Training(epochs=1, batch_size=50)))
'''


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    with plugin_from_source(tmp_path_factory.mktemp("site"), PLUGIN_MODULE, "tinysquares", TINY_PLUGIN) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def runs(tiny_zoo, tmp_path_factory):
    return one_epoch_runs(tiny_zoo, tmp_path_factory.mktemp("runs"), ("tiny-squares", "tiny-plain"))


EVAL = ("--iw-samples", "5", "--no-fid", "--device", "cpu", "--disentanglement-points", "100")


def test_zoo_eval_scores_a_model_on_a_data_set_with_factors(runs, tiny_zoo, capsys):
    with plugins.using(*tiny_zoo):
        capsys.readouterr()
        main(["eval", str(runs / "tiny-squares"), *EVAL, "--json"])
        result = json.loads(capsys.readouterr().out)
        for key, _ in D.PRINTED:
            assert 0.0 <= result[key] <= 1.0, key
        assert result["disentanglement"]["points"] == 100 and result["disentanglement"]["votes"] == 10
        assert set(result["disentanglement"]["mig_per_factor"]) == {"x", "y"}
        saved = json.loads((runs / "tiny-squares" / "eval" / "metrics.json").read_text())
        assert saved["mig"] == result["mig"]
        main(["eval", str(runs / "tiny-squares"), *EVAL])
        printed = capsys.readouterr().out
        assert "MIG" in printed and "BetaVAE score" in printed
        main(["eval", str(runs / "tiny-squares"), *EVAL, "--json", "--no-disentanglement"])
        assert "mig" not in json.loads(capsys.readouterr().out)


def test_a_data_set_without_factors_says_nothing_unless_asked(runs, tiny_zoo, capsys):
    from helpers_cli import run_zoo

    with plugins.using(*tiny_zoo):
        capsys.readouterr()
        main(["eval", str(runs / "tiny-plain"), *EVAL, "--json"])
        assert "mig" not in json.loads(capsys.readouterr().out)
        code, _, err = run_zoo(capsys, "eval", runs / "tiny-plain", *EVAL, "--disentanglement")
        assert code != 0 and "has none" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
        code, _, err = run_zoo(capsys, "eval", runs / "tiny-squares", *EVAL[:-1], "5")
        assert code != 0 and "at least 30" in err
