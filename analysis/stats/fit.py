"""The nominal maximum-likelihood fit (``fit.json``), and reading it back for later stages.

The objective is twice the negative log-likelihood of the pyhf model, minimised by MIGRAD with its
fallback chain (:mod:`analysis.stats.minimizer`); uncertainties and correlations come from HESSE,
the fit quality from the saturated model (:mod:`analysis.stats.goodness`), with its p-value from
toys of the post-fit model as well (``inference.fit.gof_toys``, :mod:`analysis.stats.gof`).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from analysis.core.errors import AnalysisError, cli_main
from analysis.core.provenance import git_state, package_versions, sha256_of
from analysis.stats import model as model_utils
from analysis.stats.cli import add_workspace_arguments, parse_settings
from analysis.stats.gof import toy_statistics
from analysis.stats.goodness import goodness_of_fit
from analysis.stats.minimizer import FitSettings, fit_settings, minimize
from analysis.stats.results import FitResults, GoodnessOfFit, Provenance

log = logging.getLogger(__name__)

#: Packages whose versions can change fit results, recorded in ``fit.json``.
VERSIONED_PACKAGES = ("pyhf", "iminuit", "numpy", "scipy")


class GofToys(NamedTuple):
    """Toys of the goodness of fit (``inference.fit.gof_toys``, ``gof_seed``); 0 toys: none."""

    toys: int = 0
    seed: int = 0


def gof_toys(settings: Mapping[str, Any]) -> GofToys:
    """The goodness-of-fit toys of the stage's settings (none where ``fit`` does not set them).

    Raises:
        AnalysisError: a negative number of toys.
    """
    fields = settings.get("fit") or {}
    toys = GofToys(**{key[4:]: fields[key] for key in ("gof_toys", "gof_seed") if key in fields})
    if not isinstance(toys.toys, int) or toys.toys < 0:
        raise AnalysisError(f"inference.fit.gof_toys: {toys.toys!r} is not a number >= 0 (0: none)")
    return toys


def fit(
    setup: model_utils.Setup,
    settings: FitSettings,
    provenance: Provenance | None = None,
    toys: GofToys | None = None,
) -> FitResults:
    """The nominal maximum-likelihood fit with HESSE uncertainties and goodness of fit.

    Args:
        setup: model, data and POIs.
        settings: minimiser settings.
        provenance: the code and settings that made it, recorded in the result.
        toys: toys for the goodness of fit's toy p-value (None: none).

    Returns:
        The fit result (``converged`` False when the fallback chain failed, never hidden), with
        the workspace digest and software versions it was made with.
    """
    minimum = minimize(setup.model, setup.data, settings, hesse=True)
    labels = tuple(setup.model.config.par_names)
    covariance = minimum.covariance
    if covariance is None:  # HESSE never ran (MIGRAD failed before it): no uncertainties
        covariance = np.zeros((len(labels), len(labels)))
    uncertainties = (
        minimum.uncertainties if minimum.uncertainties is not None else np.zeros(len(labels))
    )
    fixed = ~model_utils.free_mask(setup.model)
    return FitResults(
        poi=setup.pois[0],
        pois=tuple(setup.pois),
        asimov=setup.asimov,
        converged=minimum.converged,
        twice_nll=minimum.twice_nll,
        labels=labels,
        values=minimum.values,
        uncertainties=uncertainties,
        correlation=correlation_matrix(covariance),
        fixed=tuple(label for label, frozen in zip(labels, fixed, strict=True) if frozen),
        goodness_of_fit=_goodness(setup, minimum.values, minimum.twice_nll, settings, toys),
        attempts=minimum.attempts,
        workspace_sha256=setup.digest,
        versions={"python": platform.python_version(), **package_versions(VERSIONED_PACKAGES)},
        provenance=provenance,
    )


def _goodness(
    setup: model_utils.Setup,
    values: np.ndarray,
    twice_nll: float,
    settings: FitSettings,
    toys: GofToys | None,
) -> GoodnessOfFit:
    """The saturated goodness of fit, with its p-value from toys of the post-fit model."""
    result = goodness_of_fit(setup.model, setup.data, twice_nll)
    if toys is None or toys.toys == 0:
        return result
    toy_chi2, fallbacks = toy_statistics(setup.model, values, settings, toys.toys, toys.seed)
    p_value = float(np.mean(toy_chi2 >= result.chi2))
    return result._replace(toys=toys.toys, toy_p_value=p_value, toy_fallbacks=fallbacks)


def correlation_matrix(covariance: np.ndarray) -> np.ndarray:
    """Correlations from a covariance; rows and columns of fixed parameters (no variance) are 0."""
    sigma = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    scale = np.outer(sigma, sigma)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 0, covariance / np.where(scale > 0, scale, 1.0), 0.0)


def read_fit(path: str | os.PathLike[str], setup: model_utils.Setup) -> FitResults:
    """Read ``fit.json`` back, checking that it belongs to this model.

    Raises:
        AnalysisError: the file is missing or malformed, or was made for another workspace or
            settings.
    """
    record = FitResults.read(path)
    if list(record.labels) != list(setup.model.config.par_names):
        raise AnalysisError(
            f"{path}: made from another workspace (other parameters); rerun the fit stage"
        )
    if record.workspace_sha256 != setup.digest:
        raise AnalysisError(f"{path}: made from another workspace; rerun the fit stage")
    if record.pois != tuple(setup.pois) or record.asimov != setup.asimov:
        raise AnalysisError(f"{path}: made with other POIs or data; rerun the fit stage")
    if not record.converged:
        # later stages still run (their output says what they started from), but say it loudly
        log.warning(
            "%s: the nominal fit did not converge; results built on it are unreliable", path
        )
    return record


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Nominal maximum-likelihood fit (fit.json).")
    add_workspace_arguments(parser)
    parser.add_argument("--output", required=True, help="fit.json to write")
    args = parser.parse_args(argv)
    settings = parse_settings(args.settings)
    setup = model_utils.setup_from_files(args.workspace, settings)
    provenance = Provenance(git_state(), sha256_of(settings))
    result = fit(setup, fit_settings(settings), provenance, gof_toys(settings))
    poi, quality = setup.model.config.poi_index, result.goodness_of_fit
    log.info(
        "%s = %.4f +- %.4f (converged: %s, goodness of fit p = %s, from %d toys p = %s)",
        setup.pois[0], result.values[poi], result.uncertainties[poi], result.converged,
        quality.p_value, quality.toys, quality.toy_p_value,
    )  # fmt: skip
    result.write(args.output)


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
