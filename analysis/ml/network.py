"""The classifier network, its input standardisation, and saving/loading a trained model.

A saved model is one ``torch.save`` file per fold holding everything needed to score events
without the config: the weights, the architecture, the feature and class lists, the
standardisation, the fold it must score and a hash of the training settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from analysis.core.errors import AnalysisError

#: Activation functions selectable in ``train.network.activation``.
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU}

#: Events scored per forward pass when applying a model.
SCORING_BATCH = 65536


def build_network(
    n_inputs: int, n_classes: int, hidden: Sequence[int], activation: str, dropout: float
) -> nn.Sequential:
    """A fully connected network returning class logits (softmax is applied when scoring).

    Args:
        n_inputs: number of input features.
        n_classes: number of output classes.
        hidden: nodes per hidden layer.
        activation: a key of :data:`ACTIVATIONS`.
        dropout: dropout probability after each hidden layer (0 disables it).
    """
    layers: list[nn.Module] = []
    width = n_inputs
    for nodes in hidden:
        layers += [nn.Linear(width, nodes), ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = nodes
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class Standardization:
    """Per-feature shift and scale, computed on training events: ``(x - mean) / std``."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, inputs: np.ndarray, weights: np.ndarray) -> Standardization:
        """Weighted mean and standard deviation of each column; constant columns get std 1."""
        weights = np.abs(weights)
        mean = np.average(inputs, axis=0, weights=weights)
        std = np.sqrt(np.average((inputs - mean) ** 2, axis=0, weights=weights))
        std = np.where(std > 0, std, 1.0)
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def apply(self, inputs: np.ndarray) -> np.ndarray:
        """Standardised float32 copy of ``inputs``."""
        return ((inputs - self.mean) / self.std).astype(np.float32)

    def invert(self, standardized: np.ndarray) -> np.ndarray:
        """The original inputs back from standardised ones."""
        return standardized * self.std + self.mean


@dataclass
class TrainedModel:
    """A trained network with what is needed to apply it to events."""

    network: nn.Sequential
    standardization: Standardization
    features: list[str]
    classes: list[str]
    fold: int
    architecture: dict[str, Any]
    settings_hash: str

    def scores(self, inputs: np.ndarray, device: torch.device | None = None) -> np.ndarray:
        """Softmax class scores (float32, one column per class) of raw, unstandardised inputs."""
        device = device or torch.device("cpu")
        network = self.network.to(device).eval()
        standardized = torch.from_numpy(self.standardization.apply(inputs)).to(device)
        outputs = []
        with torch.inference_mode():
            for batch in torch.split(standardized, SCORING_BATCH):
                outputs.append(torch.softmax(network(batch), dim=1).cpu())
        if not outputs:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return torch.cat(outputs).numpy().astype(np.float32)


def save_model(path: str | os.PathLike[str], model: TrainedModel) -> None:
    """Write a trained model to one file (see :func:`load_model`)."""
    payload = {
        "state_dict": {k: v.detach().cpu() for k, v in model.network.state_dict().items()},
        "mean": torch.from_numpy(model.standardization.mean),
        "std": torch.from_numpy(model.standardization.std),
        "features": list(model.features),
        "classes": list(model.classes),
        "fold": model.fold,
        "architecture": dict(model.architecture),
        "settings_hash": model.settings_hash,
    }
    torch.save(payload, path)


def load_model(path: str | os.PathLike[str]) -> TrainedModel:
    """Read a model written by :func:`save_model`, with a clear error for a bad file."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise AnalysisError(f"{path}: model not found; run the train stage") from None
    except Exception as err:  # torch raises several types for a corrupt file
        raise AnalysisError(
            f"{path}: not a readable model ({err}); rerun the train stage"
        ) from None
    architecture = payload["architecture"]
    network = build_network(len(payload["features"]), len(payload["classes"]), **architecture)
    network.load_state_dict(payload["state_dict"])
    return TrainedModel(
        network=network.eval(),
        standardization=Standardization(payload["mean"].numpy(), payload["std"].numpy()),
        features=list(payload["features"]),
        classes=list(payload["classes"]),
        fold=int(payload["fold"]),
        architecture=architecture,
        settings_hash=payload["settings_hash"],
    )


def load_fold_models(paths: Sequence[str | os.PathLike[str]]) -> dict[int, TrainedModel]:
    """Models by the fold they score, checking they form one consistent k-fold training."""
    loaded = [(path, load_model(path)) for path in paths]
    reference = loaded[0][1]
    for path, model in loaded:
        if (model.features, model.classes, model.settings_hash) != (
            reference.features,
            reference.classes,
            reference.settings_hash,
        ):
            raise AnalysisError(
                f"{path}: trained with other settings than the other folds; rerun the train stage"
            )
    models = {model.fold: model for _, model in loaded}
    if sorted(models) != list(range(len(paths))):
        raise AnalysisError(
            f"models cover folds {sorted(models)} but {len(paths)} folds are needed; "
            "rerun the train stage"
        )
    return models


def architecture_of(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The ``train.network`` architecture: the keyword arguments of :func:`build_network`."""
    network = settings["network"]
    return {
        "hidden": list(network["hidden"]),
        "activation": network["activation"],
        "dropout": float(network["dropout"]),
    }


def fold_matched_scores(
    models: Mapping[int, TrainedModel], inputs: np.ndarray, folds: np.ndarray, source: str
) -> np.ndarray:
    """Scores of each event by the model of its fold, i.e. the one that never trained on it.

    Args:
        models: models by the fold they score (see :func:`load_fold_models`).
        inputs: raw feature columns in the models' feature order.
        folds: the friend-tree fold of every event.
        source: the file the events come from, named in errors.
    """
    unknown = sorted(set(np.unique(folds).tolist()) - set(models))
    if unknown:
        raise AnalysisError(
            f"{source}: events of fold {unknown[0]} but models only for folds {sorted(models)}; "
            "the friends and train stages used different train/friends.folds, rerun both"
        )
    scores = np.zeros((len(folds), len(next(iter(models.values())).classes)), dtype=np.float32)
    for fold, model in models.items():
        in_fold = folds == fold
        if in_fold.any():
            scores[in_fold] = model.scores(inputs[in_fold])
    return scores
