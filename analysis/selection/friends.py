"""Friend trees: per-event columns computed after the skim, one tree per sample x variation.

A friend tree has the same entries in the same order as its skim and repeats the event keys
(run, luminosityBlock, event) so that readers check alignment (see
:func:`analysis.core.io.read_with_friends`). Columns:

- ``fold``: the k-fold index, ``event % folds`` (an event's model never trained on it);
- ``weight``: the nominal event weight, ``xsec * lumi * genWeight / sum(genWeight)`` times the
  nominal per-event factors (e.g. pileup), the official-format scale factors the preselection
  evaluated (``weights.corrections``: skim columns ``w_<name>``) and the toy tau_h ID scale factor
  for genuine tau_h (1 for data);
- ``weight_<name>_up`` / ``_down`` for every weight variation in ``weights.variations`` and for
  ``tau_id`` (the scale factor's uncertainty). Variations marked ``acceptance_only`` are
  renormalised to the nominal sum of weights before selection, so they change shapes and
  acceptance but not the inclusive cross section (that belongs to a normalisation uncertainty).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from analysis.core.config import (
    active_weight_variations,
    correction_columns,
    is_simulation,
    nominal_weight_columns,
    weight_columns,
)
from analysis.core.errors import AnalysisError, cli_main
from analysis.core.io import EVENT_KEYS, read_json, read_tree, write_tree
from analysis.core.variations import Variation, both
from analysis.selection.corrections import evaluate_tau_id_sf, load_correction
from analysis.selection.nanoaod import GENUINE_TAU

log = logging.getLogger(__name__)


def friend_columns(
    skim: Mapping[str, np.ndarray],
    cutflow: Mapping[str, Any],
    sample_name: str,
    sample: Mapping[str, Any],
    settings: Mapping[str, Any],
) -> dict[str, np.ndarray]:
    """Compute the friend-tree columns of one skim.

    Args:
        skim: the skim's columns (event keys, ``pt_2``, ``dm_2``, ``gen_match_2``, ``w_*``).
        cutflow: the sample's nominal cutflow (carries the generator-weight sums).
        sample_name: for error messages.
        sample: the sample's entry in the samples file.
        settings: ``lumi``, ``weights`` and ``folds`` from the config.

    Returns:
        The columns, event keys first.
    """
    columns = {key: np.asarray(skim[key]) for key in EVENT_KEYS}
    columns["fold"] = (columns["event"] % np.uint64(settings["folds"])).astype(np.int32)
    if not is_simulation(sample):
        columns["weight"] = np.ones(len(columns["event"]), dtype=np.float64)
        return columns
    weights = settings["weights"]
    nominal = _nominal_weight(skim, cutflow, sample_name, sample, settings["lumi"], weights)
    columns["weight"] = nominal
    processed = cutflow["sumw"]["processed"]
    for name, spec in active_weight_variations(weights).items():
        for variation in both(name):
            ratio = _variation_ratio(skim, variation, spec)
            if spec.get("acceptance_only"):
                ratio = ratio * processed["genWeight"] / processed[variation.name]
            columns[f"weight_{variation.name}"] = nominal * ratio
    if weights.get("tau_id_sf"):
        sf = _tau_id_sf(skim, weights["tau_id_sf"])
        for variation in both("tau_id"):
            ratio = _safe_ratio(sf[variation.direction], sf["nom"])
            columns[f"weight_{variation.name}"] = nominal * ratio
    _check_finite(columns, sample_name)
    return columns


def _nominal_weight(
    skim: Mapping[str, np.ndarray],
    cutflow: Mapping[str, Any],
    sample_name: str,
    sample: Mapping[str, Any],
    lumi: float,
    weights: Mapping[str, Any],
) -> np.ndarray:
    sumw = cutflow["sumw"]["genEventSumw"]
    if not sumw:
        raise AnalysisError(
            f"sample '{sample_name}': the sum of generator weights is 0, so it cannot be "
            "normalised; check the sample's files and weights.generator"
        )
    weight = np.asarray(skim["w_gen"], dtype=np.float64) * (sample["xsec"] * lumi / sumw)
    for column in nominal_weight_columns(weights):
        weight = weight * np.asarray(skim[column], dtype=np.float64)
    if weights.get("tau_id_sf"):
        weight = weight * _tau_id_sf(skim, weights["tau_id_sf"])["nom"]
    return weight


def _variation_ratio(
    skim: Mapping[str, np.ndarray], variation: Variation, spec: Mapping[str, Any]
) -> np.ndarray:
    """Varied over nominal per-event factor: array entries and branches without a nominal are
    relative already; a variation with a ``nominal_column`` (a branch triple's, a correction's)
    replaces that nominal factor."""
    varied = np.asarray(skim[f"w_{variation.name}"], dtype=np.float64)
    if "nominal_column" in spec:
        return _safe_ratio(varied, np.asarray(skim[spec["nominal_column"]], dtype=np.float64))
    return varied


def _tau_id_sf(skim: Mapping[str, np.ndarray], spec: Mapping[str, str]) -> dict[str, np.ndarray]:
    """Scale factor (nom/up/down) per event; 1 for tau_h that are not genuine."""
    correction = load_correction(spec["file"], spec["correction"])
    genuine = np.asarray(skim["gen_match_2"]) == GENUINE_TAU
    factors = {}
    for syst in ("nom", "up", "down"):
        values = np.ones(len(genuine))
        if genuine.any():
            values[genuine] = evaluate_tau_id_sf(
                correction, skim["pt_2"][genuine], skim["dm_2"][genuine], syst
            )
        factors[syst] = values
    return factors


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (the nominal weight is 0 there)."""
    return np.divide(
        numerator,
        denominator,
        out=np.zeros_like(numerator, dtype=np.float64),
        where=denominator != 0,
    )


def _check_finite(columns: Mapping[str, np.ndarray], sample_name: str) -> None:
    for name, values in columns.items():
        bad = ~np.isfinite(values) if values.dtype.kind == "f" else None
        if bad is not None and bad.any():
            raise AnalysisError(
                f"sample '{sample_name}': {int(bad.sum())} events have a non-finite {name} "
                f"(first at entry {int(np.argmax(bad))}); check the weight branches of the input"
            )


def weight_inputs(sample: Mapping[str, Any], weights: Mapping[str, Any]) -> list[str]:
    """Skim columns the friend computation reads."""
    if not is_simulation(sample):
        return list(EVENT_KEYS)
    return [
        *EVENT_KEYS, "pt_2", "dm_2", "gen_match_2", *weight_columns(weights),
        *correction_columns(weights),
    ]  # fmt: skip


def make_friend(
    skim_path: str | os.PathLike[str],
    cutflow_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    sample_name: str,
    sample: Mapping[str, Any],
    settings: Mapping[str, Any],
) -> dict[str, np.ndarray]:
    """Read a skim and its sample's cutflow, write the friend tree; return its columns."""
    skim = read_tree(skim_path, weight_inputs(sample, settings["weights"]))
    cutflow = read_json(cutflow_path)
    columns = friend_columns(skim, cutflow, sample_name, sample, settings)
    write_tree(output, columns)
    return columns


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the friend trees of one sample's skims.")
    parser.add_argument("--sample", required=True)
    parser.add_argument("--sample-spec", required=True, help="the sample's entry, as JSON")
    parser.add_argument("--skims", nargs="+", required=True)
    parser.add_argument("--cutflow", required=True, help="the sample's nominal cutflow JSON")
    parser.add_argument("--settings", required=True, help="lumi, weights and folds, as JSON")
    parser.add_argument("--outputs", nargs="+", required=True, help="one per skim, in order")
    args = parser.parse_args(argv)
    # skims and friends are both named <variation>.root: pairs must match by name
    mismatched = [
        (skim, output)
        for skim, output in itertools.zip_longest(args.skims, args.outputs, fillvalue="")
        if Path(skim).name != Path(output).name
    ]
    if mismatched:
        skim, output = mismatched[0]
        raise AnalysisError(
            f"friends: skim {skim or '(none)'} paired with output {output or '(none)'}; give "
            "one output per skim, of the same variation, in the same order"
        )
    sample, settings = json.loads(args.sample_spec), json.loads(args.settings)
    for skim, output in zip(args.skims, args.outputs, strict=True):
        columns = make_friend(skim, args.cutflow, output, args.sample, sample, settings)
        log.info(
            "%s: %d events, sum of weights %.6g",
            output,
            len(columns["event"]),
            float(np.sum(columns["weight"])),
        )


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
