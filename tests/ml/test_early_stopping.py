"""Early stopping: patience, the restored best network, and reproducible training."""

from __future__ import annotations

import torch
from torch import nn

from analysis.ml.early_stopping import EarlyStopping, LoopSettings, train_with_early_stopping
from analysis.ml.gaussian_toy import make_sample, train


def test_early_stopping_stops_after_patience_and_restores_best():
    torch.manual_seed(0)
    network = nn.Linear(1, 1)
    validation = iter([5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 3.3, 9.0, 9.0])
    kept = {}

    def val_loss() -> torch.Tensor:
        value = next(validation)
        if value == 3.0:
            kept["state"] = {k: v.clone() for k, v in network.state_dict().items()}
        return torch.tensor(value)

    def train_loss() -> torch.Tensor:
        return (network(torch.ones(1, 1)) ** 2).sum()

    history = train_with_early_stopping(
        network, train_loss, train_loss, val_loss, LoopSettings(1, 100, 4, 0.1)
    )
    # 1 pre-training step (validation 5.0), the start of the full phase (4.0), then 3.0 is best
    # at full step 0 and four worse steps stop the loop.
    assert history.phase == ["pretrain"] + ["full"] * 5
    assert history.best_step == 0 and history.best_validation == 3.0
    for name, value in network.state_dict().items():
        torch.testing.assert_close(value, kept["state"][name])


def test_training_is_reproducible():
    generator = torch.Generator().manual_seed(5)
    train_sample, val_sample = make_sample(500, generator), make_sample(500, generator)
    settings = LoopSettings(3, 5, 5, 0.01)
    histories = [train("ua_syst", train_sample, val_sample, settings, seed=2)[1] for _ in range(2)]
    assert histories[0].train == histories[1].train
    assert histories[0].validation == histories[1].validation


def test_early_stopping_tracker_counts_patience_and_restores_the_best_state():
    network = nn.Linear(1, 1)
    stopping = EarlyStopping(patience=2)
    with torch.no_grad():
        network.weight.fill_(1.0)
    assert not stopping.update(3.0, 0, network)
    with torch.no_grad():
        network.weight.fill_(2.0)
    assert not stopping.update(3.5, 1, network)
    assert stopping.update(3.0, 2, network)  # not better than the best: the second miss
    stopping.restore(network)
    assert (stopping.best, stopping.best_step, stopping.waited) == (3.0, 0, 2)
    assert float(network.weight.detach()) == 1.0
