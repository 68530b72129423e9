"""Benchmark of training and score injection throughput.

Prints, on synthetic events with the default network (2 x 200 tanh, 23 inputs, 5 classes):
- training throughput (events/s over a few epochs of ``analysis.ml.train.fit_network``), as a ratio
  to a bare torch loop (same network, optimiser and batch size, no validation or bookkeeping)
  measured in the same run;
- injection throughput of ``TrainedModel.scores`` (standardisation, batching, softmax, copies to
  numpy) as a ratio to a plain forward pass over the same tensor in the same run.

Runs on the GPU when one is visible (then with mixed precision), else on the CPU.

Usage: python bench/train.py [--events 200000] [--epochs 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis.core.config import class_names, load_yaml  # noqa: E402
from analysis.ml.network import build_network, select_device  # noqa: E402
from analysis.ml.train import fit_network  # noqa: E402
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


def bare_training(data: TrainingData, settings: dict, device: torch.device, epochs: int) -> float:
    """Events/s of a minimal torch loop over the same number of training events."""
    hidden = settings["network"]["hidden"]
    network = build_network(data.inputs.shape[1], len(settings["classes"]), hidden, "tanh", 0.0)
    network = network.to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=settings["learning_rate"])
    n_train = int(len(data.labels) / 2 * (1 - settings["validation_fraction"]))
    inputs = torch.from_numpy(data.inputs[:n_train]).to(device)
    labels = torch.from_numpy(data.labels[:n_train]).to(device)
    _sync(device)
    start = time.perf_counter()
    for _ in range(epochs):
        for batch in torch.split(torch.randperm(n_train, device=device), settings["batch_size"]):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(network(inputs[batch]), labels[batch])
            loss.backward()
            optimizer.step()
    _sync(device)
    return n_train * epochs / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def injection(model, inputs: np.ndarray, device: torch.device) -> tuple[float, float]:
    """Events/s of ``model.scores`` and of a plain forward pass over the same tensor."""
    model.scores(inputs[:1000], device)  # warm-up
    start = time.perf_counter()
    model.scores(inputs, device)
    ours = len(inputs) / (time.perf_counter() - start)
    tensor = torch.from_numpy(inputs).to(device)
    network = model.network.to(device).eval()
    _sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        network(tensor)
    _sync(device)
    return ours, len(inputs) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = load_yaml(REPO / "config" / "config.yaml")["train"]
    settings = {**settings, "classes": class_names(settings["classes"])}
    settings.update(max_epochs=args.epochs, patience=args.epochs + 1)
    device = select_device("auto")
    data = synthetic_data(args.events, len(settings["features"]), len(settings["classes"]))
    bare = bare_training(data, settings, device, args.epochs)
    model, history = fit_network(data, 0, settings, device)
    ours = history["events_per_second"]
    print(f"device: {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'})")
    print(f"training: {ours:,.0f} events/s; bare torch loop {bare:,.0f} events/s; "
          f"ratio {ours / bare:.2f} (includes per-epoch train+validation evaluation)")  # fmt: skip
    scoring, plain = injection(model, data.inputs, device)
    print(f"injection: {scoring:,.0f} events/s; plain forward pass {plain:,.0f} events/s; "
          f"ratio {scoring / plain:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
