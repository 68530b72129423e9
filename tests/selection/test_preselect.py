"""Preselection: selection and features against an independent per-event loop, shape variations,
cutflows, dask execution, real CMS NanoAOD, and bad input."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import uproot

from analysis.core.errors import AnalysisError
from analysis.core.io import read_json, read_tree
from analysis.selection import executor
from analysis.selection.preselect import run_preselection
from analysis.selection.skim import FEATURES, MISSING
from tests.conftest import DATA, preselect_settings


def _delta_r(eta1: float, phi1: float, eta2: float, phi2: float) -> float:
    dphi = (phi1 - phi2 + math.pi) % (2 * math.pi) - math.pi
    return math.hypot(eta1 - eta2, dphi)


def _four_vector(pt: float, eta: float, phi: float, mass: float) -> tuple[float, ...]:
    px, py, pz = pt * math.cos(phi), pt * math.sin(phi), pt * math.sinh(eta)
    return px, py, pz, math.sqrt(px * px + py * py + pz * pz + mass * mass)


def _mass(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    e, px, py, pz = a[3] + b[3], a[0] + b[0], a[1] + b[1], a[2] + b[2]
    return math.sqrt(max(e * e - px * px - py * py - pz * pz, 0.0))


def _mt(pt1: float, phi1: float, pt2: float, phi2: float) -> float:
    return math.sqrt(max(2 * pt1 * pt2 * (1 - math.cos(phi1 - phi2)), 0.0))


#: DeepTau 2017v2p1 bitmask bits of the toy, written out independently of the code's translation.
VSJET_BITS = {"VVVLoose": 1, "VVLoose": 2, "VLoose": 4, "Loose": 8, "Medium": 16, "Tight": 32}
VSMU_BITS = {"VLoose": 1, "Loose": 2, "Medium": 4, "Tight": 8}


def _passes_wp(value: int, threshold: int | str, bits: dict[str, int]) -> bool:
    """A named working point is a bit test; an integer threshold a minimum value."""
    return value >= threshold if isinstance(threshold, int) else bool(value & bits[threshold])


def reference_selection(path, config) -> dict[int, dict[str, float]]:
    """The nominal selection and a few features, written as a plain loop over events."""
    sel, br = config["selection"], config["branches"]
    events = uproot.open(path)["Events"].arrays(library="ak")
    muon_pt_cut = max(sel["muon"]["pt"], sel["trigger"]["muon_pt"])
    expected = {}
    for ev in events.to_list():
        if sel["trigger"]["paths"] and not any(ev[p] for p in sel["trigger"]["paths"]):
            continue
        n_mu = len(ev["Muon_pt"])
        good_mu = [
            i
            for i in range(n_mu)
            if ev["Muon_pt"][i] > muon_pt_cut
            and abs(ev["Muon_eta"][i]) < sel["muon"]["eta"]
            and ev[br["muon_id"]][i]
            and ev[br["muon_iso"]][i] < sel["muon"]["iso"]
        ]
        if not good_mu:
            continue
        veto = sel["extra_muon_veto"]
        loose = [
            i
            for i in range(n_mu)
            if i in good_mu
            or (
                ev["Muon_pt"][i] > veto["pt"]
                and abs(ev["Muon_eta"][i]) < veto["eta"]
                and ev[br["muon_iso"]][i] < veto["iso"]
            )
        ]
        if len(loose) > 1:
            continue
        m = max(good_mu, key=lambda i: ev["Muon_pt"][i])
        good_tau = [
            j
            for j in range(len(ev["Tau_pt"]))
            if ev["Tau_pt"][j] > sel["tau"]["pt"]
            and abs(ev["Tau_eta"][j]) < sel["tau"]["eta"]
            and ev["Tau_decayMode"][j] in sel["tau"]["decay_modes"]
            and _passes_wp(ev[br["tau_id"]][j], sel["tau"]["id_min"], VSJET_BITS)
            and _passes_wp(ev[br["tau_antimu"]][j], sel["tau"]["antimu_min"], VSMU_BITS)
            and _delta_r(ev["Muon_eta"][m], ev["Muon_phi"][m], ev["Tau_eta"][j], ev["Tau_phi"][j])
            > sel["pair"]["min_dr"]
        ]
        if not good_tau:
            continue
        t = max(good_tau, key=lambda j: ev["Tau_pt"][j])
        jets = []
        for k in range(len(ev["Jet_pt"])):
            away = all(
                _delta_r(ev["Jet_eta"][k], ev["Jet_phi"][k], ev[f"{c}_eta"][i], ev[f"{c}_phi"][i])
                > sel["jet"]["min_dr"]
                for c, i in (("Muon", m), ("Tau", t))
            )
            if (
                ev["Jet_jetId"][k] >= sel["jet"]["id_min"]
                and away
                and ev["Jet_pt"][k] > sel["jet"]["pt"]
                and abs(ev["Jet_eta"][k]) < sel["jet"]["eta"]
            ):
                jets.append(k)
        jets.sort(key=lambda k: -ev["Jet_pt"][k])
        mu = _four_vector(
            ev["Muon_pt"][m], ev["Muon_eta"][m], ev["Muon_phi"][m], ev["Muon_mass"][m]
        )
        tau = _four_vector(ev["Tau_pt"][t], ev["Tau_eta"][t], ev["Tau_phi"][t], ev["Tau_mass"][t])
        met, met_phi = ev["MET_pt"], ev["MET_phi"]
        row = {
            "pt_1": ev["Muon_pt"][m], "pt_2": ev["Tau_pt"][t], "dm_2": ev["Tau_decayMode"][t],
            "m_vis": _mass(mu, tau), "mt_1": _mt(ev["Muon_pt"][m], ev["Muon_phi"][m], met, met_phi),
            "met": met, "njets": len(jets),
            "is_os": int(ev["Muon_charge"][m] * ev["Tau_charge"][t] < 0),
            "jpt_1": ev["Jet_pt"][jets[0]] if jets else MISSING,
            "mjj": (_mass(*[_four_vector(ev["Jet_pt"][k], ev["Jet_eta"][k], ev["Jet_phi"][k],
                                         ev["Jet_mass"][k]) for k in jets[:2]])
                    if len(jets) > 1 else MISSING),
        }  # fmt: skip
        # collinear approximation by Cramer's rule
        mx, my = met * math.cos(met_phi), met * math.sin(met_phi)
        det = mu[0] * tau[1] - tau[0] * mu[1]
        r1 = max((mx * tau[1] - my * tau[0]) / det, 0.0)
        r2 = max((mu[0] * my - mu[1] * mx) / det, 0.0)
        row["m_coll"] = row["m_vis"] * math.sqrt((1 + r1) * (1 + r2))
        expected[ev["event"]] = row
    return expected


def test_selection_and_features_match_a_plain_event_loop(ztt_skims, toy_files, default_config):
    expected = reference_selection(toy_files["ZTT"], default_config)
    skim = read_tree(ztt_skims / "nominal.root")
    assert len(expected) > 200, "the toy sample should select a few hundred events"
    assert sorted(skim["event"].tolist()) == sorted(expected)
    order = {event: i for i, event in enumerate(skim["event"].tolist())}
    for event, row in expected.items():
        i = order[event]
        for name, value in row.items():
            assert skim[name][i] == pytest.approx(value, rel=2e-4, abs=2e-3), (event, name)


def test_skim_has_all_features_and_keys(ztt_skims):
    skim = read_tree(ztt_skims / "nominal.root")
    assert len(FEATURES) >= 15
    for name in (
        *FEATURES,
        "run",
        "luminosityBlock",
        "event",
        "dm_2",
        "gen_match_2",
        "is_os",
        "w_gen",
    ):
        assert name in skim
    assert np.all(np.diff(skim["event"].astype(np.int64)) != 0)


def test_cutflow_is_consistent_with_the_skim(ztt_skims, toy_files):
    cutflow = read_json(ztt_skims / "nominal.cutflow.json")
    counts = [cut["events"] for cut in cutflow["cuts"]]
    assert counts[0] == uproot.open(toy_files["ZTT"])["Events"].num_entries
    assert counts == sorted(counts, reverse=True)
    assert counts[-1] == len(read_tree(ztt_skims / "nominal.root", ["event"])["event"])
    genweight = uproot.open(toy_files["ZTT"])["Events"]["genWeight"].array(library="np")
    assert cutflow["cuts"][0]["weighted"] == pytest.approx(genweight.sum(), rel=1e-6)
    assert cutflow["sumw"]["source"] == "Runs tree"


def _common(nominal, varied):
    _, i, j = np.intersect1d(nominal["event"], varied["event"], return_indices=True)
    return i, j


def test_tau_energy_scale_shifts_genuine_taus_only(ztt_skims, default_config):
    nominal = read_tree(ztt_skims / "nominal.root")
    sigma = {int(dm): value for dm, value in default_config["variations"]["tau_es"].items()}
    for direction, sign in (("up", 1), ("down", -1)):
        varied = read_tree(ztt_skims / f"tau_es_{direction}.root")
        i, j = _common(nominal, varied)
        genuine = nominal["gen_match_2"][i] == 5
        factor = 1 + sign * np.vectorize(sigma.get)(nominal["dm_2"][i])
        assert genuine.sum() > 100
        np.testing.assert_allclose(
            varied["pt_2"][j][genuine], nominal["pt_2"][i][genuine] * factor[genuine], rtol=1e-5
        )
        np.testing.assert_array_equal(varied["pt_2"][j][~genuine], nominal["pt_2"][i][~genuine])
        for unchanged in ("pt_1", "eta_2", "jpt_1", "njets"):
            np.testing.assert_array_equal(varied[unchanged][j], nominal[unchanged][i])
        assert not np.allclose(varied["met"][j], nominal["met"][i])
    # the selection reruns on shifted taus: the tau pT threshold moves events in or out
    counts = {
        v: len(read_tree(ztt_skims / f"{v}.root", ["event"])["event"])
        for v in ("tau_es_down", "nominal", "tau_es_up")
    }
    assert counts["tau_es_down"] < counts["nominal"] < counts["tau_es_up"]


def test_jet_energy_scale_shifts_jets_and_met_only(ztt_skims, default_config):
    nominal = read_tree(ztt_skims / "nominal.root")
    varied = read_tree(ztt_skims / "jet_es_up.root")
    i, j = _common(nominal, varied)
    both = (nominal["njets"][i] > 0) & (varied["njets"][j] == nominal["njets"][i])
    assert both.sum() > 20
    np.testing.assert_allclose(
        varied["jpt_1"][j][both],
        nominal["jpt_1"][i][both] * (1 + default_config["variations"]["jet_es"]),
        rtol=1e-5,
    )
    for unchanged in ("pt_1", "pt_2", "m_vis"):
        np.testing.assert_array_equal(varied[unchanged][j], nominal[unchanged][i])
    assert not np.allclose(varied["met"][j], nominal["met"][i])


def test_unclustered_met_shifts_met_only(ztt_skims, toy_files):
    nominal = read_tree(ztt_skims / "nominal.root")
    varied = read_tree(ztt_skims / "met_uncl_up.root")
    np.testing.assert_array_equal(varied["event"], nominal["event"])  # no MET cut: same events
    raw = uproot.open(toy_files["ZTT"])["Events"].arrays(
        ["event", "MET_pt", "MET_phi", "MET_MetUnclustEnUpDeltaX", "MET_MetUnclustEnUpDeltaY"],
        library="np",
    )
    index = {event: i for i, event in enumerate(raw["event"].tolist())}
    rows = [index[event] for event in nominal["event"].tolist()]
    mx = raw["MET_pt"][rows] * np.cos(raw["MET_phi"][rows]) + raw["MET_MetUnclustEnUpDeltaX"][rows]
    my = raw["MET_pt"][rows] * np.sin(raw["MET_phi"][rows]) + raw["MET_MetUnclustEnUpDeltaY"][rows]
    np.testing.assert_allclose(varied["met"], np.hypot(mx, my), rtol=1e-4)
    for unchanged in ("pt_1", "pt_2", "jpt_1", "m_vis"):
        np.testing.assert_array_equal(varied[unchanged], nominal[unchanged])


@pytest.fixture
def scheduler(tmp_path_factory):
    """The address of a running dask scheduler with two worker processes (on localhost, scratch
    space in a temporary directory), as a user of ``preselect.dask.mode: scheduler`` has."""
    from distributed import LocalCluster

    scratch = tmp_path_factory.mktemp("dask")
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, memory_limit=0, local_directory=str(scratch),
    ) as cluster:  # fmt: skip
        yield cluster.scheduler_address


@pytest.mark.parametrize("mode", ["local", "scheduler"])
def test_dask_gives_identical_skims(
    mode, request, tmp_path, ztt_skims, toy_files, default_config, default_samples
):
    """The skims of a dask run (a cluster the job starts, or a running scheduler it connects to)
    equal the in-process ones: fails on chunks lost, merged in another order, or a scheduler
    address not used (``mode: scheduler`` starting its own cluster or failing to connect)."""
    dask = {"mode": mode}
    if mode == "scheduler":
        dask["address"] = request.getfixturevalue("scheduler")
    run_preselection(
        "ZTT",
        default_samples["ZTT"],
        [str(toy_files["ZTT"])],
        preselect_settings(default_config),
        tmp_path,
        chunksize=700,
        workers=2,
        dask=dask,
    )
    if mode == "scheduler":
        from distributed import Client

        # the chunks ran on that scheduler's workers (their progress reports are in its event
        # log: one per chunk, all events), and the job left the scheduler and workers running
        with Client(dask["address"]) as client:
            reports = [events for _, events in client.get_events(executor.PROGRESS_TOPIC)]
            assert len(client.scheduler_info()["workers"]) == 2
        with uproot.open(toy_files["ZTT"]) as file:
            total = file["Events"].num_entries
        assert len(reports) == -(-total // 700) and sum(reports) == total
    for variation in ("nominal", "tau_es_up"):
        assert (tmp_path / f"{variation}.root").exists()
        ours, reference = (
            read_tree(tmp_path / f"{variation}.root"),
            read_tree(ztt_skims / f"{variation}.root"),
        )
        assert ours.keys() == reference.keys()
        for name in ours:
            np.testing.assert_array_equal(ours[name], reference[name])
    assert not list(tmp_path.glob(".chunks-*")), "scratch chunks are cleaned up"


def real_settings(default_config):
    """Preselection settings with tests/data/real_nanoaod_config.yaml merged as Snakemake does."""
    from snakemake.utils import update_config

    from analysis.core.config import load_yaml

    settings = preselect_settings(default_config)
    update_config(settings, load_yaml(DATA / "real_nanoaod_config.yaml"))
    return settings


#: Cuts loose enough that the two small real files keep events (the defaults keep none of the
#: 2015 ttbar file: its muon ID flags are all false, and its taus are mostly the muon itself).
LOOSE_REAL_CUTS = {
    "muon": {"pt": 10.0, "eta": 2.4, "iso": 0.3},
    "trigger": {"paths": [], "muon_pt": 10.0},
    "tau": {"pt": 20.0, "decay_modes": [0, 1, 10], "id_min": 1, "antimu_min": 1},
}


@pytest.mark.parametrize(
    ("filename", "overrides", "sumw_source", "entries"),
    [
        ("nano_dy.root", {}, "Runs tree", 40),
        (
            "nanoAOD_2015_CMS_Open_Data_ttbar.root",
            # Muon_isGlobal is filled; the two taus away from the muon fail the MVA ID
            {"branches": {"muon_id": "Muon_isGlobal"}, "selection": {"tau": {"id_min": 0}}},
            "processed events",
            200,
        ),
    ],
)
def test_real_cms_nanoaod_matches_a_plain_event_loop(
    tmp_path, default_config, filename, overrides, sumw_source, entries
):
    """Real NanoAOD (older versions: MVA tau ID, no Runs tree in 2015) through the preselection.

    Fails if a branch of an older NanoAOD is read wrongly (another ID column, the tau ID as a
    bitmask where the file has an integer), or a feature is computed from the wrong object.
    """
    from snakemake.utils import update_config

    settings = real_settings(default_config)
    update_config(settings["selection"], LOOSE_REAL_CUTS)
    update_config(settings, overrides)
    path = DATA / filename
    cutflows = run_preselection(
        "real", {"type": "mc", "process": "X", "xsec": 1.0}, [str(path)], settings, tmp_path,
        chunksize=25, dask={"mode": "none"},
    )  # fmt: skip
    nominal = cutflows["nominal"]
    assert nominal["cuts"][0]["events"] == entries
    assert nominal["sumw"]["source"] == sumw_source
    skim = read_tree(tmp_path / "nominal.root")
    assert nominal["cuts"][-1]["events"] == len(skim["event"])
    expected = reference_selection(path, settings)
    assert len(expected) >= 2, "the loosened cuts keep two events of each file"
    assert sorted(skim["event"].tolist()) == sorted(expected)
    order = {event: i for i, event in enumerate(skim["event"].tolist())}
    for event, row in expected.items():
        for name, value in row.items():
            assert skim[name][order[event]] == pytest.approx(value, rel=2e-4, abs=2e-3), (
                filename, event, name,
            )  # fmt: skip


def test_empty_selection_writes_valid_empty_outputs(
    tmp_path, toy_files, default_config, default_samples, caplog
):
    settings = preselect_settings(default_config)
    settings["selection"]["muon"]["pt"] = 1e5
    with caplog.at_level("WARNING"):
        cutflows = run_preselection(
            "ZTT",
            default_samples["ZTT"],
            [str(toy_files["ZTT"])],
            settings,
            tmp_path,
            chunksize=5000,
            dask={"mode": "none"},
        )
    assert cutflows["nominal"]["cuts"][-1]["events"] == 0
    tree = uproot.open(tmp_path / "nominal.root")["Events"]
    assert tree.num_entries == 0 and "m_vis" in tree.keys()
    assert "kept 0 events" in caplog.text


def test_missing_branch_names_file_branch_and_config_key(
    tmp_path, toy_files, default_config, default_samples
):
    settings = preselect_settings(default_config)
    settings["branches"]["tau_id"] = "Tau_idDeepTau2018v2p5VSjet"
    with pytest.raises(AnalysisError) as err:
        run_preselection(
            "ZTT",
            default_samples["ZTT"],
            [str(toy_files["ZTT"])],
            settings,
            tmp_path,
            chunksize=5000,
            dask={"mode": "none"},
        )
    message = str(err.value)
    assert "Tau_idDeepTau2018v2p5VSjet" in message and str(toy_files["ZTT"]) in message
    assert "branches.tau_id" in message and "\n" not in message
    assert not list(tmp_path.iterdir()), "nothing is written for a bad input"


def test_failed_rerun_keeps_previous_outputs(
    tmp_path, ztt_skims, toy_files, default_config, default_samples
):
    for path in ztt_skims.glob("nominal*"):
        shutil.copy(path, tmp_path / path.name)
    before = (tmp_path / "nominal.root").read_bytes()
    broken = tmp_path / "broken.root"
    broken.write_bytes(b"not a ROOT file")
    with pytest.raises(AnalysisError, match="cannot read"):
        run_preselection(
            "ZTT",
            default_samples["ZTT"],
            [str(broken)],
            preselect_settings(default_config),
            tmp_path,
            chunksize=5000,
            dask={"mode": "none"},
        )
    assert (tmp_path / "nominal.root").read_bytes() == before


def test_weight_array_too_short_is_a_clear_error(tmp_path, default_config):
    settings = real_settings(default_config)
    settings["weights"]["variations"]["ps_isr"] = {"array": "PSWeight", "up": 2, "down": 0}
    with pytest.raises(AnalysisError, match="PSWeight has fewer than 3 entries"):
        run_preselection(
            "tt",
            {"type": "mc", "process": "TT", "xsec": 1.0},
            [str(DATA / "nanoAOD_2015_CMS_Open_Data_ttbar.root")],
            settings,
            tmp_path,
            chunksize=100,
            dask={"mode": "none"},
        )
