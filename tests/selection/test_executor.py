"""Running the preselection (analysis.selection.executor): progress lines as chunks finish."""

from __future__ import annotations

import logging
import re

import pytest
import uproot

from analysis.selection import executor
from analysis.selection.preselect import run_preselection
from tests.conftest import preselect_settings

LINE = re.compile(r"^preselection: (\d+)/(\d+) events")


@pytest.mark.parametrize("mode", ["none", "local"])
def test_progress_lines_count_every_chunk(
    mode, tmp_path, toy_files, default_config, default_samples, monkeypatch, caplog
):
    """One line per finished chunk (interval 0), counting up to every event of the input, from
    in-process chunks and from dask worker processes alike: fails if the workers' reports never
    reach the driver (the log of a dask run would stay silent until the end), if a chunk is
    counted twice or not at all, or if the total is not the input's number of events."""
    monkeypatch.setattr(executor, "PROGRESS_INTERVAL", 0.0)
    path = str(toy_files["ZTT"])
    with uproot.open(path) as file:
        total = file["Events"].num_entries
    with caplog.at_level(logging.INFO, logger="analysis.core.progress"):
        run_preselection(
            "ZTT", default_samples["ZTT"], [path], preselect_settings(default_config), tmp_path,
            chunksize=700, workers=2, dask={"mode": mode},
        )  # fmt: skip
    counts = [
        (int(match.group(1)), int(match.group(2)))
        for record in caplog.records
        if (match := LINE.match(record.getMessage()))
    ]
    chunks = -(-total // 700)
    assert len(counts) == chunks, counts
    assert all(of == total for _, of in counts)
    done = [count for count, _ in counts]
    assert done == sorted(done) and len(set(done)) == chunks
    assert done[-1] == total


@pytest.mark.parametrize(("chunks", "cluster"), [(1, False), (2, True)])
def test_a_local_cluster_only_for_more_than_one_chunk(
    chunks, cluster, tmp_path, toy_files, default_config, default_samples, monkeypatch
):
    """A sample of one chunk runs in the job's process (a cluster would only add its start-up);
    more chunks start the local cluster. Fails if the shortcut were lost (every small sample of
    the toy paying seconds of worker start-up) or taken for inputs of several chunks."""
    path = str(toy_files["ZTT"])
    with uproot.open(path) as file:
        total = file["Events"].num_entries

    def no_cluster(workers, dask):
        raise RuntimeError("cluster started")

    monkeypatch.setattr(executor, "_cluster", no_cluster)
    run = lambda: run_preselection(  # noqa: E731
        "ZTT", default_samples["ZTT"], [path], preselect_settings(default_config), tmp_path,
        chunksize=-(-total // chunks), workers=2, dask={"mode": "local"},
    )  # fmt: skip
    if cluster:
        with pytest.raises(RuntimeError, match="cluster started"):
            run()
    else:
        run()
