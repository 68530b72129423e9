"""A stage that is cancelled (SIGTERM from scancel or a time limit) or killed outright (SIGKILL)
leaves nothing in the results that a rerun would keep: no output, no scratch, no temporary file."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from analysis.core.io import read_json, write_json
from tests.conftest import REPO, preselect_settings

STAGE = textwrap.dedent(
    """
    import sys, time
    from analysis.core.errors import cli_main
    from analysis.core.io import atomic_path

    def _main(argv):
        with atomic_path(sys.argv[1]) as tmp:
            tmp.write_text("half written")
            print("writing", flush=True)
            time.sleep(120)

    raise SystemExit(cli_main(_main)())
    """
)


def test_sigterm_stops_a_stage_through_its_cleanup(tmp_path):
    target = tmp_path / "out.json"
    stage = subprocess.Popen(
        [sys.executable, "-c", STAGE, str(target)], cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert stage.stdout.readline() == "writing\n"
    assert [p.name for p in tmp_path.iterdir()][0].startswith(".out.json.")
    stage.send_signal(signal.SIGTERM)
    _, stderr = stage.communicate(timeout=60)
    assert stage.returncode == 128 + signal.SIGTERM
    assert stderr.splitlines() == ["error: stopped by SIGTERM (job cancelled or out of time)"]
    assert list(tmp_path.iterdir()) == [], "no output and no temporary file"


def test_a_rerun_removes_temporaries_of_a_killed_attempt(tmp_path):
    stale = tmp_path / ".out.json.k1ll3d.tmp"  # as atomic_path names them
    stale.write_text("half written")
    other = tmp_path / ".other.json.k1ll3d.tmp"  # another output's: not this writer's business
    other.write_text("half written")
    write_json(tmp_path / "out.json", {"a": 1})
    assert read_json(tmp_path / "out.json") == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.json.k1ll3d.tmp", "out.json"]


def test_preselection_removes_scratch_of_a_killed_attempt(
    tmp_path, toy_files, default_config, default_samples
):
    from analysis.selection.preselect import run_preselection

    scratch = tmp_path / ".chunks-k1ll3d" / "nominal"
    scratch.mkdir(parents=True)
    (scratch / "00000_000000000000.npz").write_bytes(b"half written")
    run_preselection(
        "W", default_samples["W"], [str(toy_files["W"])], preselect_settings(default_config),
        tmp_path, chunksize=2000, dask={"mode": "none"},
    )  # fmt: skip
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())
    assert (tmp_path / "nominal.root").exists()
