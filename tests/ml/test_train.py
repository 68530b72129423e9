"""Training: fold isolation, class weights, determinism, and a real toy training beating chance."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.core.io import write_tree
from analysis.ml.diagnostics import weighted_roc
from analysis.ml.network import load_model, save_model
from analysis.ml.train import (
    fit_network,
    load_training_data,
    train,
    training_split,
    training_weights,
)
from analysis.selection.friends import make_friend
from analysis.selection.preselect import run_preselection
from tests.conftest import preselect_settings
from tests.ml.forward import numpy_scores
from tests.ml.test_train_uncertainty_aware import HASH

SMALL_NETWORK = {
    "network": {"hidden": [16], "activation": "tanh", "dropout": 0.0},
    "batch_size": 256,
    "max_epochs": 15,
    "patience": 3,
}


def small_settings(default_config, features, classes):
    settings = copy.deepcopy(default_config["train"])
    settings.update(SMALL_NETWORK, features=features, classes=classes, folds=3)
    return settings


def write_gaussian_sample(directory: Path, name: str, mean: float, n: int, seed: int):
    """A skim and friend with two Gaussian features around ``mean`` and a few negative weights."""
    rng = np.random.default_rng(seed)
    keys = {
        "run": np.ones(n, np.uint32),
        "luminosityBlock": np.ones(n, np.uint32),
        "event": np.arange(seed * 100_000, seed * 100_000 + n, dtype=np.uint64),
    }
    skim = {**keys, "x1": rng.normal(mean, 1, n), "x2": rng.normal(-mean, 1, n)}
    skim["is_os"] = np.ones(n, np.int32)
    weights = rng.uniform(0.5, 1.5, n) * np.where(rng.uniform(size=n) < 0.05, -1, 1)
    friend = {**keys, "weight": weights, "fold": (keys["event"] % 3).astype(np.int32)}
    write_tree(directory / f"{name}.root", skim)
    write_tree(directory / f"{name}_friend.root", friend)
    return str(directory / f"{name}.root"), str(directory / f"{name}_friend.root")


@pytest.fixture(scope="module")
def gaussian_inputs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("gaussian")
    signal = write_gaussian_sample(directory, "signal", 0.7, 3000, 1)
    background = write_gaussian_sample(directory, "background", -0.7, 6000, 2)
    return [("sig", *signal), ("bkg", *background)]


@pytest.fixture()
def gaussian_settings(default_config):
    return small_settings(default_config, ["x1", "x2"], ["sig", "bkg"])


def test_a_fold_model_never_sees_its_fold(gaussian_inputs, gaussian_settings):
    data = load_training_data(gaussian_inputs, gaussian_settings)
    for fold in range(3):
        parts = training_split(data, fold, gaussian_settings)
        used = np.concatenate([part.events for part in parts.values()])
        assert not np.isin(used, data.events[data.folds == fold]).any()
        # every other-fold event is used exactly once (train or validation)
        assert np.array_equal(np.sort(used), np.sort(data.events[data.folds != fold]))
        assert not np.isin(parts["train"].events, parts["validation"].events).any()


def test_validation_events_are_those_of_the_fine_tuning(gaussian_inputs, gaussian_settings):
    """The pre-training validates on exactly the events the uncertainty-aware fine-tuning
    validates on (its split, written out independently in test_train_uncertainty_aware.py): fails
    if the pre-training drew its own random split, so that the fine-tuning early-stopped on events
    the pre-training trained on."""
    data = load_training_data(gaussian_inputs, gaussian_settings)
    fraction, folds = gaussian_settings["validation_fraction"], gaussian_settings["folds"]
    hashed = ((data.events // np.uint64(folds)) * HASH) % np.uint64(2**32)
    expected_validation = hashed.astype(np.float64) / 2**32 < fraction
    for fold in range(folds):
        validation = training_split(data, fold, gaussian_settings)["validation"]
        usable = training_weights(
            data.labels, data.weights, 2, gaussian_settings["negative_weights"]
        ) != 0  # fmt: skip
        expected = data.events[expected_validation & (data.folds != fold) & usable]
        assert np.array_equal(np.sort(validation.events), np.sort(expected)), fold
        assert abs(len(validation.events) / np.sum((data.folds != fold) & usable) - fraction) < 0.03


def test_class_weights_are_balanced_and_follow_the_negative_policy():
    labels = np.array([0, 0, 0, 1])
    weights = np.array([1.0, -1.0, 2.0, 10.0])
    balanced = training_weights(labels, weights, 2, "abs")
    assert balanced[labels == 0].sum() == pytest.approx(balanced[labels == 1].sum())
    assert balanced.mean() == pytest.approx(1.0)
    assert balanced[0] == pytest.approx(balanced[1])  # |w| keeps the negative-weight event
    assert training_weights(labels, weights, 2, "zero")[1] == 0
    assert training_weights(labels, weights, 2, "keep")[1] < 0


def test_training_is_deterministic_on_cpu(gaussian_inputs, gaussian_settings, tmp_path):
    torch.use_deterministic_algorithms(True)
    paths = []
    for run in range(2):
        # same file names: torch.save records the file's stem inside the archive
        model, history = (
            tmp_path / f"run{run}" / "model.pt",
            tmp_path / f"run{run}" / "history.json",
        )
        model.parent.mkdir()
        train(gaussian_inputs, 1, gaussian_settings, model, history)
        paths.append((model, history))
    assert paths[0][0].read_bytes() == paths[1][0].read_bytes()
    assert paths[0][1].read_bytes() == paths[1][1].read_bytes()
    model = load_model(paths[0][0])
    assert (model.fold, model.classes, model.features) == (1, ["sig", "bkg"], ["x1", "x2"])


@pytest.fixture(scope="module")
def noise_inputs(tmp_path_factory):
    """Two classes with the same feature distributions: nothing to learn, only to overfit."""
    directory = tmp_path_factory.mktemp("noise")
    signal = write_gaussian_sample(directory, "signal", 0.0, 300, 3)
    background = write_gaussian_sample(directory, "background", 0.0, 300, 4)
    return [("sig", *signal), ("bkg", *background)]


def test_early_stopping_stops_after_patience_and_keeps_the_best_model(
    noise_inputs, gaussian_settings, tmp_path
):
    # Featureless classes, few events and a large learning rate: training memorises the training
    # events, so the validation loss rises and early stopping must trigger (asserted, not assumed).
    settings = {**gaussian_settings, "max_epochs": 40, "patience": 3, "learning_rate": 0.05,
                "batch_size": 32}  # fmt: skip
    data = load_training_data(noise_inputs, settings)
    model, history = fit_network(data, 0, settings, torch.device("cpu"))
    best = history["best_epoch"]
    assert history["val_loss"][best] == min(history["val_loss"])
    # Fails on an off-by-one in the patience count, or a loop that never stops early.
    assert history["epochs"] < settings["max_epochs"]
    assert history["epochs"] - 1 - best == settings["patience"]
    assert best < history["epochs"] - 1  # the last epochs were worse: restoring matters
    # The kept model has the best epoch's validation loss, recomputed by hand from the saved file
    # (fails if the last epoch's weights are kept instead of the best ones).
    validation = training_split(data, 0, settings)["validation"]
    save_model(tmp_path / "model.pt", model)
    probabilities = numpy_scores(tmp_path / "model.pt", validation.inputs)
    weights = training_weights(
        validation.labels, validation.weights, 2, settings["negative_weights"]
    ).astype(np.float64)
    picked = probabilities[np.arange(len(validation.labels)), validation.labels]
    loss = float(np.sum(-np.log(picked) * weights) / weights.sum())
    assert loss == pytest.approx(history["val_loss"][best], rel=1e-4)
    assert loss < history["val_loss"][-1]


@pytest.fixture(scope="module")
def toy_training_inputs(tmp_path_factory, toy_files, default_config, default_samples):
    """Nominal skims and friends of the small ZTT, TT and W toy samples."""
    directory = tmp_path_factory.mktemp("toy_training")
    settings = preselect_settings(default_config)
    settings["variations"] = dict.fromkeys(settings["variations"])  # nominal only: all off
    friend_settings = {
        "lumi": default_config["lumi"],
        "weights": {**default_config["weights"], "tau_id_sf": None},
        "folds": 2,
    }
    inputs = []
    for sample, class_name in (("ZTT", "ztt"), ("TT", "tt"), ("W", "w")):
        output = directory / sample
        run_preselection(
            sample, default_samples[sample], [str(toy_files[sample])], settings, output,
            chunksize=4000, dask={"mode": "none"},
        )  # fmt: skip
        skim, friend = output / "nominal.root", output / "friend.root"
        make_friend(
            skim, output / "nominal.cutflow.json", friend, sample, default_samples[sample],
            friend_settings,
        )  # fmt: skip
        inputs.append((class_name, str(skim), str(friend)))
    return inputs


def test_toy_training_beats_a_trivial_classifier(toy_training_inputs, default_config):
    settings = small_settings(
        default_config, default_config["train"]["features"], ["ztt", "tt", "w"]
    )
    settings.update(max_epochs=30, opposite_sign_only=False)
    data = load_training_data(toy_training_inputs, settings)
    model, _ = fit_network(data, 0, settings, torch.device("cpu"))
    test = data.select(data.folds == 0)
    scores = model.scores(test.inputs)
    for index in range(3):
        _, _, auc = weighted_roc(scores[:, index], test.labels == index, np.abs(test.weights))
        # a trivial (constant) classifier has AUC 0.5
        assert auc > 0.8, f"class {settings['classes'][index]}: AUC {auc:.3f}"
