"""The events a classifier trains on: inputs, labels, weights, folds and event numbers.

Shared by the cross-entropy training (:mod:`analysis.ml.train`, labels are classes) and the
uncertainty-aware fine-tuning (:mod:`analysis.ml.train_uncertainty_aware`, labels are processes),
read from the skims as :class:`TrainingData` and moved to the device as :class:`DeviceData`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from analysis.core.io import read_with_friends
from analysis.ml.network import Standardization

#: Multiplier of the event-number hash deciding the validation split (Knuth's golden ratio).
_HASH = np.uint64(2654435761)


def is_validation(events: np.ndarray, fraction: float, folds: int) -> np.ndarray:
    """The validation events of every training step: a hash of the event number, so the
    cross-entropy pre-training and the uncertainty-aware fine-tuning validate on the same events,
    and an event and its shifted copies land on the same side. The fold (``event % folds``) is
    divided out, so the choice does not depend on which fold a model scores."""
    hashed = ((events.astype(np.uint64) // np.uint64(folds)) * _HASH) % np.uint64(2**32)
    return hashed.astype(np.float64) / 2**32 < fraction


@dataclass
class TrainingData:
    """Raw inputs, an integer label, the physics weight, fold and event number per event."""

    inputs: np.ndarray  # (events, features), raw
    labels: np.ndarray  # class (or process) index
    weights: np.ndarray  # physics weight
    folds: np.ndarray
    events: np.ndarray  # event number, to prove fold matching

    def select(self, mask: np.ndarray) -> TrainingData:
        """The events where ``mask`` is true."""
        return TrainingData(*(getattr(self, f.name)[mask] for f in dataclasses.fields(self)))

    @classmethod
    def concatenate(cls, parts: Sequence[TrainingData]) -> TrainingData:
        """All events of ``parts``, in order."""
        return cls(
            *(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(cls))
        )


def read_sample(
    skim: str, friend: str, weight: str, label: int, settings: Mapping[str, Any]
) -> TrainingData:
    """One sample's events with the ``train.features``, the friend column ``weight`` as weight,
    and ``label`` for all; opposite-sign events only when ``train.opposite_sign_only``."""
    features = list(settings["features"])
    columns = read_with_friends(skim, [friend], [*features, "is_os", weight, "fold", "event"])
    keep = columns["is_os"] == 1 if settings["opposite_sign_only"] else slice(None)
    n_events = len(columns["event"][keep])
    inputs = (
        np.column_stack([columns[name][keep] for name in features])
        if n_events
        else np.zeros((0, len(features)))
    )
    return TrainingData(
        inputs.astype(np.float32),
        np.full(n_events, label, dtype=np.int64),
        columns[weight][keep].astype(np.float64),
        columns["fold"][keep].astype(np.int64),
        columns["event"][keep].astype(np.uint64),
    )


def read_samples(
    inputs: Sequence[tuple[str, str, str]], labels: Sequence[str], settings: Mapping[str, Any]
) -> TrainingData:
    """Events of all (name, skim, friend) inputs, labelled by the name's index in ``labels``.

    The weight is the physics weight (friend column ``weight``).
    """
    return TrainingData.concatenate(
        [
            read_sample(skim, friend, "weight", labels.index(name), settings)
            for name, skim, friend in inputs
        ]
    )


class DeviceData:
    """Standardised inputs, labels and per-event weights as tensors on the training device."""

    def __init__(
        self,
        data: TrainingData,
        standardization: Standardization,
        weights: np.ndarray,
        device: torch.device,
    ) -> None:
        self.inputs = torch.from_numpy(standardization.apply(data.inputs)).to(device)
        self.labels = torch.from_numpy(data.labels).to(device)
        self.weights = torch.from_numpy(weights).to(device)

    def __len__(self) -> int:
        return len(self.labels)
