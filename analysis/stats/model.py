"""The statistical model of the inference stages: a pyhf workspace, its model, data and Asimov data.

Every inference stage (fit, pulls, ranking, scan, significance, limits) starts here, so they all fit
the same likelihood: the workspace (ours, or any published pyhf JSON workspace), optionally patched
with a signal hypothesis (a pyhf PatchSet entry as on HEPData, or a plain RFC 6902 JSON patch), the
measurement's or the configured parameters of interest, and observed or Asimov data.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jsonpatch
import numpy as np
import pyhf

from analysis.core.errors import AnalysisError
from analysis.core.io import read_json

# The numpy backend evaluates a model in a few hundred microseconds and needs no compilation; the
# fits use iminuit directly or through pyhf's minuit optimizer (set where it is used).
pyhf.set_backend("numpy")


class ModelSettings(NamedTuple):
    """What selects the likelihood: patch, measurement, POIs, data and interpolation codes."""

    pois: tuple[str, ...] = ()
    asimov: bool = False
    measurement: str | None = None
    patch: str | None = None
    patch_name: str | None = None
    interpolation: Mapping[str, str] = {"normsys": "code4", "histosys": "code4p"}
    #: False: POIs the workspace lacks are left out (a goodness-of-fit test of a region without
    #: signal fits no signal strength); True: a missing POI is an error
    require_pois: bool = True


class Setup(NamedTuple):
    """A model ready to fit: the pyhf model (POI = first POI), its data and the POIs."""

    model: pyhf.pdf.Model
    data: np.ndarray
    pois: tuple[str, ...]
    asimov: bool
    digest: str


def model_settings(settings: Mapping[str, Any]) -> ModelSettings:
    """The model settings from a stage's settings mapping (the config's ``inference`` section).

    Args:
        settings: mapping with any of the :class:`ModelSettings` fields; missing ones default.

    Returns:
        The settings, with ``pois`` as a tuple.
    """
    fields = {key: settings[key] for key in ModelSettings._fields if settings.get(key) is not None}
    fields["pois"] = tuple(fields.get("pois", ()))
    return ModelSettings(**fields)


def load_workspace(
    path: str | os.PathLike[str], patch: str | None = None, patch_name: str | None = None
) -> pyhf.Workspace:
    """Read and validate a pyhf JSON workspace, applying a signal patch when one is given.

    Args:
        path: the workspace JSON file.
        patch: a pyhf PatchSet file (as published on HEPData), a single pyhf patch
            (``{"metadata": ..., "patch": [...]}``) or a plain JSON patch (a list of operations).
        patch_name: which patch of a PatchSet to apply (may be omitted for a one-patch set).

    Returns:
        The validated, patched workspace.

    Raises:
        AnalysisError: the file is missing, not JSON, not a valid workspace, or the patch does not
            apply.
    """
    spec = read_json(path)
    if not isinstance(spec, dict) or "channels" not in spec:
        raise AnalysisError(
            f"{path}: not a pyhf workspace (no 'channels'); point inference.external_workspace "
            "at a workspace JSON (a HEPData likelihood's background-only file)"
        )
    if patch is not None:
        spec = _apply_patch(spec, path, patch, patch_name)
    try:
        return pyhf.Workspace(spec)
    except pyhf.exceptions.InvalidSpecification as err:
        raise AnalysisError(
            f"{path}: not a valid pyhf workspace ({_first_line(err)}); check the file or patch"
        ) from None


def _apply_patch(spec: dict, path: str | os.PathLike[str], patch: str, name: str | None) -> dict:
    """The workspace spec with the patch applied (PatchSet entry, pyhf patch or JSON patch)."""
    document = read_json(patch)
    if isinstance(document, dict) and "patches" in document:
        try:
            patchset = pyhf.PatchSet(document)
        except pyhf.exceptions.InvalidSpecification as err:
            raise AnalysisError(
                f"{patch}: not a valid pyhf PatchSet ({_first_line(err)})"
            ) from None
        names = [entry.name for entry in patchset]
        if name is None:
            if len(names) != 1:
                raise AnalysisError(
                    f"{patch}: a PatchSet of {len(names)} patches; set inference.patch_name to "
                    f"one of them (e.g. {names[0]!r})"
                )
            name = names[0]
        if name not in names:
            raise AnalysisError(
                f"{patch}: no patch named {name!r}; inference.patch_name must be one of "
                f"{', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
            )
        try:
            patchset.verify(spec)
        except pyhf.exceptions.PatchSetVerificationError:
            raise AnalysisError(
                f"{patch}: made for another background-only workspace than {path} (digest "
                "differs); use the workspace published with this PatchSet"
            ) from None
        operations = list(patchset[name].patch)
    elif isinstance(document, dict) and "patch" in document:
        operations = document["patch"]
    elif isinstance(document, list):
        operations = document
    else:
        raise AnalysisError(
            f"{patch}: neither a pyhf PatchSet nor a JSON patch (a list of operations)"
        )
    try:
        return jsonpatch.apply_patch(spec, operations)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as err:
        raise AnalysisError(f"{patch}: does not apply to {path} ({err})") from None


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def build(workspace: pyhf.Workspace, settings: ModelSettings, source: str = "workspace") -> Setup:
    """The model, data and POIs the stages fit.

    Args:
        workspace: the (patched) workspace.
        settings: measurement, POIs, Asimov flag and interpolation codes.
        source: the workspace's file, named in errors.

    Returns:
        The setup; the model's POI is the first POI (the others are free parameters in every fit).

    Raises:
        AnalysisError: unknown measurement or POI, or a POI that is not a single free parameter.
    """
    measurements = list(workspace.measurement_names)
    if not measurements:
        raise AnalysisError(f"{source}: has no measurement; add one to the workspace")
    measurement = settings.measurement or measurements[0]
    if measurement not in measurements:
        raise AnalysisError(
            f"{source}: no measurement {measurement!r} (inference.measurement); it has "
            f"{', '.join(measurements)}"
        )
    config = workspace.get_measurement(measurement_name=measurement)["config"]
    pois = settings.pois or (config["poi"],)
    modifier_settings = {
        modifier: {"interpcode": code} for modifier, code in settings.interpolation.items()
    }
    model = workspace.model(
        measurement_name=measurement, modifier_settings=modifier_settings, poi_name=None
    )
    if not settings.require_pois:
        pois = tuple(poi for poi in pois if poi in model.config.parameters)
    for poi in pois:
        if poi not in model.config.parameters:
            raise AnalysisError(
                f"{source}: no parameter {poi!r} to use as POI (inference.pois); free "
                f"normalisations are {', '.join(_normfactors(model)) or 'none'}"
            )
        if model.config.param_set(poi).n_parameters != 1:
            raise AnalysisError(
                f"{source}: {poi!r} has several bins and cannot be a POI (inference.pois)"
            )
    if pois:
        model.config.set_poi(pois[0])
    if settings.asimov:
        data = asimov_data(model)
    else:
        try:
            data = np.asarray(workspace.data(model), dtype=float)
        except (KeyError, pyhf.exceptions.InvalidWorkspaceOperation) as err:
            raise AnalysisError(
                f"{source}: no observed data for every channel ({err}); set inference.asimov "
                "to fit Asimov data"
            ) from None
    return Setup(model, data, tuple(pois), settings.asimov, pyhf.utils.digest(dict(workspace)))


def setup_from_files(workspace: str | os.PathLike[str], settings: Mapping[str, Any]) -> Setup:
    """Load, patch and build in one go, as every stage's command line does.

    Args:
        workspace: the workspace JSON file.
        settings: the config's ``inference`` section (plus ``patch``/``patch_name``).

    Returns:
        The setup to fit.
    """
    parsed = model_settings(settings)
    loaded = load_workspace(workspace, parsed.patch, parsed.patch_name)
    return build(loaded, parsed, source=str(Path(workspace)))


def _normfactors(model: pyhf.pdf.Model) -> list[str]:
    return [name for name, kind in model.config.modifiers if kind == "normfactor"]


def asimov_data(model: pyhf.pdf.Model) -> np.ndarray:
    """Asimov data (main bins and auxiliary data) at the pre-fit expectation.

    Constrained parameters sit at the centre of their constraint (what the auxiliary data say),
    free parameters (POIs, free normalisations) at their initial value in the workspace.
    """
    return np.asarray(model.expected_data(asimov_parameters(model)), dtype=float)


def asimov_parameters(model: pyhf.pdf.Model) -> np.ndarray:
    """Parameter values that generate the Asimov data (see :func:`asimov_data`)."""
    centres = constraint_centres(model)
    inits = np.asarray(model.config.suggested_init(), dtype=float)
    return np.where(np.isnan(centres), inits, centres)


def constraint_centres(model: pyhf.pdf.Model) -> np.ndarray:
    """Per parameter, the value that maximises its constraint term (NaN when unconstrained).

    For a Gaussian constraint that is its auxiliary datum, for a Poisson constraint (shapesys) the
    auxiliary datum over its scale factor: 0 for normsys/histosys, 1 for staterror/shapesys and the
    measurement's nominal value for the luminosity.
    """
    centres = np.full(model.config.npars, np.nan)
    for name in model.config.par_order:
        param_set = model.config.param_set(name)
        if not param_set.constrained:
            continue
        aux = np.asarray(param_set.auxdata, dtype=float)
        if param_set.pdf_type == "poisson":
            aux = aux / np.asarray(param_set.factors, dtype=float)
        centres[model.config.par_slice(name)] = aux
    return centres


def prefit_uncertainties(model: pyhf.pdf.Model, include_fixed: bool = False) -> np.ndarray:
    """Per parameter, the width of its constraint (0 for free parameters, and for fixed ones
    unless ``include_fixed``)."""
    widths = np.zeros(model.config.npars)
    for name in model.config.par_order:
        param_set = model.config.param_set(name)
        if param_set.constrained:
            width = np.asarray(param_set.width(), dtype=float)
            if not include_fixed:
                width = np.where(param_set.suggested_fixed, 0.0, width)
            widths[model.config.par_slice(name)] = width
    return widths


def modifier_types(model: pyhf.pdf.Model) -> list[str]:
    """Per parameter (in ``par_names`` order), the modifier type behind it, e.g. ``staterror``."""
    kinds = dict(model.config.modifiers)
    return [
        kinds[name]
        for name in model.config.par_order
        for _ in range(model.config.param_set(name).n_parameters)
    ]


def parameter_index(model: pyhf.pdf.Model, name: str, what: str = "parameter") -> int:
    """The index of a parameter label (``name`` or ``name[i]``) in ``par_names``.

    Raises:
        AnalysisError: no such parameter.
    """
    try:
        return model.config.par_names.index(name)
    except ValueError:
        raise AnalysisError(
            f"no {what} {name!r} in the model; parameters are "
            f"{', '.join(model.config.par_names[:8])}{' ...' if model.config.npars > 8 else ''}"
        ) from None


def matches_any(label: str, patterns: Sequence[str]) -> bool:
    """Whether a parameter label matches one of the glob ``patterns`` (``staterror_*``; a bin of a
    staterror or shapesys is labelled ``name[i]``)."""
    return any(fnmatch.fnmatchcase(label, pattern) for pattern in patterns)


def free_mask(model: pyhf.pdf.Model, fixed: Sequence[bool] | None = None) -> np.ndarray:
    """True for parameters that float in a fit (neither fixed in the workspace nor here)."""
    suggested = np.asarray(model.config.suggested_fixed(), dtype=bool)
    return ~(suggested | np.asarray(fixed, dtype=bool)) if fixed is not None else ~suggested
