"""Train the multiclass classifier for one k-fold (config ``train``).

Events are split by the friend-tree ``fold`` column (``event % k``): the model for fold ``k`` is
trained on all other folds and later scores only fold ``k``, so no event is scored by a model that
saw it. Inside the training folds a split by event number (the one the uncertainty-aware
fine-tuning uses too) drives early stopping, and the model with the best validation loss is kept.

Event weights: the physics weight of each event, with negative weights handled by
``train.negative_weights`` (``abs``: use |w|, the default, keeping the kinematics of
negative-weight events; ``zero``: drop them; ``keep``: signed weights, only sensible with few
negative weights), then normalised per class so that every class has the same total weight.

The same code runs on a GPU (data kept on the device, optional mixed precision) and on the CPU,
where a fixed seed and thread count give bit-identical weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from analysis.core.device import select_device
from analysis.core.errors import AnalysisError, cli_main
from analysis.core.io import write_json
from analysis.core.progress import Progress
from analysis.ml.early_stopping import EarlyStopping
from analysis.ml.network import (
    Standardization,
    TrainedModel,
    architecture_of,
    build_network,
    save_model,
)
from analysis.ml.train_uncertainty_aware import VariationInput, fine_tune
from analysis.ml.training_data import DeviceData, TrainingData, is_validation, read_samples

log = logging.getLogger(__name__)

#: Events per batch when evaluating losses over a whole dataset (no gradients).
EVALUATION_BATCH = 65536

#: Per-epoch entries of the training history.
_HISTORY_KEYS = ("loss", "val_loss", "accuracy", "val_accuracy")


def settings_hash(settings: Mapping[str, Any]) -> str:
    """A short hash of the training settings, stored with each model."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def load_training_data(
    inputs: Sequence[tuple[str, str, str]], settings: Mapping[str, Any]
) -> TrainingData:
    """Read the training events of every sample.

    Args:
        inputs: (class name, skim path, friend path) per training sample.
        settings: the ``train`` config section.
    """
    classes = list(settings["classes"])
    data = read_samples(inputs, classes, settings)
    for index, name in enumerate(classes):
        if not np.any(data.labels == index):
            raise AnalysisError(
                f"config: key 'train.classes.{name}': no training events in its processes; "
                "check the class definition and the preselection"
            )
    return data


def training_weights(
    labels: np.ndarray, weights: np.ndarray, n_classes: int, negative_policy: str
) -> np.ndarray:
    """Per-event training weights: the negative-weight policy, then equal total per class.

    Each class sums to ``len(labels) / n_classes``, so the mean weight is 1 and the loss scale does
    not depend on the cross sections.
    """
    if negative_policy == "abs":
        weights = np.abs(weights)
    elif negative_policy == "zero":
        weights = np.where(weights < 0, 0.0, weights)
    result = np.zeros(len(labels), dtype=np.float64)
    for index in range(n_classes):
        in_class = labels == index
        total = weights[in_class].sum()
        if in_class.any() and total > 0:
            result[in_class] = weights[in_class] * (len(labels) / n_classes / total)
    return result.astype(np.float32)


def _batch_order(
    data: DeviceData, n_classes: int, balanced: bool, generator: torch.Generator
) -> torch.Tensor:
    """Indices of one epoch: a permutation, or equal numbers per class drawn with replacement."""
    device = data.labels.device
    if not balanced:
        return torch.randperm(len(data), device=device, generator=generator)
    per_class = len(data) // n_classes
    picks = []
    for index in range(n_classes):
        members = torch.nonzero(data.labels == index).flatten()
        draw = torch.randint(len(members), (per_class,), device=device, generator=generator)
        picks.append(members[draw])
    order = torch.cat(picks)
    return order[torch.randperm(len(order), device=device, generator=generator)]


def _evaluate(network: torch.nn.Module, data: DeviceData, amp: bool) -> tuple[float, float]:
    """Weighted mean cross-entropy and weighted accuracy over a whole dataset."""
    network.eval()
    loss_sum = correct = total = 0.0
    with torch.inference_mode(), _autocast(data.inputs.device, amp):
        for start in range(0, len(data), EVALUATION_BATCH):
            batch = slice(start, start + EVALUATION_BATCH)
            logits = network(data.inputs[batch]).float()
            weights = data.weights[batch]
            loss_sum += float((F.cross_entropy(logits, data.labels[batch], reduction="none")
                               * weights).sum())  # fmt: skip
            correct += float(((logits.argmax(dim=1) == data.labels[batch]) * weights).sum())
            total += float(weights.sum())
    network.train()
    return loss_sum / total, correct / total


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device.type, dtype=torch.float16, enabled=enabled)


def training_split(
    data: TrainingData, fold: int, settings: Mapping[str, Any]
) -> dict[str, TrainingData]:
    """The training and validation events of the model for ``fold``: only other folds' events.

    Events whose weight the negative-weight policy sets to zero are left out.
    """
    others = data.select(data.folds != fold)
    validation = is_validation(others.events, settings["validation_fraction"], settings["folds"])
    usable = training_weights(
        others.labels, others.weights, len(settings["classes"]), settings["negative_weights"]
    ) != 0  # fmt: skip
    return {
        "train": others.select(~validation & usable),
        "validation": others.select(validation & usable),
    }


def fit_network(
    data: TrainingData, fold: int, settings: Mapping[str, Any], device: torch.device
) -> tuple[TrainedModel, dict[str, Any]]:
    """Train the model that will score ``fold``, on the events of all other folds.

    Returns:
        The best-validation model and the training history (per-epoch losses and accuracies).
    """
    seed = int(settings["seed"]) + fold
    torch.manual_seed(seed)
    classes, n_classes = list(settings["classes"]), len(settings["classes"])
    parts = training_split(data, fold, settings)
    weights = {
        name: training_weights(part.labels, part.weights, n_classes, settings["negative_weights"])
        for name, part in parts.items()
    }
    # class-balanced weights, so the largest process does not set the input scales alone
    standardization = Standardization.fit(parts["train"].inputs, weights["train"])
    split = {
        name: DeviceData(part, standardization, weights[name], device)
        for name, part in parts.items()
    }
    architecture = architecture_of(settings)
    network = build_network(len(settings["features"]), n_classes, **architecture).to(device)
    history = _run_epochs(network, split, settings, device, seed, fold)
    model = TrainedModel(
        network=network.cpu().eval(),
        standardization=standardization,
        features=list(settings["features"]),
        classes=classes,
        fold=fold,
        architecture=architecture,
        settings_hash=settings_hash(settings),
    )
    history.update(
        fold=fold,
        device=device.type,
        events={name: len(part) for name, part in split.items()},
    )
    return model, history


def _run_epochs(
    network: torch.nn.Module,
    split: Mapping[str, DeviceData],
    settings: Mapping[str, Any],
    device: torch.device,
    seed: int,
    fold: int,
) -> dict[str, Any]:
    """Adam with early stopping on the validation loss; leaves the best weights in ``network``."""
    optimizer = torch.optim.Adam(
        network.parameters(), lr=settings["learning_rate"], weight_decay=settings["l2"]
    )
    amp = device.type == "cuda" and settings["mixed_precision"]
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    generator = torch.Generator(device=device).manual_seed(seed)
    train, n_classes = split["train"], len(settings["classes"])
    history: dict[str, Any] = {key: [] for key in _HISTORY_KEYS}
    stopping, started = EarlyStopping(settings["patience"]), time.perf_counter()
    progress = Progress(
        settings["max_epochs"], f"fold {fold} training", "epochs", upper_bound=True, logger=log
    )
    for epoch in range(settings["max_epochs"]):
        order = _batch_order(train, n_classes, settings["balanced_batches"], generator)
        _train_epoch(
            network, train, torch.split(order, settings["batch_size"]), optimizer, scaler, amp
        )
        values = dict(zip(_HISTORY_KEYS, _evaluate_epoch(network, split, amp), strict=True))
        for key, value in values.items():
            history[key].append(value)
        log.info(
            "fold %d epoch %d: loss %.5f / val %.5f, accuracy %.4f / val %.4f",
            fold, epoch, *values.values(),
        )  # fmt: skip
        progress.update()
        if stopping.update(values["val_loss"], epoch, network):
            log.info(
                "fold %d: early stop after %d epochs without improvement", fold, stopping.waited
            )
            break
    stopping.restore(network)
    seconds = time.perf_counter() - started
    history["best_epoch"] = stopping.best_step
    history["epochs"] = len(history["loss"])
    history["events_per_second"] = len(train) * history["epochs"] / seconds
    return history


def _train_epoch(
    network: torch.nn.Module,
    data: DeviceData,
    batches: Sequence[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    amp: bool,
) -> None:
    """One pass over ``batches`` (event indices) minimising the weighted cross entropy."""
    network.train()
    for batch in batches:
        with _autocast(data.inputs.device, amp):
            logits = network(data.inputs[batch])
        weights = data.weights[batch]
        loss = (F.cross_entropy(logits.float(), data.labels[batch], reduction="none")
                * weights).sum() / weights.sum()  # fmt: skip
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()


def _evaluate_epoch(
    network: torch.nn.Module, split: Mapping[str, DeviceData], amp: bool
) -> tuple[float, float, float, float]:
    """Loss and accuracy on the training and validation events, in :data:`_HISTORY_KEYS` order."""
    train_loss, train_acc = _evaluate(network, split["train"], amp)
    val_loss, val_acc = _evaluate(network, split["validation"], amp)
    return train_loss, val_loss, train_acc, val_acc


def train(
    inputs: Sequence[tuple[str, str, str]],
    fold: int,
    settings: Mapping[str, Any],
    model_path: str | os.PathLike[str],
    history_path: str | os.PathLike[str],
    threads: int = 1,
    processes: Sequence[str] | None = None,
    variation_inputs: Sequence[VariationInput] = (),
) -> dict[str, Any]:
    """Load the training events, train the model for ``fold`` and write model and history.

    With ``train.loss: uncertainty_aware`` the cross-entropy training is the pre-training, followed
    by the uncertainty-aware fine-tuning (:mod:`analysis.ml.train_uncertainty_aware`).

    Args:
        inputs: (class name, skim path, friend path) per training sample.
        fold: the fold the model will score (it trains on all others).
        settings: the ``train`` config section plus ``folds`` (and ``signals`` for the
            uncertainty-aware loss).
        model_path: output model file.
        history_path: output training history (JSON).
        threads: CPU threads for torch (fixed, so CPU results are reproducible).
        processes: the physics process of each input (uncertainty-aware loss only).
        variation_inputs: the systematics' event sets (uncertainty-aware loss only).
    """
    torch.set_num_threads(threads)
    device = select_device(settings["device"], "train.device")
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    data = load_training_data(inputs, settings)
    log.info(
        "fold %d: %d training events (all folds), classes %s, device %s",
        fold, len(data.labels), settings["classes"], device,
    )  # fmt: skip
    model, history = fit_network(data, fold, settings, device)
    if settings["loss"] == "uncertainty_aware":
        nominal = [(process, skim, friend) for process, (_, skim, friend)
                   in zip(processes, inputs, strict=True)]  # fmt: skip
        network = model.network.to(device)
        history["uncertainty_aware"] = fine_tune(
            network, model.standardization, nominal, variation_inputs, fold, settings, device
        )
        model.network = network.cpu().eval()
    save_model(model_path, model)
    # throughput depends on the machine, so it goes to the log, not into the reproducible output
    log.info("fold %d: %.0f training events/s", fold, history.pop("events_per_second"))
    write_json(history_path, history)
    return history


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the classifier for one fold.")
    parser.add_argument("--fold", type=int, required=True)
    parser.add_argument("--classes", required=True, help="training class per input, as JSON list")
    parser.add_argument("--skims", nargs="+", required=True)
    parser.add_argument("--friends", nargs="+", required=True)
    parser.add_argument("--settings", required=True, help="the train config section, as JSON")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--processes", help="process per input, as JSON list (uncertainty-aware)")
    parser.add_argument(
        "--variations", default="[]", help="uncertainty-aware: the systematics' event sets, JSON"
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--history", required=True)
    args = parser.parse_args(argv)
    inputs = list(zip(json.loads(args.classes), args.skims, args.friends, strict=True))
    variations = [VariationInput(**entry) for entry in json.loads(args.variations)]
    processes = json.loads(args.processes) if args.processes else None
    train(
        inputs, args.fold, json.loads(args.settings), args.model, args.history, args.threads,
        processes, variations,
    )  # fmt: skip


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
