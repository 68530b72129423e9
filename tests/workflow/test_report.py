"""The `plots` target on a tiny toy run: restyling reruns only plot rules, the Snakemake report
holds every figure (the fit's too) and renders in a real headless browser (Debian's chromium).

Without chromium the browser test is skipped with the reason; set REQUIRE_BROWSER=1 (CI) to make
a missing browser a failure instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import yaml

from tests.workflow.conftest import copy_results
from tests.workflow.test_workflow import snakemake, tiny_toy_config

pytestmark = pytest.mark.slow

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="module")
def plots_run(tmp_path_factory, tiny_run):
    """`snakemake plots` on a copy of the session's tiny toy run: the figures' stages only."""
    tmp = tmp_path_factory.mktemp("plots")
    copy_results(tiny_run[1], tmp / "results")
    config = tiny_toy_config(tmp, tmp / "results")
    snakemake("plots", "--configfile", str(config))
    return tmp, config


def planned_rules(output: str) -> set[str]:
    """Rule names of the job tables (``job  count`` ... ``total``) that `snakemake -n` prints."""
    rules, in_table = set(), False
    for line in output.splitlines():
        if re.match(r"^job\s+count$", line.strip()):
            in_table = True
        elif in_table and (row := re.match(r"^(\w+)\s+(\d+)$", line.strip())):
            if row.group(1) == "total":
                in_table = False
            else:
                rules.add(row.group(1))
    return rules


def test_restyle_reruns_only_plot_rules(plots_run):
    tmp, config = plots_run
    assert "Nothing to be done" in snakemake("-n", "plots", "--configfile", str(config)).stdout
    restyle = tmp / "restyle.yaml"
    restyle.write_text(yaml.safe_dump({"plots": {"label": "Preliminary", "dpi": 90}}))
    result = snakemake("-n", "plots", "--configfile", str(config), str(restyle))
    rules = planned_rules(result.stdout + result.stderr)
    assert {"plot_features", "plot_diagnostics", "plot_history"} <= rules, result.stdout
    # `versions` records the config digest, which a new style changes: rerunning it (a second) is
    # right; any selection, training or statistics rule here would be a wrongly wide dependency.
    assert all(
        rule.startswith(("plot_", "report_")) or rule in ("plots", "versions") for rule in rules
    ), rules


def browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@pytest.fixture(scope="module")
def report(plots_run):
    """The report of the documented command, `snakemake plots --report report.html`."""
    tmp, config = plots_run
    path = tmp / "report.html"
    snakemake("plots", "--configfile", str(config), "--report", str(path))
    return path


def test_report_holds_every_figure(report):
    """The inputs' and the fit's figures are in the report (a `plots` target without the fit
    figures of `plots_fit` fails)."""
    html = report.read_text()
    for name in ("roc.png", "cutflow.png", "confusion_efficiency.png", "versions.tsv",
                 "pulls.png", "impacts.png", "correlation.png", "limits.png", "ggH_postfit.png",
                 "scan_mu.png", "yields.md"):  # fmt: skip
        assert name in html, f"{name} is not in the report"


def test_report_in_browser(plots_run, report):
    executable = browser()
    if executable is None:
        message = "no chromium found (apt-get install -y chromium)"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(message + "; REQUIRE_BROWSER=1 makes it fatal")
        pytest.skip(message)
    tmp, _ = plots_run
    screenshot = tmp / "report.png"
    flags = [
        executable, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--virtual-time-budget=15000", "--window-size=1400,1000",
    ]  # fmt: skip
    subprocess.run(
        [*flags, f"--screenshot={screenshot}", report.as_uri()],
        check=True, capture_output=True, timeout=180,
    )  # fmt: skip
    dom = subprocess.run(
        [*flags, "--dump-dom", report.as_uri()],
        check=True, capture_output=True, text=True, timeout=180,
    ).stdout  # fmt: skip
    from matplotlib.image import imread

    image = imread(screenshot)
    assert np.ptp(image[..., :3]) > 0.5 and image[..., :3].std() > 0.02, "blank screenshot"
    # the report's JavaScript rendered the navigation: its categories are in the live DOM
    for category in ("Inputs", "Training", "Fit", "Provenance"):
        assert category in dom, f"category {category!r} not rendered"
