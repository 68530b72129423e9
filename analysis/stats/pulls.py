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

import numpy as np

from analysis.core.errors import cli_main
from analysis.stats import model as model_utils
from analysis.stats.cli import add_workspace_arguments, parse_settings
from analysis.stats.fit import read_fit
from analysis.stats.results import FitResults, FreeParameter, Pull, PullsResults

log = logging.getLogger(__name__)


def pulls(setup: model_utils.Setup, record: FitResults) -> PullsResults:
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
        width, centre = float(widths[i]), float(centres[i])
        pull = Pull(label, kinds[i], value, error, centre, width, (value - centre) / width,
                    error / width)  # fmt: skip
        constrained.append(pull)
    return PullsResults(setup.pois[0], setup.asimov, tuple(constrained), tuple(unconstrained))


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Pulls and constraints (pulls.json).")
    add_workspace_arguments(parser)
    parser.add_argument("--fit", required=True, help="fit.json of the nominal fit")
    parser.add_argument("--output", required=True, help="pulls.json to write")
    args = parser.parse_args(argv)
    setup = model_utils.setup_from_files(args.workspace, parse_settings(args.settings))
    result = pulls(setup, read_fit(args.fit, setup))
    largest = max(result.constrained, key=lambda pull: abs(pull.pull), default=None)
    if largest is not None:
        log.info("largest pull: %s = %+.3f", largest.parameter, largest.pull)
    result.write(args.output)


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
