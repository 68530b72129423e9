"""Score injection: friend trees aligned with every variation, events scored by their fold model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.core.config import shape_variations
from analysis.core.errors import AnalysisError
from analysis.core.io import read_tree, write_tree
from analysis.ml.inject import inject
from analysis.ml.network import (
    Standardization,
    TrainedModel,
    build_network,
    load_model,
    save_model,
)
from analysis.selection.friends import make_friend
from tests.ml.forward import numpy_scores

FEATURES = ["m_vis", "pt_1", "njets"]
CLASSES = ["ztt", "tt", "misc"]


def save_fold_models(directory, folds=2):
    paths = []
    for fold in range(folds):
        torch.manual_seed(fold)
        model = TrainedModel(
            network=build_network(len(FEATURES), len(CLASSES), [8], "tanh", 0.0),
            standardization=Standardization(
                np.array([80, 40, 1], np.float32), np.array([30, 15, 1], np.float32)
            ),
            features=FEATURES,
            classes=CLASSES,
            fold=fold,
            architecture={"hidden": [8], "activation": "tanh", "dropout": 0.0},
            settings_hash="test",
        )
        paths.append(directory / f"fold{fold}.pt")
        save_model(paths[-1], model)
    return paths


@pytest.fixture(scope="module")
def scored(tmp_path_factory, ztt_skims, default_config, default_samples):
    directory = tmp_path_factory.mktemp("inject")
    variations = shape_variations(default_config["variations"])
    settings = {
        "lumi": 1.0,
        "weights": {**default_config["weights"], "tau_id_sf": None},
        "folds": 2,
    }
    skims, friends, outputs = [], [], []
    for variation in variations:
        skims.append(str(ztt_skims / f"{variation}.root"))
        friends.append(str(directory / f"{variation}.friend.root"))
        outputs.append(str(directory / f"{variation}.scores.root"))
        make_friend(
            skims[-1], ztt_skims / "nominal.cutflow.json", friends[-1], "ZTT",
            default_samples["ZTT"], settings,
        )  # fmt: skip
    models = save_fold_models(directory)
    inject(skims, friends, models, outputs)
    return skims, friends, outputs, models


def test_scores_are_aligned_with_every_variation_skim(scored):
    skims, friends, outputs, _ = scored
    assert len(outputs) == 7
    for skim_path, output in zip(skims, outputs, strict=True):
        skim, scores = read_tree(skim_path), read_tree(output)
        for key in ("run", "luminosityBlock", "event"):
            assert np.array_equal(skim[key], scores[key])
        matrix = np.column_stack([scores[f"score_{name}"] for name in CLASSES])
        assert matrix.sum(axis=1) == pytest.approx(1, rel=1e-5)
        assert np.array_equal(scores["category"], matrix.argmax(axis=1))
        assert np.array_equal(scores["max_score"], matrix.max(axis=1))


def test_each_event_gets_the_score_of_its_fold_model(scored):
    skims, friends, outputs, models = scored
    skim, friend, scores = read_tree(skims[0]), read_tree(friends[0]), read_tree(outputs[0])
    inputs = np.column_stack([skim[name] for name in FEATURES]).astype(np.float32)
    for path in models:
        model = load_model(path)
        mine = friend["fold"] == model.fold
        assert mine.any()
        # A forward pass by hand: fails if an event is scored by the other fold's model, or the
        # columns are written in another order than the classes.
        expected = numpy_scores(path, inputs[mine])
        for index, name in enumerate(CLASSES):
            np.testing.assert_allclose(scores[f"score_{name}"][mine], expected[:, index],
                                       rtol=1e-5, atol=1e-6)  # fmt: skip


def test_a_misaligned_friend_is_refused(scored, tmp_path):
    skims, friends, _, models = scored
    friend = read_tree(friends[0])
    shuffled = {name: values[::-1].copy() for name, values in friend.items()}
    write_tree(tmp_path / "shuffled.root", shuffled)
    output = tmp_path / "scores.root"
    with pytest.raises(AnalysisError, match="differs from its skim"):
        inject([skims[0]], [str(tmp_path / "shuffled.root")], models, [str(output)])
    assert not output.exists()
