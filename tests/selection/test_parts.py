"""Samples of many files split into preselection jobs (preselect.files_per_job) and merged: the
merged skims and cutflows equal those of one job over all files."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.core.errors import AnalysisError
from analysis.core.io import read_json, read_tree
from analysis.selection.parts import merge_parts, part_name, split_files
from analysis.selection.preselect import run_preselection
from tests.conftest import preselect_settings


def test_split_keeps_file_order():
    # catches parts that reorder, drop or repeat files (rows would leave (file, entry) order)
    files = [f"f{i}.root" for i in range(7)]
    assert split_files(files, 3) == [files[0:3], files[3:6], files[6:7]]
    assert split_files(files, None) == [files]
    assert split_files(files, 7) == [files]
    assert [part_name(i) for i in (0, 12)] == ["0000", "0012"]


@pytest.fixture(scope="module")
def single_and_parts(tmp_path_factory, toy_files, default_config, default_samples):
    """Three toy files as one simulated sample: one job, and jobs of 2 files merged."""
    directory = tmp_path_factory.mktemp("parts")
    files = [str(toy_files[name]) for name in ("ZTT", "TT", "W")]
    settings = preselect_settings(default_config)
    sample = default_samples["TT"]
    run = dict(chunksize=1500, dask={"mode": "none"})
    run_preselection("TT", sample, files, settings, directory / "single", **run)
    part_dirs = []
    for index, part in enumerate(split_files(files, 2)):
        part_dirs.append(directory / "parts" / part_name(index))
        run_preselection("TT", sample, part, settings, part_dirs[-1], **run)
    variations = ["nominal", "tau_es_up", "jet_es_down"]
    merge_parts("TT", part_dirs, variations, directory / "merged")
    return directory, variations


def test_merged_parts_equal_one_job(single_and_parts):
    # catches parts merged out of order, a part's rows lost, or cutflow/generator-weight sums
    # taken from one part only (the friend trees' normalisation would be wrong)
    directory, variations = single_and_parts
    for variation in variations:
        single = read_tree(directory / "single" / f"{variation}.root")
        merged = read_tree(directory / "merged" / f"{variation}.root")
        assert set(single) == set(merged)
        for column in single:
            np.testing.assert_array_equal(merged[column], single[column], err_msg=column)
        one = read_json(directory / "single" / f"{variation}.cutflow.json")
        two = read_json(directory / "merged" / f"{variation}.cutflow.json")
        assert two["files"] == one["files"]
        assert [c["events"] for c in two["cuts"]] == [c["events"] for c in one["cuts"]]
        np.testing.assert_allclose(
            [c["weighted"] for c in two["cuts"]], [c["weighted"] for c in one["cuts"]], rtol=1e-9
        )
        assert two["sumw"]["genEventSumw"] == pytest.approx(one["sumw"]["genEventSumw"], rel=1e-12)
        for key, value in one["sumw"]["processed"].items():
            assert two["sumw"]["processed"][key] == pytest.approx(value, rel=1e-9)


def test_failing_file_of_a_part_names_itself(tmp_path, toy_files, default_config, default_samples):
    # catches a part job that fails on a broken file without saying which file it was
    broken = tmp_path / "broken.root"
    broken.write_bytes(toy_files["W"].read_bytes()[:5000])
    with pytest.raises(AnalysisError, match=r"broken\.root") as err:
        run_preselection(
            "TT",
            default_samples["TT"],
            [str(toy_files["ZTT"]), str(broken)],
            preselect_settings(default_config),
            tmp_path / "out",
            chunksize=1500,
            dask={"mode": "none"},
        )
    assert "\n" not in str(err.value)
