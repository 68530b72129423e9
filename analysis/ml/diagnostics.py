"""Training diagnostics, written as data for the plotting stage.

On the training samples (nominal), every model scores its own test fold and its training folds:

- weighted confusion matrix of the test scores (rows: true class, columns: argmax class), raw and
  normalised by row (efficiency) and by column (purity), with the physics event weights;
- one-vs-rest weighted ROC curve and AUC per class (test scores);
- score distributions per output class for train and test events of each true class, with a
  weighted Kolmogorov-Smirnov test of train against test (overtraining check);
- the Taylor-coefficient ranking of the inputs (test events, per-class normalised weights).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.stats
import torch

from analysis.core.errors import cli_main
from analysis.core.io import write_json
from analysis.ml.network import TrainedModel, load_fold_models
from analysis.ml.taylor import ranked_terms, taylor_coefficients
from analysis.ml.train import load_training_data, training_weights
from analysis.ml.training_data import TrainingData

log = logging.getLogger(__name__)

#: Points kept on each ROC curve (the curve is interpolated onto a fixed false-positive grid).
ROC_POINTS = 201

#: Bins of the score distributions in [0, 1].
SCORE_BINS = 20


def confusion_matrices(
    labels: np.ndarray, predicted: np.ndarray, weights: np.ndarray, n_classes: int
) -> dict[str, list[list[float]]]:
    """Weighted confusion matrix (true x predicted) and its row and column normalisations."""
    matrix = np.zeros((n_classes, n_classes))
    np.add.at(matrix, (labels, predicted), weights)
    rows = matrix.sum(axis=1, keepdims=True)
    columns = matrix.sum(axis=0, keepdims=True)
    efficiency = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows != 0)
    purity = np.divide(matrix, columns, out=np.zeros_like(matrix), where=columns != 0)
    return {
        "weighted": matrix.tolist(),
        "efficiency": efficiency.tolist(),
        "purity": purity.tolist(),
    }


def weighted_roc(
    scores: np.ndarray, is_signal: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Weighted ROC curve (false-positive rate, true-positive rate) and its area.

    Thresholds run over the distinct score values, so tied scores move together.
    """
    order = np.argsort(-scores, kind="stable")
    scores, is_signal, weights = scores[order], is_signal[order], weights[order]
    signal = np.cumsum(np.where(is_signal, weights, 0.0))
    background = np.cumsum(np.where(is_signal, 0.0, weights))
    last_of_tie = np.r_[scores[1:] != scores[:-1], True]
    tpr = np.r_[0.0, signal[last_of_tie] / signal[-1]]
    fpr = np.r_[0.0, background[last_of_tie] / background[-1]]
    return fpr, tpr, float(np.trapezoid(tpr, fpr))


def weighted_ks(
    a: np.ndarray, weights_a: np.ndarray, b: np.ndarray, weights_b: np.ndarray
) -> tuple[float, float]:
    """Weighted two-sample Kolmogorov-Smirnov statistic and asymptotic p-value.

    The p-value uses Kish's effective sample sizes, so weighted samples are not over-trusted.
    """
    values = np.sort(np.concatenate([a, b]))

    def cdf(sample: np.ndarray, weights: np.ndarray) -> np.ndarray:
        order = np.argsort(sample, kind="stable")
        cumulative = np.cumsum(weights[order]) / weights.sum()
        index = np.searchsorted(sample[order], values, side="right")
        return np.where(index > 0, cumulative[np.maximum(index - 1, 0)], 0.0)

    distance = float(np.max(np.abs(cdf(a, weights_a) - cdf(b, weights_b))))
    n_a = weights_a.sum() ** 2 / np.sum(weights_a**2)
    n_b = weights_b.sum() ** 2 / np.sum(weights_b**2)
    n_eff = n_a * n_b / (n_a + n_b)
    # as scipy.stats.ks_2samp(method="asymp"), with effective instead of raw event counts
    return distance, float(scipy.stats.kstwo.sf(distance, max(round(n_eff), 1)))


def _scores_by_role(
    models: Mapping[int, TrainedModel], data: TrainingData
) -> dict[str, dict[str, np.ndarray]]:
    """Scores of test events (own fold) and training events (other folds), with labels/weights."""
    keys = ("scores", "labels", "weights", "inputs")
    parts: dict[str, dict[str, list[np.ndarray]]] = {
        role: {key: [] for key in keys} for role in ("test", "train")
    }
    for fold, model in models.items():
        for role, mask in (("test", data.folds == fold), ("train", data.folds != fold)):
            selected = data.select(mask)
            for key, values in zip(
                keys,
                (model.scores(selected.inputs), selected.labels, selected.weights, selected.inputs),
                strict=True,
            ):
                parts[role][key].append(values)
    return {
        role: {key: np.concatenate(values) for key, values in columns.items()}
        for role, columns in parts.items()
    }


def diagnostics(
    models: Mapping[int, TrainedModel], data: TrainingData, settings: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Compute the diagnostics and the Taylor ranking (see the module docstring)."""
    classes = list(settings["classes"])
    n_classes = len(classes)
    by_role = _scores_by_role(models, data)
    test = by_role["test"]
    weights = np.abs(test["weights"])
    result: dict[str, Any] = {
        "classes": classes,
        "confusion": confusion_matrices(
            test["labels"], test["scores"].argmax(axis=1), weights, n_classes
        ),
        "roc": {},
        "scores": {"bins": np.linspace(0, 1, SCORE_BINS + 1).tolist()},
    }
    grid = np.linspace(0, 1, ROC_POINTS)
    for c, name in enumerate(classes):
        fpr, tpr, auc = weighted_roc(test["scores"][:, c], test["labels"] == c, weights)
        result["roc"][name] = {
            "fpr": grid.tolist(),
            "tpr": np.interp(grid, fpr, tpr).tolist(),
            "auc": auc,
        }
        result["scores"][name] = _score_distributions(by_role, c, classes)
    taylor = _taylor_ranking(models, data, settings)
    return result, taylor


def _score_distributions(
    by_role: Mapping[str, Mapping[str, np.ndarray]], output: int, classes: Sequence[str]
) -> dict[str, Any]:
    """Normalised histograms of one output for train and test events of each true class."""
    bins = np.linspace(0, 1, SCORE_BINS + 1)
    distributions = {}
    for c, name in enumerate(classes):
        entry: dict[str, Any] = {}
        samples = {}
        for role, part in by_role.items():
            mask = part["labels"] == c
            values, weights = part["scores"][mask, output], np.abs(part["weights"][mask])
            counts, _ = np.histogram(values, bins=bins, weights=weights)
            entry[role] = (counts / max(counts.sum(), 1e-300)).tolist()
            samples[role] = (values, weights)
        entry["ks_statistic"], entry["ks_pvalue"] = weighted_ks(*samples["train"], *samples["test"])
        distributions[name] = entry
    return distributions


def _taylor_ranking(
    models: Mapping[int, TrainedModel], data: TrainingData, settings: Mapping[str, Any]
) -> dict[str, Any]:
    """Taylor coefficients of each fold model on test events of its own fold (at most
    ``taylor_events`` of them, drawn with the training seed), averaged over the fold models."""
    classes, features = list(settings["classes"]), list(settings["features"])
    limit = settings.get("taylor_events")
    rng = np.random.default_rng(settings["seed"])
    first = second = 0.0
    for fold, model in models.items():
        test = data.select(data.folds == fold)
        if limit is not None and len(test.labels) > limit:
            test = test.select(np.sort(rng.choice(len(test.labels), limit, replace=False)))
        weights = training_weights(
            test.labels, test.weights, len(classes), settings["negative_weights"]
        ).astype(np.float64)
        standardized = model.standardization.apply(test.inputs)
        model_first, model_second = taylor_coefficients(model.network, standardized, weights)
        first, second = first + model_first / len(models), second + model_second / len(models)
    return {
        "features": features,
        "first_order": {name: first[c].tolist() for c, name in enumerate(classes)},
        "ranking": ranked_terms(first, second, features, classes),
    }


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Diagnostics of the trained classifier.")
    parser.add_argument("--classes", required=True, help="training class per input, as JSON list")
    parser.add_argument("--skims", nargs="+", required=True)
    parser.add_argument("--friends", nargs="+", required=True)
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--settings", required=True, help="the train config section, as JSON")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", required=True)
    parser.add_argument("--taylor", required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = json.loads(args.settings)
    inputs = list(zip(json.loads(args.classes), args.skims, args.friends, strict=True))
    data = load_training_data(inputs, settings)
    result, taylor = diagnostics(load_fold_models(args.models), data, settings)
    for name, roc in result["roc"].items():
        log.info("class %s: AUC %.4f", name, roc["auc"])
    write_json(args.output, result)
    write_json(args.taylor, taylor)


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
