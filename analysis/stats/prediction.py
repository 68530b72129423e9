"""Pre- and post-fit expected yields of every channel and sample, with their uncertainties.

What the stacks and yields tables draw: the model is built from the workspace as the inference
stages build it (the same ``inference`` settings: patch, measurement, interpolation codes), so the
yields and bands belong to the fitted likelihood.

Uncertainties propagate the full correlated covariance (the constraints' widths pre-fit, the fit's
covariance post-fit): the expected yields are linearised around the parameters (central finite
differences of pyhf's ``expected_data``, the Jacobian J) and the uncertainty of any sum of yields
is sqrt(w J C J^T w^T), so anticorrelated parameters shrink it as they should, unlike a sum of the
parameters' effects in quadrature.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import pyhf

from analysis.core.errors import AnalysisError
from analysis.stats import model as model_utils
from analysis.stats.results import FitResults

#: Finite-difference step of the Jacobian, in units of each parameter's uncertainty: small
#: enough to stay in the linear regime of pyhf's interpolation, large enough for float noise.
JACOBIAN_STEP = 0.05


class Prediction(NamedTuple):
    """Expected yields of a model at some parameters, with their linearised uncertainties.

    ``yields`` is (samples x bins, all channels concatenated), ``jacobian`` is
    (samples x bins x parameters) and ``covariance`` the parameters' covariance.
    """

    samples: list[str]
    yields: np.ndarray
    jacobian: np.ndarray
    covariance: np.ndarray

    def uncertainty(self, weights: np.ndarray) -> np.ndarray:
        """Uncertainty of linear combinations of the yields: ``weights`` (k x samples x bins)
        gives k combinations (a bin's total, a channel's sum, ...), each with the full
        covariance."""
        gradients = np.einsum("ksb,sbp->kp", weights, self.jacobian)
        variance = np.einsum("kp,pq,kq->k", gradients, self.covariance, gradients)
        return np.sqrt(np.clip(variance, 0.0, None))


class ChannelYields(NamedTuple):
    """One channel's expected yields and their uncertainties.

    ``yields`` is (samples x bins); ``band`` the uncertainty of each bin's total; ``sums`` each
    sample's yield summed over the bins followed by the channel's total, ``sum_uncertainties``
    their uncertainties.
    """

    samples: list[str]
    yields: np.ndarray
    band: np.ndarray
    sums: np.ndarray
    sum_uncertainties: np.ndarray


class PrePostFit(NamedTuple):
    """Pre- and post-fit yields by channel, and the observed counts by channel (None for a fit
    of Asimov data or a workspace without observations)."""

    prefit: dict[str, ChannelYields]
    postfit: dict[str, ChannelYields]
    observed: dict[str, np.ndarray] | None


def prefit_postfit(
    workspace_path: str | os.PathLike[str],
    fit: FitResults,
    settings: Mapping[str, Any] | None = None,
    source: str = "fit.json",
) -> PrePostFit:
    """Pre- and post-fit yields of every channel of a fitted workspace.

    Args:
        workspace_path: the pyhf workspace that was fitted.
        fit: its nominal fit.
        settings: the config's ``inference`` section the fit was made with.
        source: the fit's file, named in errors.

    Raises:
        AnalysisError: the fit lacks a parameter of the model (made on another workspace).
    """
    model, observed = load_model(workspace_path, settings)
    slices = channel_slices(model)
    nbins = model.config.nmaindata
    prefit = predict(model, *prefit_parameters(model))
    postfit = predict(model, *fitted_parameters(model, fit, source))
    return PrePostFit(
        {channel: _channel(prefit, bins, nbins) for channel, bins in slices.items()},
        {channel: _channel(postfit, bins, nbins) for channel, bins in slices.items()},
        None if fit.asimov or observed is None else {c: observed[b] for c, b in slices.items()},
    )


def _channel(prediction: Prediction, bins: slice, nbins: int) -> ChannelYields:
    """The yields of one channel's bins, with the uncertainties of each bin's total and of each
    sample's (and all samples') sum over the channel."""
    width, n_samples = bins.stop - bins.start, len(prediction.samples)
    per_bin = np.zeros((width, n_samples, nbins))
    for k in range(width):
        per_bin[k, :, bins.start + k] = 1.0
    per_sample = np.zeros((n_samples + 1, n_samples, nbins))
    for i in range(n_samples):
        per_sample[i, i, bins] = 1.0
    per_sample[-1, :, bins] = 1.0
    return ChannelYields(
        prediction.samples,
        prediction.yields[:, bins],
        prediction.uncertainty(per_bin),
        np.einsum("ksb,sb->k", per_sample, prediction.yields),
        prediction.uncertainty(per_sample),
    )


def load_model(
    workspace_path: str | os.PathLike[str], settings: Mapping[str, Any] | None = None
) -> tuple[pyhf.pdf.Model, np.ndarray | None]:
    """The model the inference stages fit and the workspace's observed main-bin counts.

    Args:
        workspace_path: the pyhf workspace that was fitted.
        settings: the config's ``inference`` section (patch, measurement, POIs, interpolation
            codes); the stages' defaults when absent.

    Returns:
        The model, and the observed counts of its channels concatenated (None when the workspace
        has no observations).
    """
    parsed = model_utils.model_settings(settings or {})
    workspace = model_utils.load_workspace(workspace_path, parsed.patch, parsed.patch_name)
    # Asimov here only spares needing observations: the data of the setup are not used
    model = model_utils.build(workspace, parsed._replace(asimov=True), str(workspace_path)).model
    try:
        observed = np.asarray(workspace.data(model, include_auxdata=False), dtype=float)
    except (KeyError, pyhf.exceptions.InvalidWorkspaceOperation):
        observed = None
    return model, observed


def prefit_parameters(model: pyhf.pdf.Model) -> tuple[np.ndarray, np.ndarray]:
    """Initial values and the pre-fit (diagonal) covariance: constrained parameters with their
    prior width, free ones (POIs, free normalisations) with zero width, as in a pre-fit band."""
    values = np.asarray(model.config.suggested_init(), dtype=float)
    widths = model_utils.prefit_uncertainties(model, include_fixed=True)
    return values, np.diag(widths**2)


def fitted_parameters(
    model: pyhf.pdf.Model, fit: FitResults, source: str = "fit.json"
) -> tuple[np.ndarray, np.ndarray]:
    """Best-fit values and full covariance of a fit, in the model's parameter order.

    Raises:
        AnalysisError: the fit lacks a parameter of the model.
    """
    names = model.config.par_names
    missing = [name for name in names if name not in fit.labels]
    if missing:
        raise AnalysisError(
            f"{source}: no best-fit value of {missing[0]!r}; the fit was made on another "
            "workspace, rerun the fit"
        )
    order = {label: index for index, label in enumerate(fit.labels)}
    index = np.asarray([order[name] for name in names])
    sigmas = fit.uncertainties[index]
    correlation = fit.correlation[np.ix_(index, index)]
    return fit.values[index], correlation * np.outer(sigmas, sigmas)


def predict(model: pyhf.pdf.Model, values: np.ndarray, covariance: np.ndarray) -> Prediction:
    """Per-sample expected yields at ``values`` and their Jacobian (central differences)."""

    def expected(parameters: np.ndarray) -> np.ndarray:
        return np.asarray(
            model.main_model.expected_data(parameters, return_by_sample=True), dtype=float
        )

    yields = expected(values)
    sigmas = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    jacobian = np.zeros((*yields.shape, len(values)))
    for index in np.flatnonzero(sigmas > 0):
        step = JACOBIAN_STEP * sigmas[index]
        shift = np.zeros_like(values)
        shift[index] = step
        jacobian[..., index] = (expected(values + shift) - expected(values - shift)) / (2 * step)
    return Prediction(list(model.config.samples), yields, jacobian, covariance)


def channel_slices(model: pyhf.pdf.Model) -> dict[str, slice]:
    """Bins of each channel in the concatenated main-model bins."""
    return {name: model.config.channel_slices[name] for name in model.config.channels}
