"""Diagnostics: weighted ROC/AUC, confusion matrices, the weighted KS test and the Taylor ranking
of each fold model on its own fold."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import scipy.stats
import torch

from analysis.ml.diagnostics import _taylor_ranking, confusion_matrices, weighted_ks, weighted_roc
from analysis.ml.network import Standardization
from analysis.ml.train import training_weights
from analysis.ml.training_data import TrainingData


def pairwise_auc(scores, is_signal, weights):
    """P(score_signal > score_background) + 1/2 P(tie), weighted, by brute force."""
    s, b = scores[is_signal], scores[~is_signal]
    ws, wb = weights[is_signal], weights[~is_signal]
    greater = (s[:, None] > b[None, :]) + 0.5 * (s[:, None] == b[None, :])
    return float((ws[:, None] * wb[None, :] * greater).sum() / (ws.sum() * wb.sum()))


def test_weighted_auc_matches_pairwise_counting():
    rng = np.random.default_rng(1)
    is_signal = rng.uniform(size=400) < 0.4
    scores = np.round(rng.normal(is_signal * 1.0, 1.0), 1)  # rounding makes ties
    weights = rng.uniform(0.1, 2.0, 400)
    fpr, tpr, auc = weighted_roc(scores, is_signal, weights)
    assert auc == pytest.approx(pairwise_auc(scores, is_signal, weights), abs=1e-12)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


def test_confusion_matrix_normalisations():
    labels = np.array([0, 0, 1, 1, 1])
    predicted = np.array([0, 1, 1, 1, 0])
    weights = np.array([1.0, 3.0, 2.0, 2.0, 4.0])
    matrices = confusion_matrices(labels, predicted, weights, 2)
    assert matrices["weighted"] == [[1.0, 3.0], [4.0, 4.0]]
    assert matrices["efficiency"] == [[0.25, 0.75], [0.5, 0.5]]
    assert matrices["purity"] == [[0.2, 3 / 7], [0.8, 4 / 7]]


def test_weighted_ks_with_unit_weights_matches_scipy():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1, 500), rng.normal(0.2, 1, 700)
    statistic, pvalue = weighted_ks(a, np.ones(500), b, np.ones(700))
    reference = scipy.stats.ks_2samp(a, b, method="asymp")
    assert statistic == pytest.approx(reference.statistic, abs=1e-12)
    assert pvalue == pytest.approx(reference.pvalue, rel=0.05)


def _softmax_model(weight: np.ndarray, fold: int) -> SimpleNamespace:
    """A fold model whose logits are ``x @ weight.T`` on unstandardised inputs."""
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight))
    standardization = Standardization(np.zeros(weight.shape[1]), np.ones(weight.shape[1]))
    return SimpleNamespace(
        network=torch.nn.Sequential(layer), standardization=standardization, fold=fold
    )


def _first_order_by_hand(weight, inputs, labels, weights, n_classes):
    """<|d softmax_c / d x_i|> with the class-balanced weights, by central differences."""

    def softmax(x):
        logits = x @ weight.T
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    step = 1e-5
    derivatives = []
    for feature in range(inputs.shape[1]):
        shift = np.zeros(inputs.shape[1])
        shift[feature] = step
        derivatives.append((softmax(inputs + shift) - softmax(inputs - shift)) / (2 * step))
    derivatives = np.abs(np.stack(derivatives, axis=2))  # (events, classes, features)
    balanced = training_weights(labels, weights, n_classes, "abs").astype(np.float64)
    return np.einsum("e,ecf->cf", balanced, derivatives) / balanced.sum()


def test_taylor_ranking_takes_each_model_on_its_own_fold_and_caps_the_events():
    """Two fold models that differ: each must be evaluated on its own fold's test events (fails
    if a model were applied to every fold, as before), and ``taylor_events`` draws a subset
    (fails if the cap were ignored: the coefficients would equal the full ones)."""
    rng = np.random.default_rng(3)
    n, features, classes = 400, 3, ["a", "b", "c"]
    folds = np.repeat([0, 1], n // 2)
    inputs = rng.normal(size=(n, features)) + folds[:, None] * 1.5
    labels, weights = rng.integers(0, 3, n), rng.uniform(0.5, 1.5, n)
    data = TrainingData(inputs, labels, weights, folds, np.arange(n))
    matrices = {0: rng.normal(size=(3, features)), 1: 2.0 * rng.normal(size=(3, features))}
    models = {fold: _softmax_model(matrix, fold) for fold, matrix in matrices.items()}
    settings = {"classes": classes, "features": ["x", "y", "z"], "negative_weights": "abs",
                "seed": 1, "taylor_events": None}  # fmt: skip
    expected = np.mean(
        [
            _first_order_by_hand(
                matrices[f], inputs[folds == f], labels[folds == f], weights[folds == f], 3
            )  # fmt: skip
            for f in (0, 1)
        ],
        axis=0,
    )
    full = _taylor_ranking(models, data, settings)["first_order"]
    np.testing.assert_allclose([full[c] for c in classes], expected, rtol=1e-4)
    capped = _taylor_ranking(models, data, {**settings, "taylor_events": 100})["first_order"]
    capped = np.array([capped[c] for c in classes])
    assert not np.allclose(capped, expected, rtol=1e-6)
    np.testing.assert_allclose(capped, expected, rtol=0.3)  # a 100-event mean, not another model
