"""Refits with some parameters held fixed, solved together, with MINUIT as the fallback.

The ranking (and any caller with many conditional fits) hands over all its refits at once. With
``inference.refits.batched`` they are warm-started like MINUIT's refits
(:func:`analysis.stats.minimizer.profile_start`) and minimised together by projected Newton steps
on the exact gradient and Hessian (:mod:`analysis.stats.newton` on
:mod:`analysis.stats.likelihood` and :mod:`analysis.stats.hessian`), in batches of at most
:data:`MAX_BATCH`. A refit the fast path cannot bring to a valid minimum (see
:mod:`analysis.stats.newton`) is redone by MINUIT (:func:`analysis.stats.minimizer.refit`) and
counted, so a caller can report how many fell back. Where -2 log L has several minima (see
:mod:`analysis.stats.newton`), a caller can add start points per refit (``more_starts``, e.g. the
minima it found at neighbouring values): every start is minimised in the same batch and the lowest
valid minimum is kept."""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch

from analysis.core.device import select_device
from analysis.core.progress import Progress, track
from analysis.stats import likelihood as likelihood_module
from analysis.stats import model as model_utils
from analysis.stats import newton
from analysis.stats.minimizer import (
    Anchor,
    FitSettings,
    Minimum,
    default_steps,
    inside_bounds,
    profile_start,
    refit,
)

log = logging.getLogger(__name__)

#: Most refits minimised in one batch: bounds the memory of the batched Hessians (refits x
#: parameters^2 plus refits x parameters x the model's modifier entries), far below it on the
#: analysis's workspaces; results do not depend on it.
MAX_BATCH = 64

#: Convergence goal and limits of the Newton steps.
NEWTON = newton.NewtonSettings()

#: Likelihoods built once per model, data and device.
_LIKELIHOODS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class Request(NamedTuple):
    """One refit: parameters ``indices`` held at ``targets``."""

    indices: tuple[int, ...]
    targets: tuple[float, ...]


class Outcome(NamedTuple):
    """The minima in the order requested, and which of them MINUIT had to redo."""

    minima: tuple[Minimum, ...]
    fell_back: tuple[bool, ...]

    @property
    def fallbacks(self) -> int:
        """How many refits the fast path left to MINUIT."""
        return sum(self.fell_back)


def refits(
    setup: model_utils.Setup,
    record: Anchor,
    requests: Sequence[Request],
    settings: FitSettings,
    fallback: Callable[[Request], Minimum] | None = None,
    more_starts: Callable[[Request], Sequence[np.ndarray]] | None = None,
) -> Outcome:
    """Every requested refit, warm-started from the nominal fit ``record``.

    Args:
        setup: model and data.
        record: the minimum the refits start from (the nominal fit; its values and covariance).
        requests: the refits.
        settings: minimiser settings (``batched_refits``, ``device``; MINUIT's for the fallback).
        fallback: the MINUIT refit of a request, when the caller knows a better start than the
            Gaussian conditional minimum (:func:`analysis.stats.minimizer.refit` by default).
        more_starts: further start points of a request's Newton refit, besides the Gaussian
            conditional minimum (its fixed parameters are set to the targets); the lowest valid
            minimum of all its starts is kept.

    Returns:
        The minima (``converged`` is the batched or the MINUIT refit's convergence) and which
        refits fell back to MINUIT.
    """
    if fallback is None:

        def fallback(request: Request) -> Minimum:
            return refit(setup, record, request.indices, request.targets, settings)

    likelihood = _likelihood(setup, settings) if settings.batched_refits else None
    progress = Progress(len(requests), "refits", "refits", logger=log)
    if likelihood is None:
        if settings.batched_refits:
            log.warning("the model has modifiers the batched refits do not implement; using MINUIT")
        minima = [fallback(request) for request in track(requests, progress)]
        return Outcome(tuple(minima), (settings.batched_refits,) * len(requests))
    minima: list[Minimum] = []
    fell_back: list[bool] = []
    for first in range(0, len(requests), MAX_BATCH):
        batch = requests[first : first + MAX_BATCH]
        found = _batched(setup, record, batch, likelihood, more_starts)
        for request, minimum in zip(batch, found, strict=True):
            fell_back.append(minimum is None)
            if minimum is None:
                minimum = fallback(request)
            minima.append(minimum)
        progress.update(len(batch))
    if any(fell_back):
        log.warning("%d of %d refits fell back to MINUIT", sum(fell_back), len(requests))
    return Outcome(tuple(minima), tuple(fell_back))


def _batched(
    setup: model_utils.Setup,
    record: Anchor,
    requests: Sequence[Request],
    likelihood: likelihood_module.Likelihood,
    more_starts: Callable[[Request], Sequence[np.ndarray]] | None = None,
) -> list[Minimum | None]:
    """The batch's minima by projected Newton steps from every start of each request (the lowest
    valid one); None where no start gave a valid minimum."""
    model = setup.model
    bounds = np.asarray(model.config.suggested_bounds(), dtype=float)
    steps = default_steps(model)
    free_mask = model_utils.free_mask(model)
    starts, free, owners = [], [], []
    for number, request in enumerate(requests):
        first = profile_start(record, bounds, request.indices, request.targets, steps)[0]
        extra = more_starts(request) if more_starts is not None else ()
        for start in (first, *extra):
            starts.append(inside_bounds(start, bounds, request.indices, request.targets))
            row_free = free_mask.copy()
            row_free[list(request.indices)] = False
            free.append(row_free)
            owners.append(number)
    with cpu_threads(likelihood.device):
        found = newton.minimize(likelihood, np.array(starts), np.array(free), bounds, NEWTON)
    owners = np.array(owners)
    minima: list[Minimum | None] = []
    for number, request in enumerate(requests):
        rows = np.flatnonzero((owners == number) & found.valid)
        if not len(rows):
            row = np.flatnonzero(owners == number)[0]
            log.info(
                "refit %s at %s: no valid minimum by Newton steps (edm %.2g after %d "
                "iterations); MINUIT refits it", request.indices, request.targets,
                found.edm[row], found.iterations[row],
            )  # fmt: skip
            minima.append(None)
            continue
        best = rows[np.argmin(found.twice_nll[rows])]
        values = found.values[best]
        minima.append(Minimum(values, None, None, float(found.twice_nll[best]), True, ()))
    return minima


def _likelihood(
    setup: model_utils.Setup, settings: FitSettings
) -> likelihood_module.Likelihood | None:
    """The vectorised likelihood of the setup's model and data, built once per device."""
    device = select_device(settings.device, "inference.refits.device")
    cache = _LIKELIHOODS.setdefault(setup.model, {})
    key = (setup.data.tobytes(), str(device))
    if key not in cache:
        cache[key] = likelihood_module.build(setup.model, setup.data, device)
    return cache[key]


@contextlib.contextmanager
def cpu_threads(device: torch.device) -> Iterator[None]:
    """One torch thread on the CPU while the batch runs: its tensors are small, and extra
    threads only wait on each other (several times slower on a busy machine)."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
