"""The one blinding switch (config ``unblind``) and what it decides for the statistics stages.

While the analysis is blinded (``unblind: false``, the default):

- the histograms stage leaves the data histograms out of ``histograms.root`` (a tool reading the
  file finds no numbers that look like data) and counts only the data of unblinded bins in the
  yields tables; the input-feature figures hide data in sensitive bins;
- the workspace's observations are the Asimov prediction (every sample at its nominal yield, the
  signal strength at 1), so nothing built from the workspace (the combine datacard, the
  HistFactory XML) holds data;
- the fits use Asimov data (``inference.asimov`` null follows ``unblind``).

``unblind: true`` lifts all of it at once. ``inference.asimov: true`` still asks for expected
results on an unblinded analysis; ``inference.asimov: false`` on a blinded analysis is refused
before any job runs, except for an external workspace (published data, nothing to blind).
This module imports nothing heavy: the workflow calls it while it builds the DAG.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from analysis.core.errors import AnalysisError


def check_renamed_keys(config: Mapping[str, Any]) -> None:
    """Stop on the blinding key an older config may still set, naming its replacement.

    Raises:
        AnalysisError: ``histograms.blind`` is set.
    """
    histograms = config.get("histograms")
    if isinstance(histograms, Mapping) and "blind" in histograms:
        raise AnalysisError(
            "config: histograms.blind was replaced by the top-level key unblind (default false: "
            "blinded); remove histograms.blind and set unblind: true to unblind histograms and "
            "fits together"
        )


def fit_asimov(config: Mapping[str, Any]) -> bool:
    """Whether the inference stages fit Asimov data, from a validated config.

    ``inference.asimov`` null follows ``unblind`` (Asimov while blinded); ``true`` always fits
    Asimov data (expected results).

    Raises:
        AnalysisError: ``inference.asimov: false`` while ``unblind: false`` on our own
            workspace, whose blinded bins would be fitted without data.
    """
    asimov = config["inference"]["asimov"]
    if asimov is None:
        return not config["unblind"]
    if not asimov and not config["unblind"] and not config["inference"]["external_workspace"]:
        raise AnalysisError(
            "config: inference.asimov: false fits observed data but the analysis is blinded "
            "(unblind: false); set unblind: true to unblind histograms and fits together, or "
            "leave inference.asimov null"
        )
    return bool(asimov)


def gof_data(config: Mapping[str, Any]) -> str:
    """What the input-variable goodness-of-fit tests fit, from a validated config: ``observed``,
    ``asimov`` or ``pseudo`` (pseudo-data drawn from the pre-fit model). ``gof.data`` null
    follows ``unblind``: Asimov data while blinded. While blinded, the observed data may be
    tested in a control region (``gof.region``); the bins whose expected signal-to-background
    ratio exceeds ``histograms.blind_threshold`` are then left out of the tests
    (:func:`analysis.stats.gof_histograms.workspace_of`).

    Raises:
        AnalysisError: ``gof.region`` not a control region, or ``gof.data: observed`` in the
            signal region while ``unblind: false``.
    """
    region = config["gof"].get("region")
    control = config["histograms"].get("control_regions") or {}
    if region is not None and region not in control:
        known = ", ".join(sorted(control)) or "none configured"
        raise AnalysisError(
            f"config: gof.region: {region!r} is not in histograms.control_regions ({known}); "
            "name one of them, or null for the signal region"
        )
    data = config["gof"]["data"]
    if data is None:
        return "observed" if config["unblind"] else "asimov"
    if data == "observed" and not config["unblind"] and region is None:
        raise AnalysisError(
            "config: gof.data: observed tests the data of the signal region but the analysis is "
            "blinded (unblind: false); set gof.region to a control region, set unblind: true, "
            "or use gof.data: pseudo (or null: Asimov)"
        )
    return str(data)
