"""Typed containers of the statistics results (``results/fit/``), each with ``write`` and ``read``.

One frozen dataclass per file: the nominal fit (``fit.json``), the pulls (``pulls.json``), a ranking
chunk (``ranking/chunk_<i>.json``) and the merged ranking (``ranking.json``), a scan chunk
(``scan/<scan>/chunk_<i>.json``), the 1D and 2D scans (``scan_<poi>.json``, ``scan2d.json``), the
significance (``significance.json``) and the limits (``limits.json``); and the goodness-of-fit
tests of the input variables (``results/gof/chunk_<i>.json``, ``gof.json``). Their entries (a
pull, an impact, a scan point, ...) are NamedTuples whose fields are the JSON keys.

Every stage writes its file with ``write`` and every reader (later stages, the figures, the
workflow) uses ``read``, which checks that every key is there with the right type: a missing or
malformed file is one :class:`AnalysisError` line naming the file and the stage to rerun.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, TypeVar

import numpy as np

from analysis.core.errors import AnalysisError
from analysis.core.io import read_json, write_json
from analysis.core.provenance import GitState

# --- entries -------------------------------------------------------------------------------------


class Attempt(NamedTuple):
    """One MIGRAD run of the fit's fallback chain."""

    strategy: int
    tolerance: float
    start: str
    valid: bool
    edm: float
    twice_nll: float


class Provenance(NamedTuple):
    """What made a result besides its inputs: the git state of the code (None outside a git
    checkout) and a digest of the settings the stage received."""

    git: GitState | None
    settings_sha256: str


class GoodnessOfFit(NamedTuple):
    """Saturated-model goodness of fit: chi2 = 2 (NLL - NLL_saturated) with ndof degrees, its
    asymptotic p-value (None without degrees of freedom) and its p-value from ``toys`` toys of
    the post-fit model (None without toys), ``toy_fallbacks`` of them refitted by MINUIT."""

    chi2: float
    ndof: int
    p_value: float | None
    toys: int = 0
    toy_p_value: float | None = None
    toy_fallbacks: int = 0


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


class Impact(NamedTuple):
    """A parameter's fit result and its four impacts on the POI."""

    parameter: str
    modifier: str
    value: float
    uncertainty: float
    prefit_uncertainty: float
    pull: float | None
    constraint: float | None
    impact_prefit_up: float
    impact_prefit_down: float
    impact_postfit_up: float
    impact_postfit_down: float
    clipped: tuple[str, ...]
    converged: bool

    @property
    def total_postfit(self) -> float:
        """The ranking key: mean absolute post-fit impact."""
        return 0.5 * (abs(self.impact_postfit_up) + abs(self.impact_postfit_down))


class ScanPoint(NamedTuple):
    """One profiled point: the fixed values, -2 log L at the conditional minimum, convergence."""

    values: tuple[float, ...]
    twice_nll: float
    converged: bool


class Significance(NamedTuple):
    """Observed and expected discovery p-values and significances of one POI."""

    poi: str
    observed_p_value: float
    observed_significance: float
    expected_p_value: float
    expected_significance: float


class Limit(NamedTuple):
    """CLs upper limits of one POI: observed, and the expected median with its band edges."""

    observed: float
    expected_minus2sigma: float
    expected_minus1sigma: float
    expected: float
    expected_plus1sigma: float
    expected_plus2sigma: float

    @property
    def expected_band(self) -> tuple[float, float, float, float, float]:
        """The expected limits from -2 to +2 sigma (the median in the middle)."""
        return self[1:]


class GofDistribution(NamedTuple):
    """A single-variable test's histogram before and after its fit (``gof.json``), what its
    pre-/post-fit figures draw: the variable's bin edges, each sample's yield per bin (pre-fit:
    every parameter at its initial value; post-fit: at the test's best fit), the uncertainty of
    each bin's total (pre-fit: the constraints' widths; post-fit: the fit's covariance), and the
    fitted counts (None unless ``gof.data`` is ``observed``), and which bins the test fitted:
    a bin without any prediction, or blinded (a control region tested while the analysis is
    blinded), is left out and has zero yields and counts here."""

    edges: tuple[float, ...]
    fitted: tuple[bool, ...]
    samples: tuple[str, ...]
    prefit: tuple[tuple[float, ...], ...]
    prefit_band: tuple[float, ...]
    postfit: tuple[tuple[float, ...], ...]
    postfit_band: tuple[float, ...]
    data: tuple[float, ...] | None


class GofTest(NamedTuple):
    """One saturated goodness-of-fit test of input variables (``gof.json``): one variable (1D)
    or a pair on the product binning (2D), its statistic, its p-values from toys and from the
    asymptotic chi2 distribution (None without degrees of freedom), and for a single variable
    its pre- and post-fit histogram."""

    variables: tuple[str, ...]
    bins: int
    chi2: float
    ndof: int
    p_value: float
    p_value_asymptotic: float | None
    toys: int
    fallbacks: int
    seed: int
    distribution: GofDistribution | None = None


# --- files ---------------------------------------------------------------------------------------

R = TypeVar("R", bound="ResultsFile")


class ResultsFile:
    """``write``/``read`` of a results file; by default its JSON object has one key per field."""

    #: What the file holds and the stage that writes it, for the read errors.
    what: ClassVar[str]
    stage: ClassVar[str]

    def to_json(self) -> Any:
        """The file's JSON content."""
        return {field.name: _json(getattr(self, field.name)) for field in dataclasses.fields(self)}

    @classmethod
    def from_json(cls: type[R], document: Any) -> R:
        """The container of a JSON document, every key present and of its type."""
        document = _object(document, cls.what)
        return _checked(cls, document)

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the file atomically, with sorted keys."""
        write_json(path, self.to_json())

    @classmethod
    def read(cls: type[R], path: str | os.PathLike[str]) -> R:
        """Read the file back.

        Raises:
            AnalysisError: the file is missing or not JSON, or a key is missing or of a wrong
                type.
        """
        document = read_json(path)
        try:
            return cls.from_json(document)
        except (KeyError, TypeError, ValueError) as err:
            reason = f"no {err.args[0]!r}" if isinstance(err, KeyError) else str(err)
            reason = (reason.strip().splitlines() or [type(err).__name__])[0]
            raise AnalysisError(
                f"{path}: not a valid {cls.what} ({reason}); rerun the {cls.stage} stage"
            ) from None


@dataclass(frozen=True, eq=False)
class FitResults(ResultsFile):
    """The nominal fit (``fit.json``): best fit, HESSE uncertainties and correlations, quality.

    ``labels``, ``values``, ``uncertainties`` and ``correlation`` are in the model's parameter
    order; the file holds them as ``bestfit`` {label: [value, uncertainty]} and ``correlation``
    {``parameters``, ``matrix``}, the MIGRAD attempts as ``minuit``.
    """

    what: ClassVar[str] = "fit result"
    stage: ClassVar[str] = "fit"

    poi: str
    pois: tuple[str, ...]
    asimov: bool
    converged: bool
    twice_nll: float
    labels: tuple[str, ...]
    values: np.ndarray
    uncertainties: np.ndarray
    correlation: np.ndarray
    fixed: tuple[str, ...]
    goodness_of_fit: GoodnessOfFit
    attempts: tuple[Attempt, ...]
    workspace_sha256: str
    versions: dict[str, str | None]
    provenance: Provenance | None = None  # None: not recorded (a fit.json of an older version)

    @functools.cached_property
    def covariance(self) -> np.ndarray:
        """The covariance, corr_ij sigma_i sigma_j (zero rows for fixed parameters)."""
        return self.correlation * np.outer(self.uncertainties, self.uncertainties)

    def bestfit(self, label: str) -> tuple[float, float]:
        """Best-fit value and uncertainty of one parameter."""
        index = self.labels.index(label)
        return float(self.values[index]), float(self.uncertainties[index])

    def to_json(self) -> dict[str, Any]:
        pairs = zip(self.labels, self.values, self.uncertainties, strict=True)
        return {
            "poi": self.poi,
            "pois": list(self.pois),
            "asimov": self.asimov,
            "converged": self.converged,
            "twice_nll": self.twice_nll,
            "bestfit": {label: [float(value), float(error)] for label, value, error in pairs},
            "correlation": {"parameters": list(self.labels), "matrix": self.correlation.tolist()},
            "fixed": list(self.fixed),
            "goodness_of_fit": self.goodness_of_fit._asdict(),
            "minuit": [attempt._asdict() for attempt in self.attempts],
            "workspace_sha256": self.workspace_sha256,
            "versions": dict(self.versions),
            "provenance": _json(self.provenance),
        }

    @classmethod
    def from_json(cls, document: Any) -> FitResults:
        document = {"provenance": None, **_object(document, cls.what)}
        correlation = _object(document["correlation"], "correlation")
        labels = _typed(correlation["parameters"], tuple[str, ...], "correlation parameters")
        matrix = np.asarray(_typed(correlation["matrix"], np.ndarray, "correlation matrix"))
        if matrix.shape != (len(labels), len(labels)):
            raise ValueError(f"a {matrix.shape} correlation matrix for {len(labels)} parameters")
        bestfit = _typed(document["bestfit"], dict[str, tuple[float, float]], "bestfit")
        if set(bestfit) != set(labels):
            raise ValueError("'bestfit' and 'correlation' name different parameters")
        fields = {
            "labels": labels,
            "values": np.asarray([bestfit[label][0] for label in labels], dtype=float),
            "uncertainties": np.asarray([bestfit[label][1] for label in labels], dtype=float),
            "correlation": matrix,
            "attempts": _typed(document["minuit"], tuple[Attempt, ...], "minuit"),
        }
        plain = [field.name for field in dataclasses.fields(cls) if field.name not in fields]
        unknown = sorted(set(document) - {*plain, "bestfit", "correlation", "minuit"})
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r}")
        hints = _hints(cls)
        fields.update({name: _typed(document[name], hints[name], name) for name in plain})
        return cls(**fields)


@dataclass(frozen=True, eq=False)
class PullsResults(ResultsFile):
    """Pulls and constraints (``pulls.json``); free parameters listed apart."""

    what: ClassVar[str] = "pulls record"
    stage: ClassVar[str] = "pulls"

    poi: str
    asimov: bool
    constrained: tuple[Pull, ...]
    unconstrained: tuple[FreeParameter, ...]


@dataclass(frozen=True, eq=False)
class RankingChunk(ResultsFile):
    """Impacts of one chunk of the ranked parameters (``ranking/chunk_<i>.json``), with the number
    of refits they took and how many of those the batched refits left to MINUIT (``fallbacks``)."""

    what: ClassVar[str] = "ranking chunk"
    stage: ClassVar[str] = "ranking"

    poi: str
    chunk: int
    n_ranked: int
    impacts: tuple[Impact, ...]
    refits: int
    fallbacks: int


@dataclass(frozen=True, eq=False)
class RankingResults(ResultsFile):
    """The ranking (``ranking.json``): a list of impacts, by decreasing total post-fit impact."""

    what: ClassVar[str] = "ranking"
    stage: ClassVar[str] = "ranking"

    impacts: tuple[Impact, ...]

    def to_json(self) -> list[dict[str, Any]]:
        return [_json(impact) for impact in self.impacts]

    @classmethod
    def from_json(cls, document: Any) -> RankingResults:
        return cls(_typed(document, tuple[Impact, ...], "ranking"))


@dataclass(frozen=True, eq=False)
class ScanChunk(ResultsFile):
    """Profiled points of one chunk of a scan (``scan/<scan>/chunk_<i>.json``)."""

    what: ClassVar[str] = "scan chunk"
    stage: ClassVar[str] = "scan"

    parameters: tuple[str, ...]
    chunk: int
    n_points: int
    points: tuple[ScanPoint, ...]


@dataclass(frozen=True, eq=False)
class ScanResults(ResultsFile):
    """A 1D profile-likelihood scan (``scan_<poi>.json``) with its 68% and 95% intervals (an end
    the curve does not cross within the scanned range is None)."""

    what: ClassVar[str] = "scan"
    stage: ClassVar[str] = "scan"

    poi: str
    bestfit: tuple[float, float]
    values: tuple[float, ...]
    delta_twice_nll: tuple[float, ...]
    converged: bool
    interval_68: tuple[float | None, float | None]
    interval_95: tuple[float | None, float | None]


@dataclass(frozen=True, eq=False)
class Scan2DResults(ResultsFile):
    """A 2D scan of two POIs (``scan2d.json``): ``delta_twice_nll[i][j]`` at ``x[i]``, ``y[j]``."""

    what: ClassVar[str] = "2D scan"
    stage: ClassVar[str] = "scan"

    pois: tuple[str, str]
    x: tuple[float, ...]
    y: tuple[float, ...]
    delta_twice_nll: np.ndarray
    bestfit: dict[str, tuple[float, float]]
    converged: bool


@dataclass(frozen=True, eq=False)
class SignificanceResults(ResultsFile):
    """Discovery significance of each POI (``significance.json``), asymptotic q0 test."""

    what: ClassVar[str] = "significance record"
    stage: ClassVar[str] = "significance"

    asimov: bool
    pois: dict[str, Significance]
    refits: int = 0  # conditional fits made
    fallbacks: int = 0  # of them, those the Newton refits left to MINUIT
    test_statistic: str = "q0"
    calculator: str = "asymptotics"


@dataclass(frozen=True, eq=False)
class LimitResults(ResultsFile):
    """CLs upper limits of each POI (``limits.json``), asymptotic qtilde test."""

    what: ClassVar[str] = "limits record"
    stage: ClassVar[str] = "limits"

    asimov: bool
    confidence_level: float | None
    pois: dict[str, Limit]
    refits: int = 0  # conditional fits made
    fallbacks: int = 0  # of them, those the Newton refits left to MINUIT
    test_statistic: str = "qtilde"
    calculator: str = "asymptotics"


@dataclass(frozen=True, eq=False)
class GofChunk(ResultsFile):
    """Goodness-of-fit tests of one chunk of the input variables (``gof/chunk_<i>.json``); ``data``
    is ``observed`` or ``asimov`` (the closure while blinded)."""

    what: ClassVar[str] = "goodness-of-fit chunk"
    stage: ClassVar[str] = "gof"

    data: str
    chunk: int
    n_tests: int
    tests: tuple[GofTest, ...]


@dataclass(frozen=True, eq=False)
class GofResults(ResultsFile):
    """The goodness-of-fit tests of the input variables (``gof.json``) and their summary: the
    fraction of tests with a toy p-value below 5%, the Kolmogorov-Smirnov p-value of the
    hypothesis that the toy p-values are uniform, and how many toys of all tests MINUIT
    refitted."""

    what: ClassVar[str] = "goodness-of-fit summary"
    stage: ClassVar[str] = "gof"

    data: str
    tests: tuple[GofTest, ...]
    fraction_below_5_percent: float
    uniformity_p_value: float
    fallbacks: int = 0


# --- JSON <-> typed values -----------------------------------------------------------------------


def _json(value: Any) -> Any:
    """A field's JSON value: entries as objects, tuples as lists, arrays as nested lists."""
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return {key: _json(item) for key, item in value._asdict().items()}
    if isinstance(value, tuple | list):
        return [_json(item) for item in value]
    if isinstance(value, dict):
        return {key: _json(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _checked(cls: type, document: Mapping[str, Any]) -> Any:
    """``cls`` (a NamedTuple entry or a dataclass) from an object with exactly its fields."""
    names = cls._fields if hasattr(cls, "_fields") else [f.name for f in dataclasses.fields(cls)]
    missing = [name for name in names if name not in document]
    if missing:
        raise KeyError(missing[0])
    unknown = sorted(set(document) - set(names))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}")
    hints = _hints(cls)
    return cls(**{name: _typed(document[name], hints[name], name) for name in names})


def _object(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{name!r} is not a JSON object")
    return value


def _typed(value: Any, hint: Any, name: str) -> Any:
    """``value`` read from JSON as the type ``hint``, or TypeError/ValueError naming ``name``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is types.UnionType:  # X | None
        return None if value is None else _typed(value, args[0], name)
    if origin is tuple:
        if not isinstance(value, list):
            raise TypeError(f"{name!r} is not a list")
        kinds = args[:1] * len(value) if args[-1] is Ellipsis else args
        if len(kinds) != len(value):
            raise ValueError(f"{name!r} has {len(value)} entries, not {len(kinds)}")
        return tuple(_typed(item, kind, name) for item, kind in zip(value, kinds, strict=True))
    if origin is dict:
        return {key: _typed(item, args[1], name) for key, item in _object(value, name).items()}
    if hint is np.ndarray:
        array = np.asarray(value)
        if array.dtype.kind not in "iuf":
            raise TypeError(f"{name!r} is not an array of numbers")
        return array.astype(float)
    if isinstance(hint, type) and issubclass(hint, tuple):  # an entry
        return _checked(hint, _object(value, name))
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, hint) and (hint is bool or not isinstance(value, bool)):
        return value
    raise TypeError(f"{name!r} is not a {hint.__name__}")
