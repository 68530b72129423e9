"""Uncertainty-aware fine-tuning of the classifier (``train.loss: uncertainty_aware``).

After the standard cross-entropy training (the pre-training), the network is trained further on
the expected variance of the signal strength including the configured systematics
(:mod:`analysis.ml.uncertainty_aware`, Wunsch et al. 2021), full batch, with early stopping on the
validation events and the best network kept.

Inputs per fold: the nominal training events of every training sample with their physics weights
and process, and for each systematic the up/down event sets: the variation skims (tau_es, jet_es,
met_uncl) or, for a weight variation, the nominal events with ``weight_<syst>_<direction>``.
Only events of the other folds are used; the split into training and validation events is the
pre-training's (:func:`analysis.ml.training_data.is_validation`, by event number), so the
fine-tuning never early-stops on events the pre-training trained on. Weights are scaled to the
expected yield of the full dataset (by ``folds / (folds - 1)`` and the inverse of the split
fraction), because the loss depends on absolute event counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from analysis.core.errors import AnalysisError
from analysis.ml.differentiable_histogram import Binning, EventSet
from analysis.ml.early_stopping import LoopSettings, train_with_early_stopping
from analysis.ml.network import Standardization
from analysis.ml.training_data import (
    DeviceData,
    TrainingData,
    is_validation,
    read_sample,
    read_samples,
)
from analysis.ml.uncertainty_aware import uncertainty_aware_loss

log = logging.getLogger(__name__)

#: Each systematic's event sets by direction (``up``, ``down``).
Variations = Mapping[str, Mapping[str, TrainingData]]


@dataclass(frozen=True)
class VariationInput:
    """One sample's event set for one side of a systematic."""

    systematic: str
    direction: str  # "up" or "down"
    sample: int  # index into the nominal inputs
    skim: str
    friend: str
    weight: str  # friend column with the event weight


def fine_tune(
    network: torch.nn.Module,
    standardization: Standardization,
    nominal_inputs: Sequence[tuple[str, str, str]],
    variation_inputs: Sequence[VariationInput],
    fold: int,
    settings: Mapping[str, Any],
    device: torch.device,
) -> dict[str, Any]:
    """Train ``network`` (already pre-trained) on the uncertainty-aware loss; return its history.

    Args:
        network: the classifier returning logits, trained in place.
        standardization: the input standardisation of the pre-training.
        nominal_inputs: (process name, skim, friend) per training sample.
        variation_inputs: the systematics' event sets (see :class:`VariationInput`).
        fold: the fold the model scores; its events are not used.
        settings: the ``train`` config section with ``folds``, ``signals`` and
            ``uncertainty_aware``.
        device: where to train.
    """
    options = settings["uncertainty_aware"]
    processes = sorted({process for process, _, _ in nominal_inputs})
    signal = _signal_indices(processes, settings["signals"])
    nominal = read_samples(nominal_inputs, processes, settings)
    variations = _read_variations(nominal_inputs, variation_inputs, processes, settings)
    binning = Binning(n_bins=options["bins"], n_classes=len(settings["classes"]))
    losses = {
        role: _loss_function(
            network,
            *_on_device(nominal, variations, role, fold, settings, standardization, device),
            signal,
            len(processes),
            binning,
        )
        for role in ("train", "validation")
    }
    loop = LoopSettings(
        pretrain_steps=0,
        max_steps=options["max_steps"],
        patience=options["patience"],
        learning_rate=options["learning_rate"],
    )
    history = train_with_early_stopping(
        network, losses["train"], losses["train"], losses["validation"], loop
    )
    log.info(
        "fold %d: uncertainty-aware loss (expected variance of mu) %.5g after %d steps "
        "(best validation %.5g at step %d)",
        fold, history.train[-1], len(history.train), history.best_validation, history.best_step,
    )  # fmt: skip
    return {
        "loss": history.train,
        "val_loss": history.validation,
        "best_step": history.best_step,
        "systematics": sorted(variations),
    }


def _signal_indices(processes: Sequence[str], signals: Sequence[str]) -> list[int]:
    """Indices of the signal processes among the trained ones; at least one is needed."""
    signal = [processes.index(p) for p in signals if p in processes]
    if not signal:
        raise AnalysisError(
            "config: key 'histograms.signals': none of these processes is trained on; "
            "the uncertainty-aware loss needs the signal among train.classes"
        )
    return signal


def _read_variations(
    nominal_inputs: Sequence[tuple[str, str, str]],
    variation_inputs: Sequence[VariationInput],
    processes: Sequence[str],
    settings: Mapping[str, Any],
) -> dict[str, dict[str, TrainingData]]:
    """The events of each systematic and direction, all samples concatenated in input order."""
    shifted: dict[str, dict[str, list[TrainingData]]] = {}
    for entry in variation_inputs:
        process = processes.index(nominal_inputs[entry.sample][0])
        events = read_sample(entry.skim, entry.friend, entry.weight, process, settings)
        shifted.setdefault(entry.systematic, {}).setdefault(entry.direction, []).append(events)
    return {
        name: {direction: TrainingData.concatenate(parts) for direction, parts in sides.items()}
        for name, sides in shifted.items()
    }


def _on_device(
    nominal: TrainingData,
    variations: Variations,
    role: str,
    fold: int,
    settings: Mapping[str, Any],
    standardization: Standardization,
    device: torch.device,
) -> tuple[DeviceData, dict[str, tuple[DeviceData, DeviceData]]]:
    """The nominal and the (up, down) event sets of one role (``train``, ``validation``)."""

    def select(events: TrainingData) -> DeviceData:
        return _role_events(events, role, fold, settings, standardization, device)

    shifted = {
        name: (select(sides["up"]), select(sides["down"])) for name, sides in variations.items()
    }
    return select(nominal), shifted


def _role_events(
    events: TrainingData,
    role: str,
    fold: int,
    settings: Mapping[str, Any],
    standardization: Standardization,
    device: torch.device,
) -> DeviceData:
    """Standardised inputs, scaled weights and processes of one role's events, on the device.

    Only other folds' events; the weights are scaled to the expected yield of the full dataset.
    """
    folds, fraction = settings["folds"], settings["validation_fraction"]
    usable = events.select(events.folds != fold)
    validation = is_validation(usable.events, fraction, folds)
    part = usable.select(validation if role == "validation" else ~validation)
    share = fraction if role == "validation" else 1 - fraction
    return DeviceData(part, standardization, part.weights * (folds / (folds - 1) / share), device)


def _loss_function(
    network: torch.nn.Module,
    nominal: DeviceData,
    variations: Mapping[str, tuple[DeviceData, DeviceData]],
    signal: Sequence[int],
    n_processes: int,
    binning: Binning,
) -> Callable[[], torch.Tensor]:
    """A closure evaluating the loss of the current network on fixed, full-batch event sets."""

    def evaluate(data: DeviceData) -> EventSet:
        scores = torch.softmax(network(data.inputs).double(), dim=1)
        return EventSet(scores, data.weights, data.labels)

    def loss() -> torch.Tensor:
        shifted = {name: (evaluate(up), evaluate(down)) for name, (up, down) in variations.items()}
        return uncertainty_aware_loss(evaluate(nominal), shifted, signal, n_processes, binning)

    return loss
