"""Goodness of fit against the saturated model (one free yield per bin)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.special
import scipy.stats

from analysis.stats import model as model_utils
from analysis.stats.results import GoodnessOfFit


def goodness_of_fit(model: Any, data: np.ndarray, twice_nll: float) -> GoodnessOfFit:
    """Goodness of fit against the saturated model (one free yield per bin).

    The saturated likelihood is a Poisson term at rate = observed count in every bin times the
    constraint terms at their maximum; the fit's -2 log L difference to it is chi2-distributed
    with (bins - free unconstrained parameters) degrees of freedom.

    Args:
        model: the pyhf model.
        data: main and auxiliary data of the fit.
        twice_nll: the fit's minimum of -2 log L.

    Returns:
        chi2, ndof and p-value (None when ndof <= 0).
    """
    n_main = model.config.nmaindata
    counts = np.asarray(data[:n_main], dtype=float)
    # log Poisson(n | n), with 0 log 0 = 0
    poisson = scipy.special.xlogy(counts, counts) - counts - scipy.special.gammaln(counts + 1.0)
    saturated = float(np.sum(poisson))
    if model.config.nauxdata:
        aux = np.asarray(data[n_main:], dtype=float)
        # the constraint terms are maximal with every parameter at its auxiliary measurement
        # (for custom auxiliary data that differs from the nominal centres)
        pars = _aux_maximising_parameters(model, aux)
        pars = np.where(np.isnan(pars), model.config.suggested_init(), pars)
        saturated += float(np.sum(model.constraint_logpdf(aux, pars)))
    chi2 = max(twice_nll + 2.0 * saturated, 0.0)
    free = model_utils.free_mask(model)
    constrained = ~np.isnan(model_utils.constraint_centres(model))
    ndof = int(n_main - np.count_nonzero(free & ~constrained))
    p_value = float(scipy.stats.chi2.sf(chi2, ndof)) if ndof > 0 else None
    return GoodnessOfFit(chi2, ndof, p_value)


def _aux_maximising_parameters(model: Any, aux: np.ndarray) -> np.ndarray:
    """Per parameter, the value that maximises its constraint for the given auxiliary data."""
    pars = np.full(model.config.npars, np.nan)
    for name, aux_slice in zip(model.config.auxdata_order, _aux_slices(model), strict=True):
        param_set = model.config.param_set(name)
        values = aux[aux_slice]
        if param_set.pdf_type == "poisson":
            values = values / np.asarray(param_set.factors, dtype=float)
        pars[model.config.par_slice(name)] = values
    return pars


def _aux_slices(model: Any) -> list[slice]:
    """The slice of each constrained parameter set's auxiliary data, in ``auxdata_order``."""
    slices, offset = [], 0
    for name in model.config.auxdata_order:
        size = model.config.param_set(name).n_parameters
        slices.append(slice(offset, offset + size))
        offset += size
    return slices
