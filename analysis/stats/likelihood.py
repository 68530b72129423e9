"""Twice the negative log-likelihood of a HistFactory model, for a batch of points, in torch.

pyhf's numpy model evaluates -2 log L at one point and without derivatives. :class:`Likelihood`
rebuilds the same function from the pyhf model's specification (its channels, samples, modifiers,
parameter layout, constraint widths and auxiliary data) as a few tensor operations on a batch of
parameter vectors, one row each: :meth:`Likelihood.values` for a line search, and
:meth:`Likelihood.derivatives` with exact gradients and Hessians (:mod:`analysis.stats.hessian`).
Rows never mix, so a point's numbers do not depend on the points batched with it. The data are
one data set for every row (the fit, the ranking's refits, the scans) or one data set per row
(toys: ``data`` of shape ``(k, main + aux)``); :meth:`Likelihood.for_rows` then gives the
likelihood of a subset of the rows.

A cell is a sample in a bin. Its expected rate is pyhf's: (nominal + the histosys deltas) times
the multiplicative modifiers (normfactor, lumi, staterror, shapesys, shapefactor, and the normsys
factors, multiplied as exp(sum of logs)). Interpolation codes: normsys ``code1``/``code4``,
histosys ``code0``/``code2``/``code4p``, pyhf's definitions (written as ``u(alpha) * delta_up +
v(alpha) * delta_down`` for histosys). :func:`build` returns None for a model with anything else,
and the callers then use MINUIT. The tests hold it to pyhf's ``logpdf`` to 1e-10."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

#: Interpolation codes this module implements, per modifier type.
CODES = {"normsys": ("code1", "code4"), "histosys": ("code0", "code2", "code4p")}

#: pyhf's code4 polynomial (alpha0 = 1): a_1..a_6 = A^-1 b, with b the values, slopes and second
#: derivatives of the exponential extrapolations at +-1 (see pyhf.interpolators.code4).
_CODE4_INVERSE = np.array(
    [
        [15 / 16, -15 / 16, -7 / 16, -7 / 16, 1 / 16, -1 / 16],
        [3 / 2, 3 / 2, -9 / 16, 9 / 16, 1 / 16, 1 / 16],
        [-5 / 8, 5 / 8, 5 / 8, 5 / 8, -1 / 8, 1 / 8],
        [-3 / 2, -3 / 2, 7 / 8, -7 / 8, -1 / 8, -1 / 8],
        [3 / 16, -3 / 16, -3 / 16, -3 / 16, 1 / 16, -1 / 16],
        [1 / 2, 1 / 2, -5 / 16, 5 / 16, 1 / 16, 1 / 16],
    ]
)


@dataclass
class _Layout:
    """The model as arrays: one cell per (channel, sample, bin) of a sample that exists there."""

    nominal: list[float]
    cell_bin: list[int]
    linear: list[list[int]]  # per cell, the parameters that multiply it
    normsys: list[tuple[int, float, float, list[int]]]  # parameter, lo, hi, cells
    histosys: list[tuple[int, list[int], np.ndarray, np.ndarray]]  # parameter, cells, up, down


def _layout(model: Any) -> _Layout | None:
    """The cells and modifiers of a pyhf model, or None if it uses a modifier or interpolation
    code that :class:`Likelihood` does not implement."""
    config = model.config
    settings = config.modifier_settings
    for kind, codes in CODES.items():
        if settings.get(kind, {}).get("interpcode", codes[0]) not in codes:
            return None
    layout = _Layout([], [], [], [], [])
    channels = {channel["name"]: channel for channel in model.spec["channels"]}
    for name in config.channels:
        offset = config.channel_slices[name].start
        for sample in channels[name]["samples"]:
            cells = list(range(len(layout.nominal), len(layout.nominal) + len(sample["data"])))
            layout.nominal.extend(float(value) for value in sample["data"])
            layout.cell_bin.extend(offset + b for b in range(len(cells)))
            layout.linear.extend([] for _ in cells)
            for modifier in sample["modifiers"]:
                if not _add_modifier(layout, config, modifier, sample["data"], cells):
                    return None
    return layout


def _add_modifier(
    layout: _Layout, config: Any, modifier: dict, nominal: list, cells: list[int]
) -> bool:
    """Record one modifier of one sample; False for a modifier type not implemented here."""
    kind, parameters = modifier["type"], config.par_slice(modifier["name"])
    first = parameters.start
    if kind in ("normfactor", "lumi"):
        for cell in cells:
            layout.linear[cell].append(first)
    elif kind in ("staterror", "shapesys", "shapefactor"):
        for b, cell in enumerate(cells):
            layout.linear[cell].append(first + b)
    elif kind == "normsys":
        data = modifier["data"]
        layout.normsys.append((first, float(data["lo"]), float(data["hi"]), cells))
    elif kind == "histosys":
        data, nom = modifier["data"], np.asarray(nominal, dtype=float)
        up = np.asarray(data["hi_data"], dtype=float) - nom
        down = nom - np.asarray(data["lo_data"], dtype=float)
        layout.histosys.append((first, cells, up, down))
    else:
        return False
    return True


def _constraints(model: Any, data: np.ndarray) -> dict[str, np.ndarray]:
    """Indices, auxiliary data and widths (Gaussian) or scale factors (Poisson) of the
    constraint terms, with the auxiliary data taken from ``data`` as pyhf does (the last axis;
    ``data`` is one data set or one per row)."""
    config = model.config
    aux = np.asarray(data, dtype=float)[..., config.nmaindata :]
    parts: dict[str, list] = {key: [] for key in ("gauss", "gauss_aux", "sigma", "poisson",
                                                  "poisson_aux", "factor")}  # fmt: skip
    position = 0
    for name in config.auxdata_order:
        param_set = config.param_set(name)
        indices = range(config.par_slice(name).start, config.par_slice(name).stop)
        values = aux[..., position : position + len(indices)]
        position += len(indices)
        if param_set.pdf_type == "poisson":
            parts["poisson"] += indices
            parts["poisson_aux"].append(values)
            parts["factor"] += list(param_set.factors)
        else:
            parts["gauss"] += indices
            parts["gauss_aux"].append(values)
            parts["sigma"] += list(np.broadcast_to(param_set.width(), len(indices)))
    empty = aux[..., :0]
    for key in ("gauss_aux", "poisson_aux"):
        parts[key] = np.concatenate([empty, *parts[key]], axis=-1)
    return {key: np.asarray(values) for key, values in parts.items()}


def _constant(observed: np.ndarray, sigma: np.ndarray, poisson_aux: np.ndarray) -> float:
    """The parameter-independent terms of -2 log L of one data set, as pyhf includes them."""
    constant = 2.0 * sum(math.lgamma(n + 1.0) for n in observed)
    constant += float(np.sum(2.0 * np.log(sigma) + math.log(2.0 * math.pi)))
    constant += 2.0 * sum(math.lgamma(a + 1.0) for a in poisson_aux)
    return float(constant)


class Likelihood:
    """-2 log L of a pyhf model and its data as a torch function of the parameters.

    Build it with :func:`build`. :meth:`twice_nll` evaluates a batch of points ``(k, npars)``
    (differentiably), :meth:`values` the same without autograd, and :meth:`derivatives` their
    values, gradients and Hessians (:mod:`analysis.stats.hessian`). With one data set per row
    (``per_row``), row i of the points is evaluated on data set i.
    """

    def __init__(self, model: Any, data: np.ndarray, layout: _Layout, device: torch.device):
        config = model.config
        self.npars, self.device = config.npars, device
        settings = config.modifier_settings
        self.normsys_code = settings.get("normsys", {}).get("interpcode", "code1")
        self.histosys_code = settings.get("histosys", {}).get("interpcode", "code0")
        self.nominal = self.to_tensor(layout.nominal)
        self.cell_bin = self._index(layout.cell_bin)
        data = np.asarray(data, dtype=float)
        self.per_row, self.n_bins = data.ndim == 2, config.nmaindata
        observed = data[..., : config.nmaindata]
        self.observed = self.to_tensor(observed)
        self._linear(layout)
        self._normsys(layout)
        self._histosys(layout)
        terms = _constraints(model, data)
        self.gauss, self.poisson = self._index(terms["gauss"]), self._index(terms["poisson"])
        self.gauss_aux = self.to_tensor(terms["gauss_aux"])
        self.sigma = self.to_tensor(terms["sigma"])
        self.poisson_aux = self.to_tensor(terms["poisson_aux"])
        self.factor = self.to_tensor(terms["factor"])
        if self.per_row:  # per data set, each summed as a single data set's, so a toy's
            # numbers do not depend on the toys batched with it
            self.constant: float | torch.Tensor = self.to_tensor([
                _constant(row, terms["sigma"], aux)
                for row, aux in zip(observed, terms["poisson_aux"], strict=True)
            ])  # fmt: skip
        else:
            self.constant = _constant(observed, terms["sigma"], terms["poisson_aux"])

    #: Per row and cell ``(k, cells)``, a factor of every cell's rate: the values of the
    #: parameters a likelihood of :meth:`holding` holds, set by its caller; None: none.
    cell_factor: torch.Tensor | None = None

    def for_rows(self, rows: torch.Tensor) -> Likelihood:
        """The likelihood of the points ``rows`` of a batch: itself with one data set for every
        row, a copy holding those rows' data sets with one per row (and their cell factors)."""
        if not self.per_row and self.cell_factor is None:
            return self
        subset = copy.copy(self)
        names = ("observed", "gauss_aux", "poisson_aux", "constant") if self.per_row else ()
        for name in (*names, *(("cell_factor",) if self.cell_factor is not None else ())):
            setattr(subset, name, getattr(self, name)[rows])
        return subset

    def holding(self, held: np.ndarray) -> Likelihood:
        """This likelihood as a function of the parameters other than ``held`` (in their order),
        which must be multiplying parameters (normfactor, lumi, staterror, shapesys,
        shapefactor): they are 1, or the values :attr:`cell_factor` gives each cell (the caller
        sets it), and their constraint terms are left out of -2 log L (its constant stays)."""
        held = np.asarray(held, dtype=np.int64)
        keep = np.setdiff1d(np.arange(self.npars), held)
        if np.isin(held, np.r_[self.normsys_par.cpu(), self.histosys_par.cpu()]).any():
            raise ValueError("only multiplying parameters can be held")
        # old index -> new index; held parameters and the constant slot -> the constant slot
        index = np.full(self.npars + 1, len(keep), dtype=np.int64)
        index[keep] = np.arange(len(keep))
        mapping = self._index(index)
        reduced = copy.copy(self)
        reduced.npars = len(keep)
        reduced.slots = [mapping[slot] for slot in self.slots]
        reduced.slot_cells = [torch.nonzero(slot < len(keep))[:, 0] for slot in reduced.slots]
        reduced.slot_flat = [
            cells * len(keep) + slot[cells]
            for cells, slot in zip(reduced.slot_cells, reduced.slots, strict=True)
        ]
        reduced.normsys_par, reduced.histosys_par = (
            mapping[self.normsys_par],
            mapping[self.histosys_par],
        )
        reduced.normsys_flat = (
            self.normsys_cell * len(keep) + reduced.normsys_par[self.normsys_entry]
        )
        gauss = ~torch.isin(self.gauss, self._index(held))
        reduced.gauss, reduced.sigma = mapping[self.gauss[gauss]], self.sigma[gauss]
        reduced.gauss_aux = self.gauss_aux[..., gauss]
        poisson = ~torch.isin(self.poisson, self._index(held))
        reduced.poisson, reduced.factor = mapping[self.poisson[poisson]], self.factor[poisson]
        reduced.poisson_aux = self.poisson_aux[..., poisson]
        return reduced

    def to_tensor(self, values: Any) -> torch.Tensor:
        """``values`` as a float64 tensor on the likelihood's device."""
        if isinstance(values, torch.Tensor):
            return values.to(device=self.device, dtype=torch.float64)
        return torch.as_tensor(np.asarray(values, dtype=np.float64), device=self.device)

    def _index(self, values: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values, dtype=np.int64), device=self.device)

    def _linear(self, layout: _Layout) -> None:
        """Per slot (the i-th multiplying parameter of each cell), the parameter of every cell,
        npars (an appended constant 1) where a cell has fewer."""
        n_cells, width = len(layout.nominal), max(map(len, layout.linear), default=0)
        slots = np.full((width, n_cells), self.npars, dtype=np.int64)
        for cell, parameters in enumerate(layout.linear):
            slots[: len(parameters), cell] = parameters
        self.slots = [self._index(slot) for slot in slots]
        # per slot, the cells that have a parameter there and their flattened (cells, npars) index
        used = [np.flatnonzero(slot < self.npars) for slot in slots]
        self.slot_cells = [self._index(cells) for cells in used]
        self.slot_flat = [
            self._index(cells * self.npars + slot[cells])
            for cells, slot in zip(used, slots, strict=True)
        ]

    def _normsys(self, layout: _Layout) -> None:
        """Per normsys instance: its parameter, log kappas and code4 coefficients; per (instance,
        cell) entry: the instance and the cell."""
        entries = layout.normsys
        self.normsys_par = self._index([entry[0] for entry in entries])
        lo = np.asarray([entry[1] for entry in entries], dtype=float)
        hi = np.asarray([entry[2] for entry in entries], dtype=float)
        self.log_lo, self.log_hi = self.to_tensor(np.log(lo)), self.to_tensor(np.log(hi))
        b = np.stack([hi - 1, lo - 1, np.log(hi) * hi, -np.log(lo) * lo,
                      np.log(hi) ** 2 * hi, np.log(lo) ** 2 * lo])  # fmt: skip
        self.code4 = self.to_tensor((_CODE4_INVERSE @ b).reshape(6, len(entries)))
        pairs = [(row, cell) for row, entry in enumerate(entries) for cell in entry[3]]
        self.normsys_entry = self._index([row for row, _ in pairs])
        self.normsys_cell = self._index([cell for _, cell in pairs])
        # position of each entry in a flattened (cells, npars) array
        self.normsys_flat = self.normsys_cell * self.npars + self.normsys_par[self.normsys_entry]

    def _histosys(self, layout: _Layout) -> None:
        """Per histosys parameter, the summed up and down deltas of every cell it moves."""
        parameters = sorted({entry[0] for entry in layout.histosys})
        rows = {parameter: row for row, parameter in enumerate(parameters)}
        n_cells = len(layout.nominal)
        up, down = np.zeros((len(parameters), n_cells)), np.zeros((len(parameters), n_cells))
        for parameter, cells, delta_up, delta_down in layout.histosys:
            up[rows[parameter], cells] += delta_up
            down[rows[parameter], cells] += delta_down
        self.histosys_par = self._index(parameters)
        self.delta_up, self.delta_down = self.to_tensor(up), self.to_tensor(down)

    def spread_normsys(self, log_factors: torch.Tensor) -> torch.Tensor:
        """Per cell ``(k, cells)``, the sum of the normsys instances' log factors ``(k, e)``."""
        total = log_factors.new_zeros(len(log_factors), len(self.nominal))
        return total.index_add(1, self.normsys_cell, log_factors[:, self.normsys_entry])

    def linear_factors(self, pars: torch.Tensor) -> list[torch.Tensor]:
        """Per slot, the multiplying parameter's value in every cell ``(k, cells)``."""
        extended = torch.cat([pars, pars.new_ones(len(pars), 1)], dim=1)
        factors = [extended[:, slot] for slot in self.slots]
        # after every slot: the derivatives (analysis.stats.hessian) take it as a factor of
        # no parameter
        return factors if self.cell_factor is None else [*factors, self.cell_factor]

    def bins(self, cells: torch.Tensor) -> torch.Tensor:
        """Per main bin, the sum over its cells (the last dimension of ``cells``)."""
        total = cells.new_zeros(*cells.shape[:-1], self.n_bins)
        return total.index_add(cells.dim() - 1, self.cell_bin, cells)

    def expected(self, pars: torch.Tensor) -> torch.Tensor:
        """Expected events per main bin ``(k, bins)`` at a batch of points ``(k, npars)``."""
        return self.bins(self.rates(pars))

    def rates(self, pars: torch.Tensor) -> torch.Tensor:
        """Expected events per cell ``(k, cells)`` at a batch of points ``(k, npars)``."""
        normsys = self.spread_normsys(normsys_log(pars[:, self.normsys_par], self)).exp()
        up, down = histosys_weights(pars[:, self.histosys_par], self.histosys_code)
        linear = product(self.linear_factors(pars), torch.ones_like(normsys))
        return self.additive(up, down) * linear * normsys

    def additive(self, up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
        """Nominal plus histosys deltas per cell ``(k, cells)`` from the weights ``(k, h)``."""
        return self.nominal + rowwise(up, self.delta_up) + rowwise(down, self.delta_down)

    def twice_nll(self, pars: torch.Tensor) -> torch.Tensor:
        """-2 log L ``(k,)`` at a batch of points ``(k, npars)`` (pyhf's, constants included)."""
        return self.from_expected(pars, self.expected(pars))

    def from_expected(self, pars: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
        """-2 log L from the parameters and the expected events per main bin they give."""
        main = torch.sum(expected - torch.xlogy(self.observed, expected), dim=1)
        pulls = (self.gauss_aux - pars[:, self.gauss]) / self.sigma
        rates = pars[:, self.poisson] * self.factor
        poisson = torch.sum(rates - torch.xlogy(self.poisson_aux, rates), dim=1)
        return 2.0 * (main + poisson) + torch.sum(pulls * pulls, dim=1) + self.constant

    def values(self, pars: np.ndarray | torch.Tensor) -> torch.Tensor:
        """-2 log L at a batch of points ``(k, npars)``."""
        with torch.no_grad():
            return self.twice_nll(self.to_tensor(pars))

    def derivatives(
        self, pars: np.ndarray | torch.Tensor, information: bool = False
    ) -> tuple[torch.Tensor, ...]:
        """Values ``(k,)``, exact gradients ``(k, npars)`` and Hessians ``(k, npars, npars)`` of
        -2 log L at a batch of points, and with ``information`` the Fisher information matrices
        (see :mod:`analysis.stats.hessian`)."""
        from analysis.stats.hessian import derivatives

        with torch.no_grad():
            return derivatives(self, self.to_tensor(pars), information)


def normsys_log(alpha: torch.Tensor, likelihood: Likelihood) -> torch.Tensor:
    """Log of each normsys instance's factor at its parameter's value (pyhf code1 or code4).

    The branches are blended with 0/1 masks rather than ``torch.where``, which is several times
    slower to differentiate in batches; every branch is finite everywhere.
    """
    if likelihood.normsys_code == "code1":
        up = (alpha > 0).to(alpha.dtype)
        return alpha * (up * likelihood.log_hi - (1.0 - up) * likelihood.log_lo)
    # code4: 1 + sum_i a_i alpha^i inside |alpha| < 1 (at alpha clipped to [-1, 1], finite
    # everywhere), the exponentials beyond
    inside = torch.clamp(alpha, -1.0, 1.0)
    polynomial = likelihood.code4[5]
    for power in range(4, -1, -1):
        polynomial = polynomial * inside + likelihood.code4[power]
    polynomial = torch.log(1.0 + polynomial * inside)
    up = (alpha >= 1.0).to(alpha.dtype)
    down = (alpha <= -1.0).to(alpha.dtype)
    outside = alpha * (up * likelihood.log_hi - down * likelihood.log_lo)
    return outside + (1.0 - up - down) * polynomial


def histosys_weights(alpha: torch.Tensor, code: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (u, v) with delta = u * (up - nominal) + v * (nominal - down), pyhf's codes
    (branches blended with 0/1 masks, see :func:`normsys_log`)."""
    if code == "code0":
        up = (alpha > 0).to(alpha.dtype)
        return up * alpha, (1.0 - up) * alpha
    high = (alpha > 1.0).to(alpha.dtype)
    low = (alpha < -1.0).to(alpha.dtype)
    middle = 1.0 - high - low
    if code == "code2":
        quadratic = 0.5 * alpha * alpha
        u = middle * (quadratic + 0.5 * alpha) + high * 1.5 * (alpha - 1) - low * 0.5 * alpha
        v = middle * (0.5 * alpha - quadratic) - high * 0.5 * (alpha - 1) + low * 1.5 * alpha
        return u, v
    # code4p
    square = alpha * alpha
    smooth = square * (15.0 + square * (3.0 * square - 10.0)) / 16.0
    return (middle * (0.5 * alpha + smooth) + high * alpha,
            middle * (0.5 * alpha - smooth) + low * alpha)  # fmt: skip


def product(factors: list[torch.Tensor], one: torch.Tensor) -> torch.Tensor:
    """The product of ``factors``, in order (``one`` if there are none)."""
    result = one
    for factor in factors:
        result = result * factor
    return result


def rowwise(rows: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``rows @ matrix``, one row at a time: a matrix product over several rows may sum in another
    order for another number of rows, and a refit's numbers must not depend on the refits it is
    batched with."""
    if len(rows) == 0:
        return rows.new_zeros(0, matrix.shape[1])
    return torch.stack([row @ matrix for row in rows])


def supports(model: Any) -> bool:
    """Whether :func:`build` implements every modifier and interpolation code of the model."""
    return _layout(model) is not None


def build(model: Any, data: np.ndarray, device: torch.device | str = "cpu") -> Likelihood | None:
    """The vectorised likelihood of a pyhf model and its data on ``device``; None when the model
    uses a modifier type or interpolation code not implemented here.

    ``data`` is one data set ``(main + aux,)``, used by every row of a batch, or one per row
    ``(k, main + aux)`` (toys: evaluate them at ``(k, npars)`` points, row i on data set i).
    """
    layout = _layout(model)
    if layout is None:
        return None
    return Likelihood(model, data, layout, torch.device(device))
