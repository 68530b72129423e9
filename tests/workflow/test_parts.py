"""A sample of several real NanoAOD files runs as preselection jobs of preselect.files_per_job
files, merged into the sample's skims (the workflow side of analysis/selection/parts.py)."""

from __future__ import annotations

import shutil

import pytest
import yaml

from analysis.core.io import read_json, read_tree
from tests.conftest import DATA, REPO
from tests.workflow.test_workflow import snakemake

pytestmark = pytest.mark.slow


def test_split_sample_runs_as_parts_and_merges(tmp_path):
    # catches a split sample whose parts are not scheduled, merged out of order, or whose merged
    # skim lacks a part's events; and a one-file sample that is split needlessly
    copies = []
    for index in range(3):
        copies.append(tmp_path / f"dy_{index}.root")
        shutil.copy(DATA / "nano_dy.root", copies[-1])
    samples = yaml.safe_load((DATA / "real_nanoaod_samples.yaml").read_text())
    samples["samples"]["DY"]["files"] = [str(path) for path in copies]
    samples_file = tmp_path / "samples.yaml"
    samples_file.write_text(yaml.safe_dump(samples))
    results = tmp_path / "results"
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "samples": str(samples_file),
                "results": str(results),
                "preselect": {"files_per_job": 2},
            }
        )
    )
    args = ("--configfile", str(REPO / "tests/data/real_nanoaod_config.yaml"), str(config))
    planned = snakemake("-n", "preselect", *args).stdout
    assert planned.count("rule preselect_part:") == 2, planned
    assert planned.count("rule preselect_merge:") == 1
    assert planned.count("rule preselect_sample:") == 1  # TT: one file, one job
    snakemake("preselect", *args)
    merged = read_json(results / "preselect/DY/nominal.cutflow.json")
    assert merged["files"] == [str(path) for path in copies]
    parts = [
        read_json(results / f"preselect_parts/DY/{part}/nominal.cutflow.json")
        for part in ("0000", "0001")
    ]
    processed = [part["cuts"][0]["events"] for part in parts]  # step "all"
    assert processed[0] > 0 and processed[0] == 2 * processed[1]  # two copies, then one
    for step, cut in enumerate(merged["cuts"]):
        assert cut["events"] == sum(part["cuts"][step]["events"] for part in parts)
    skim = read_tree(results / "preselect/DY/nominal.root")
    first = read_tree(results / "preselect_parts/DY/0000/nominal.root")
    assert (skim["event"][: len(first["event"])] == first["event"]).all()
