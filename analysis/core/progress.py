"""Progress of a long loop as log lines: how much is done, the rate and the time left.

Under Snakemake a stage's output goes to its log file, where a progress bar never shows; a
:class:`Progress` writes one line at a steady interval instead, e.g.::

    ranking: 12/40 parameters (30%) in 0:02:00, 0.1 parameters/s, about 0:04:40 left
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

#: Seconds between two progress lines of a loop (the last step is always logged).
INTERVAL = 30.0

T = TypeVar("T")

log = logging.getLogger(__name__)


def _duration(seconds: float) -> str:
    """``h:mm:ss`` to the second."""
    return str(datetime.timedelta(seconds=round(seconds)))


class Progress:
    """Counts steps of a loop and logs the progress at most every ``interval`` seconds.

    Args:
        total: steps in the whole loop (an upper bound when ``upper_bound``).
        what: what the loop does, at the start of every line (``fold 0 training``).
        unit: what a step is (``events``, ``epochs``).
        upper_bound: the loop may end before ``total`` (early stopping): the time left is a
            maximum.
        interval: seconds between two lines.
        logger: where the lines go.
        clock: seconds of a monotonic clock (a fake one in tests).
    """

    def __init__(
        self,
        total: int,
        what: str,
        unit: str = "events",
        *,
        upper_bound: bool = False,
        interval: float = INTERVAL,
        logger: logging.Logger = log,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.what, self.unit = total, what, unit
        self.upper_bound, self.interval = upper_bound, interval
        self._logger, self._clock = logger, clock
        self.done = 0
        self._started = self._last = clock()

    def update(self, steps: int = 1) -> None:
        """Count ``steps`` more done; log a line when ``interval`` has passed or all are done."""
        self.done += steps
        now = self._clock()
        if now - self._last >= self.interval or self.done >= self.total:
            self._last = now
            self._logger.info("%s", self.message(now))

    def message(self, now: float) -> str:
        """The progress line at time ``now`` (of ``clock``)."""
        elapsed = now - self._started
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        line = f"{self.what}: {self.done}/{self.total} {self.unit}{share} in {_duration(elapsed)}"
        if self.done <= 0 or elapsed <= 0:
            return line
        rate = self.done / elapsed
        left = max(self.total - self.done, 0) / rate
        bound = "at most" if self.upper_bound else "about"
        return f"{line}, {rate:.3g} {self.unit}/s, {bound} {_duration(left)} left"


def track(items: Iterable[T], progress: Progress) -> Iterator[T]:
    """Yield ``items``, counting each one with ``progress`` once the caller asks for the next."""
    for item in items:
        yield item
        progress.update()
