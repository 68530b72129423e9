"""The progress log lines (analysis/core/progress.py), on a fake clock: no sleeping."""

from __future__ import annotations

import logging

import pytest

from analysis.core.progress import Progress, track


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_a_line_with_rate_and_time_left_once_the_interval_passed(caplog, clock):
    caplog.set_level(logging.INFO)
    progress = Progress(1000, "preselection", "events", interval=30, clock=clock)
    clock.now += 10
    progress.update(100)
    assert lines(caplog) == [], "before the interval: no line (a line per step would flood logs)"
    clock.now += 20
    progress.update(200)
    # 300 events in 30 s: 10 events/s, 700 left -> 70 s (a rate from the last step alone, or
    # time left from the total instead of what remains, would give other numbers)
    assert lines(caplog) == [
        "preselection: 300/1000 events (30%) in 0:00:30, 10 events/s, about 0:01:10 left"
    ]
    clock.now += 5
    progress.update(100)
    assert len(lines(caplog)) == 1, "the interval counts from the last line, not the start"


def test_the_last_step_is_always_logged(caplog, clock):
    caplog.set_level(logging.INFO)
    progress = Progress(4, "ranking", "parameters", interval=1e9, clock=clock)
    for _ in range(4):
        clock.now += 2
        progress.update()
    assert lines(caplog) == ["ranking: 4/4 parameters (100%) in 0:00:08, 0.5 parameters/s, about "
                             "0:00:00 left"]  # fmt: skip


def test_upper_bound_says_at_most(caplog, clock):
    caplog.set_level(logging.INFO)
    progress = Progress(100, "fold 0 training", "epochs", upper_bound=True, interval=0, clock=clock)
    clock.now += 60
    progress.update()
    # early stopping may end training sooner: the time left is a maximum, not an estimate
    assert lines(caplog) == [
        "fold 0 training: 1/100 epochs (1%) in 0:01:00, 0.0167 epochs/s, at most 1:39:00 left"
    ]


def test_nothing_done_yet_has_no_rate(clock):
    progress = Progress(10, "x", "events", clock=clock)
    assert progress.message(clock.now) == "x: 0/10 events (0%) in 0:00:00"  # no division by zero


def test_track_counts_each_item_after_its_work(caplog, clock):
    caplog.set_level(logging.INFO)
    done = []
    for item in track(["a", "b"], Progress(2, "loop", "items", interval=0, clock=clock)):
        clock.now += 1
        done.append(item)
    # counted once the consumer asked for the next item, i.e. after the work on this one
    assert done == ["a", "b"]
    assert [line.split(" in ")[0] for line in lines(caplog)] == [
        "loop: 1/2 items (50%)",
        "loop: 2/2 items (100%)",
    ]
