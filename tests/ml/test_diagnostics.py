"""Diagnostics: weighted ROC/AUC, confusion matrices and the weighted KS test."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from analysis.ml.diagnostics import confusion_matrices, weighted_ks, weighted_roc


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
