"""Benchmark of training and score injection throughput.

Prints, on synthetic events with the default network (2 x 200 tanh, 23 inputs, 5 classes):
- training throughput (events/s over a few epochs of ``analysis.ml.train.fit_network``), as a ratio
  to a bare torch loop doing the same work: the same network, training events, batch size, per-event
  weights in the cross entropy, Adam with the same learning rate and weight decay, and on a GPU the
  same float16 autocast with gradient scaling; without validation, early stopping or bookkeeping;
- injection throughput of ``TrainedModel.scores`` (standardisation, batching, softmax, copies to
  numpy) as a ratio to a plain forward pass over the same tensor.

Each side runs once untimed (warm-up: allocations, kernels, thread pools), then the two alternate
and the best of ``--repeats`` runs counts, so neither is favoured by running first or last. Runs
on the GPU when one is visible (then with mixed precision, as the config says), else on the CPU.

Usage: python bench/train.py [--events 200000] [--epochs 3] [--threads 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis.core.config import class_names, load_yaml  # noqa: E402
from analysis.core.device import select_device  # noqa: E402
from analysis.ml.network import TrainedModel, build_network  # noqa: E402
from analysis.ml.train import fit_network, training_split, training_weights  # noqa: E402
from analysis.ml.training_data import TrainingData  # noqa: E402


def synthetic_data(events: int, features: int, classes: int) -> TrainingData:
    """Gaussian classes with shifted means; two folds."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, classes, events)
    inputs = rng.normal(labels[:, None] * 0.3, 1.0, (events, features)).astype(np.float32)
    return TrainingData(
        inputs, labels.astype(np.int64), rng.uniform(0.5, 1.5, events),
        (np.arange(events) % 2).astype(np.int64), np.arange(events, dtype=np.uint64),
    )  # fmt: skip


def bare_training(
    data: TrainingData, settings: Mapping[str, Any], device: torch.device, epochs: int
) -> float:
    """Events/s of a minimal torch loop over the same training events as ``fit_network``."""
    train = training_split(data, 0, settings)["train"]
    n_classes = len(settings["classes"])
    weights = training_weights(train.labels, train.weights, n_classes, settings["negative_weights"])
    torch.manual_seed(0)
    network = build_network(
        train.inputs.shape[1], n_classes, settings["network"]["hidden"],
        settings["network"]["activation"], 0.0,
    ).to(device)  # fmt: skip
    optimizer = torch.optim.Adam(
        network.parameters(), lr=settings["learning_rate"], weight_decay=settings["l2"]
    )
    amp = device.type == "cuda" and settings["mixed_precision"]
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    inputs = torch.from_numpy(train.inputs).to(device)
    labels = torch.from_numpy(train.labels).to(device)
    event_weights = torch.from_numpy(weights).to(device)
    _sync(device)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(labels), device=device)
        for batch in torch.split(order, settings["batch_size"]):
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                logits = network(inputs[batch])
            losses = torch.nn.functional.cross_entropy(
                logits.float(), labels[batch], reduction="none"
            )
            loss = (losses * event_weights[batch]).sum() / event_weights[batch].sum()
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
    _sync(device)
    return len(labels) * epochs / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_rates(runs: Mapping[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Highest rate of each callable: one untimed warm-up each, then ``repeats`` alternations."""
    for run in runs.values():
        run()
    best = dict.fromkeys(runs, 0.0)
    for _ in range(repeats):
        for name, run in runs.items():
            best[name] = max(best[name], run())
    return best


def injection_rates(
    model: TrainedModel, inputs: np.ndarray, device: torch.device, repeats: int
) -> dict[str, float]:
    """Events/s of ``model.scores`` and of a plain forward pass over the same tensor."""
    tensor = torch.from_numpy(inputs).to(device)
    network = model.network.to(device).eval()

    def ours() -> float:
        _sync(device)
        start = time.perf_counter()
        model.scores(inputs, device)
        return len(inputs) / (time.perf_counter() - start)

    def plain() -> float:
        _sync(device)
        start = time.perf_counter()
        with torch.inference_mode():
            network(tensor)
        _sync(device)
        return len(inputs) / (time.perf_counter() - start)

    return best_rates({"ours": ours, "plain": plain}, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = load_yaml(REPO / "config" / "config.yaml")["train"]
    settings = {**settings, "classes": class_names(settings["classes"]), "folds": 2}
    settings.update(max_epochs=args.epochs, patience=args.epochs + 1)
    device = select_device("auto", "train.device")
    data = synthetic_data(args.events, len(settings["features"]), len(settings["classes"]))
    trained: dict[str, TrainedModel] = {}

    def ours() -> float:
        trained["model"], history = fit_network(data, 0, settings, device)
        return history["events_per_second"]

    training = best_rates(
        {"ours": ours, "bare": lambda: bare_training(data, settings, device, args.epochs)},
        args.repeats,
    )
    print(f"device: {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'})")
    print(f"training: {training['ours']:,.0f} events/s; bare torch loop {training['bare']:,.0f} "
          f"events/s; ratio {training['ours'] / training['bare']:.2f} "
          "(ours includes the per-epoch train+validation evaluation)")  # fmt: skip
    scoring = injection_rates(trained["model"], data.inputs, device, args.repeats)
    ratio = scoring["ours"] / scoring["plain"]
    print(f"injection: {scoring['ours']:,.0f} events/s; plain forward pass "
          f"{scoring['plain']:,.0f} events/s; ratio {ratio:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
