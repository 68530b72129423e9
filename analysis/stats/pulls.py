"""Pulls and constraints of the nuisance parameters after the nominal fit (``pulls.json``).

For a constrained parameter, pull = (theta_hat - theta_0) / Delta_theta_prefit, with theta_0 the
centre of its constraint (what the auxiliary measurement says) and Delta_theta_prefit its width;
constraint = Delta_theta_postfit / Delta_theta_prefit. Every constrained modifier type is included
(normsys, histosys, lumi, and each bin ``name[i]`` of staterror and shapesys). Free parameters
(normfactors, shapefactors) have no pre-fit width: they are listed separately with value and
uncertainty.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from analysis.core.errors import cli_main
from analysis.core.io import write_json
from analysis.stats import model as model_utils
from analysis.stats.fit import (
    FitRecord,
    add_workspace_arguments,
    configure_logging,
    parse_settings,
    read_fit,
)

log = logging.getLogger(__name__)


class Pull(NamedTuple):
    """A constrained parameter after the fit."""

    parameter: str
    modifier: str
    value: float
    uncertainty: float
    prefit_value: float
    prefit_uncertainty: float
    pull: float
    constraint: float


class FreeParameter(NamedTuple):
    """An unconstrained parameter (normfactor, shapefactor) after the fit."""

    parameter: str
    modifier: str
    value: float
    uncertainty: float


def pulls(setup: model_utils.Setup, record: FitRecord) -> tuple[list[Pull], list[FreeParameter]]:
    """Pulls of the constrained and values of the free parameters, in the model's order.

    Parameters fixed in the workspace are left out.

    Args:
        setup: the model the fit was made with.
        record: the nominal fit.

    Returns:
        The constrained parameters' pulls, and the free parameters.
    """
    model = setup.model
    centres = model_utils.constraint_centres(model)
    widths = model_utils.prefit_uncertainties(model)
    kinds = model_utils.modifier_types(model)
    free = model_utils.free_mask(model)
    constrained, unconstrained = [], []
    for i, label in enumerate(record.labels):
        if not free[i]:
            continue
        value, error = float(record.values[i]), float(record.uncertainties[i])
        if np.isnan(centres[i]):
            unconstrained.append(FreeParameter(label, kinds[i], value, error))
            continue
        width = float(widths[i])
        constrained.append(
            Pull(
                label,
                kinds[i],
                value,
                error,
                float(centres[i]),
                width,
                (value - float(centres[i])) / width,
                error / width,
            )
        )
    return constrained, unconstrained


def pulls_record(
    setup: model_utils.Setup, constrained: list[Pull], unconstrained: list[FreeParameter]
) -> dict[str, Any]:
    """The ``pulls.json`` content."""
    return {
        "poi": setup.pois[0],
        "asimov": setup.asimov,
        "constrained": [pull._asdict() for pull in constrained],
        "unconstrained": [parameter._asdict() for parameter in unconstrained],
    }


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Pulls and constraints (pulls.json).")
    add_workspace_arguments(parser)
    parser.add_argument("--fit", required=True, help="fit.json of the nominal fit")
    parser.add_argument("--output", required=True, help="pulls.json to write")
    args = parser.parse_args(argv)
    configure_logging()
    setup = model_utils.setup_from_files(args.workspace, parse_settings(args.settings))
    constrained, unconstrained = pulls(setup, read_fit(args.fit, setup))
    largest = max(constrained, key=lambda pull: abs(pull.pull), default=None)
    if largest is not None:
        log.info("largest pull: %s = %+.3f", largest.parameter, largest.pull)
    write_json(args.output, pulls_record(setup, constrained, unconstrained))


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
