"""Score injection: the fold-matched classifier scores of every sample x variation, as friend trees.

For each skim the friend tree holds the event keys, one ``score_<class>`` column per output class,
``category`` (the index of the highest score, in the order of ``train.classes``) and
``max_score``. Each event is scored by the model trained without its fold.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from analysis.core.errors import AnalysisError, cli_main
from analysis.core.io import EVENT_KEYS, read_with_friends, write_tree
from analysis.ml.network import TrainedModel, fold_matched_scores, load_fold_models

log = logging.getLogger(__name__)


def score_columns(
    columns: Mapping[str, np.ndarray], models: Mapping[int, TrainedModel], source: str
) -> dict[str, np.ndarray]:
    """The score friend-tree columns of one skim (its features, event keys and folds)."""
    reference = next(iter(models.values()))
    inputs = np.column_stack([columns[name] for name in reference.features]).astype(np.float32)
    scores = fold_matched_scores(models, inputs, columns["fold"], source)
    result = {key: np.asarray(columns[key]) for key in EVENT_KEYS}
    for index, name in enumerate(reference.classes):
        result[f"score_{name}"] = scores[:, index]
    result["category"] = np.argmax(scores, axis=1).astype(np.int32)
    result["max_score"] = (
        scores.max(axis=1) if len(scores) else np.zeros(0, dtype=np.float32)
    ).astype(np.float32)
    return result


def inject(
    skims: Sequence[str], friends: Sequence[str], models: Sequence[str], outputs: Sequence[str]
) -> None:
    """Write the score friend tree of each (skim, friend) pair to the matching output."""
    fold_models = load_fold_models(models)
    features = next(iter(fold_models.values())).features
    for skim, friend, output in zip(skims, friends, outputs, strict=True):
        columns = read_with_friends(skim, [friend], [*EVENT_KEYS, *features, "fold"])
        scores = score_columns(columns, fold_models, skim)
        write_tree(output, scores)
        log.info("%s: %d events scored", output, len(scores["event"]))


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write classifier-score friend trees.")
    parser.add_argument("--skims", nargs="+", required=True)
    parser.add_argument("--friends", nargs="+", required=True)
    parser.add_argument("--models", nargs="+", required=True, help="one model file per fold")
    parser.add_argument("--outputs", nargs="+", required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if not len(args.skims) == len(args.friends) == len(args.outputs):
        raise AnalysisError("inject: need one friend tree and one output per skim")
    torch.set_num_threads(args.threads)
    inject(args.skims, args.friends, args.models, args.outputs)


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
