"""Demonstration of uncertainty-aware training on the 2D Gaussian toy of Wunsch et al. (issue 9).

Toy: signal ~ N((0, 0), 1), background ~ N((1, 1), 1) with unit uncorrelated covariances; one
background systematic shifting x2 by +-1 (shifted copies of the background events); normalised to
50 signal and 1000 background events. Network: one hidden layer of 100 ReLU nodes, sigmoid output.
Training and validation samples of ``--events`` events per process each, early stopping after
``--patience`` steps without improvement, evaluation on an independent sample of the same size,
8 bins of the network output.

Prints, for the statistical-only model and for the model with the systematic, the expected 68%
interval of mu from a profile-likelihood scan (pyhf, ``histosys``) on the Asimov dataset of the
test events, and the mu-nuisance correlation (pyhf fit, minuit), for: cross-entropy training;
uncertainty-aware training; and a near-optimal reference, a fine 2D binned likelihood in (x1, x2)
with the same systematic (exact bin contents from the Gaussian CDFs, so free of sample noise).
One interval is cross-checked with the module's own likelihood (:func:`profile_scan`).

As a benchmark, it also prints the time of one uncertainty-aware loss step (forward + backward) as
a ratio to one cross-entropy step on the same events, measured in the same run.

Usage: python bench/uncertainty_aware.py [--events 100000] [--patience 100] [--seed 1]
           [--threads 1] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyhf
import torch
from scipy.optimize import minimize_scalar
from scipy.special import ndtr
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis.ml.asimov_likelihood import (  # noqa: E402
    asimov_fisher,
    poi_nuisance_correlation,
    poi_variance,
)
from analysis.ml.differentiable_histogram import Binning, EventSet  # noqa: E402
from analysis.ml.early_stopping import LoopSettings, train_with_early_stopping  # noqa: E402
from analysis.ml.profile_scan import interval_68, profile_scan  # noqa: E402
from analysis.ml.uncertainty_aware import uncertainty_aware_loss  # noqa: E402

SIGNAL_MEAN = (0.0, 0.0)
BACKGROUND_MEAN = (1.0, 1.0)
SHIFT = 1.0  # the systematic moves the background in x2 by +-SHIFT
SIGNAL_YIELD = 50.0
BACKGROUND_YIELD = 1000.0
N_BINS = 8
# mu > 0: a negative signal would make the expected counts of signal-rich fine bins negative,
# and at mu = 0 a bin with signal but no background events has a zero expectation.
SCAN = np.linspace(0.02, 2.5, 125)


def make_sample(n_events: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Signal, nominal background and its up/down shifted copies, with yield-normalised weights."""
    signal = torch.randn(n_events, 2, generator=generator, dtype=torch.float64)
    signal += torch.tensor(SIGNAL_MEAN, dtype=torch.float64)
    background = torch.randn(n_events, 2, generator=generator, dtype=torch.float64)
    background += torch.tensor(BACKGROUND_MEAN, dtype=torch.float64)
    shift = torch.tensor([0.0, SHIFT], dtype=torch.float64)
    return {
        "signal": signal.float(),
        "background": background.float(),
        "up": (background + shift).float(),
        "down": (background - shift).float(),
        "w_signal": torch.full((n_events,), SIGNAL_YIELD / n_events),
        "w_background": torch.full((n_events,), BACKGROUND_YIELD / n_events),
    }


def build_network(seed: int) -> nn.Sequential:
    """One hidden layer of 100 ReLU nodes and a sigmoid output, seeded."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 100), nn.ReLU(), nn.Linear(100, 1), nn.Sigmoid())


def _score(network: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    return network(inputs).squeeze(1)


def ua_loss(network: nn.Module, sample: dict[str, torch.Tensor], systematic: bool) -> torch.Tensor:
    """Uncertainty-aware loss of ``network`` on ``sample`` (process 0 signal, 1 background)."""
    n_sig, n_bkg = len(sample["signal"]), len(sample["background"])
    process = torch.cat([torch.zeros(n_sig, dtype=torch.long), torch.ones(n_bkg, dtype=torch.long)])
    weights = torch.cat([sample["w_signal"], sample["w_background"]])
    signal_scores = _score(network, sample["signal"])
    nominal = EventSet(
        torch.cat([signal_scores, _score(network, sample["background"])]), weights, process
    )
    variations = {}
    if systematic:
        # The systematic affects only the background: the signal enters with its nominal events.
        variations["shift"] = (
            EventSet(torch.cat([signal_scores, _score(network, sample["up"])]), weights, process),
            EventSet(torch.cat([signal_scores, _score(network, sample["down"])]), weights, process),
        )
    return uncertainty_aware_loss(nominal, variations, [0], 2, Binning(N_BINS))


def ce_loss(network: nn.Module, sample: dict[str, torch.Tensor]) -> torch.Tensor:
    """Binary cross entropy with both classes weighted to the same total."""
    scores = torch.cat([_score(network, sample["signal"]), _score(network, sample["background"])])
    target = torch.cat([torch.ones(len(sample["signal"])), torch.zeros(len(sample["background"]))])
    weights = torch.cat(
        [
            torch.full((len(sample["signal"]),), 0.5 / len(sample["signal"])),
            torch.full((len(sample["background"]),), 0.5 / len(sample["background"])),
        ]
    )
    return nn.functional.binary_cross_entropy(scores, target, weight=weights, reduction="sum")


def train(
    kind: str, train_sample: dict, val_sample: dict, settings: LoopSettings, seed: int
) -> tuple[nn.Module, Any]:
    """Train one network: ``cross_entropy``, ``ua_stat`` or ``ua_syst``."""
    network = build_network(seed)
    if kind == "cross_entropy":
        history = train_with_early_stopping(
            network,
            lambda: ce_loss(network, train_sample),
            lambda: ce_loss(network, train_sample),
            lambda: ce_loss(network, val_sample),
            LoopSettings(0, settings.max_steps, settings.patience, settings.learning_rate),
        )
    else:
        systematic = kind == "ua_syst"
        history = train_with_early_stopping(
            network,
            lambda: ua_loss(network, train_sample, False),
            lambda: ua_loss(network, train_sample, systematic),
            lambda: ua_loss(network, val_sample, systematic),
            settings,
        )
    return network, history


def network_templates(network: nn.Module, sample: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """8-bin templates of the network output on ``sample`` (exact counts)."""
    edges = Binning(N_BINS).edges()
    with torch.no_grad():
        hists = {}
        for name, weight in (
            ("signal", "w_signal"),
            ("background", "w_background"),
            ("up", "w_background"),
            ("down", "w_background"),
        ):
            scores = _score(network, sample[name]).double().numpy()
            hists[name] = np.histogram(
                np.clip(scores, 0, 1), edges, weights=sample[weight].double().numpy()
            )[0]
    return hists


def reference_templates(
    n_bins: int = 50, low: float = -4.5, high: float = 5.5
) -> dict[str, np.ndarray]:
    """Fine 2D templates in (x1, x2) from the Gaussian CDFs; the outer bins take the overflow."""
    edges = np.linspace(low, high, n_bins + 1)
    edges[0], edges[-1] = -np.inf, np.inf

    def binned(mean_x1: float, mean_x2: float) -> np.ndarray:
        p1 = np.diff(ndtr(edges - mean_x1))
        p2 = np.diff(ndtr(edges - mean_x2))
        return np.outer(p1, p2).ravel()

    mx, my = BACKGROUND_MEAN
    return {
        "signal": SIGNAL_YIELD * binned(*SIGNAL_MEAN),
        "background": BACKGROUND_YIELD * binned(mx, my),
        "up": BACKGROUND_YIELD * binned(mx, my + SHIFT),
        "down": BACKGROUND_YIELD * binned(mx, my - SHIFT),
    }


def pyhf_model(templates: dict[str, np.ndarray], systematic: bool) -> pyhf.pdf.Model:
    """A one-channel pyhf model: signal with normfactor mu, background with an optional histosys."""
    modifiers = []
    if systematic:
        modifiers.append(
            {
                "name": "shift",
                "type": "histosys",
                "data": {
                    "hi_data": templates["up"].tolist(),
                    "lo_data": templates["down"].tolist(),
                },
            }
        )
    spec = {
        "channels": [
            {
                "name": "nn",
                "samples": [
                    {
                        "name": "signal",
                        "data": templates["signal"].tolist(),
                        "modifiers": [{"name": "mu", "type": "normfactor", "data": None}],
                    },
                    {
                        "name": "background",
                        "data": templates["background"].tolist(),
                        "modifiers": modifiers,
                    },
                ],
            }
        ]
    }
    # pyhf's default histosys interpolation is code4p (polynomial); code0 is the piecewise-linear
    # interpolation of the issue and of the training loss.
    settings = {"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code0"}}
    return pyhf.Model(spec, poi_name="mu", validate=False, modifier_settings=settings)


def pyhf_result(templates: dict[str, np.ndarray], systematic: bool) -> dict[str, Any]:
    """Asimov profile-likelihood interval of mu and the mu-nuisance correlation with pyhf."""
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-4))
    # A bin without expected events carries no information, and 0 * log(0) is nan in pyhf.
    filled = (templates["signal"] + templates["background"]) > 0
    templates = {name: values[filled] for name, values in templates.items()}
    model = pyhf_model(templates, systematic)
    poi = model.config.poi_index
    init = model.config.suggested_init()
    bounds = model.config.suggested_bounds()
    bounds[poi] = (-5.0, 5.0)
    data = np.asarray(model.expected_data(init))
    best, corr, best_nll = pyhf.infer.mle.fit(
        data,
        model,
        init_pars=init,
        par_bounds=bounds,
        return_correlations=True,
        return_fitted_val=True,
    )
    scan = [
        _fixed_poi_twice_nll(float(mu), data, model, init, bounds, templates) - float(best_nll)
        for mu in SCAN
    ]
    lo, hi = interval_68(SCAN, np.array(scan))
    correlation = float(np.asarray(corr)[poi, 1 - poi]) if systematic else 0.0
    return {
        "interval": [lo, hi],
        "width": hi - lo,
        "correlation": correlation,
        "mu_hat": float(np.asarray(best)[poi]),
    }


def _fixed_poi_twice_nll(
    mu: float,
    data: np.ndarray,
    model: pyhf.pdf.Model,
    init: list,
    bounds: list,
    templates: dict[str, np.ndarray],
) -> float:
    """pyhf's -2 ln L at fixed mu, profiled over the (at most one) nuisance parameter.

    The histosys interpolation has a kink at 0, where gradient-based minimisers (minuit) can stall;
    a bounded 1D minimisation on each side of the kink finds the profiled minimum reliably.
    """
    poi = model.config.poi_index

    def twice_nll(eta: float) -> float:
        pars = np.array(init, dtype=float)
        pars[poi] = mu
        if model.config.npars > 1:
            pars[1 - poi] = eta
        return float(-2.0 * model.logpdf(pars, data)[0])

    if model.config.npars == 1:
        return twice_nll(0.0)
    if model.config.npars > 2:
        raise ValueError("the demonstration profiles one nuisance parameter only")
    low, high = bounds[1 - poi]
    # Keep the background counts non-negative (the likelihood is undefined beyond): on each side,
    # the interpolation reaches 0 in a bin at eta = nom / (nom - varied) where varied < nom.
    nom, up, down = (templates[name] for name in ("background", "up", "down"))
    for varied, sign in ((up, 1.0), (down, -1.0)):
        falls = varied < nom
        reach = float(np.min(nom[falls] / (nom[falls] - varied[falls]), initial=np.inf))
        high, low = (
            (min(high, 0.999 * reach), low) if sign > 0 else (high, max(low, -0.999 * reach))
        )
    sides = [
        minimize_scalar(twice_nll, bounds=side, method="bounded", options={"xatol": 1e-7})
        for side in ((low, 0.0), (0.0, high))
    ]
    return min(min(float(side.fun) for side in sides), twice_nll(0.0))


def stacked_templates(
    templates: dict[str, np.ndarray], systematic: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nominal ``(2, B)`` and up/down ``(S, 2, B)`` arrays (signal, background) of the likelihood.

    The systematic moves the background only; without it, ``S = 0``.
    """
    nominal = np.stack([templates["signal"], templates["background"]])
    if not systematic:
        empty = np.zeros((0, *nominal.shape))
        return nominal, empty, empty
    up = np.stack([[templates["signal"], templates["up"]]])
    down = np.stack([[templates["signal"], templates["down"]]])
    return nominal, up, down


def fisher_summary(templates: dict[str, np.ndarray], systematic: bool) -> dict[str, float]:
    """sqrt((F^-1)_{mu,mu}) and the mu-nuisance correlation from the one-sided Asimov Fishers."""
    nominal, up, down = map(torch.tensor, stacked_templates(templates, systematic))
    signal = torch.tensor([True, False])
    result = {}
    for side in ("up", "down"):
        fisher = asimov_fisher(nominal, up, down, signal, side, create_graph=False)
        correlation = float(poi_nuisance_correlation(fisher)[0]) if systematic else 0.0
        result[side] = {"sigma": float(poi_variance(fisher)) ** 0.5, "correlation": correlation}
    return result


def own_interval(templates: dict[str, np.ndarray]) -> tuple[float, float]:
    """The interval with the systematic from the module's own likelihood (cross-check of pyhf)."""
    curve = profile_scan(SCAN, *stacked_templates(templates), np.array([True, False]))
    return interval_68(SCAN, curve)


def step_time_ratio(sample: dict[str, torch.Tensor], repeats: int = 5) -> float:
    """Time of one uncertainty-aware step (with the systematic) over one cross-entropy step."""
    network = build_network(0)

    def timed(loss_fn) -> float:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            network.zero_grad()
            loss_fn().backward()
            best = min(best, time.perf_counter() - start)
        return best

    return timed(lambda: ua_loss(network, sample, True)) / timed(lambda: ce_loss(network, sample))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the demonstration and print the table; returns the numbers."""
    args = _parse_args(argv)
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(args.seed)
    samples = {split: make_sample(args.events, generator) for split in ("train", "val", "test")}
    settings = LoopSettings(args.pretrain_steps, args.max_steps, args.patience, args.learning_rate)
    networks = train_all(samples["train"], samples["val"], settings, args.seed)
    rows = result_rows(networks, samples["test"])
    ratio = step_time_ratio(samples["train"])
    print_results(rows, ratio)
    result = {"rows": rows, "step_time_ratio": ratio, "settings": vars(args)}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per process and split")
    parser.add_argument("--patience", type=int, default=100)
    parser.add_argument("--pretrain-steps", type=int, default=100)
    parser.add_argument("--max-steps", type=int, default=5000)
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    return parser.parse_args(argv)


def train_all(
    train_sample: dict, val_sample: dict, settings: LoopSettings, seed: int
) -> dict[str, nn.Module]:
    """The cross-entropy, statistical-only and with-systematic uncertainty-aware networks."""
    networks = {}
    for kind in ("cross_entropy", "ua_stat", "ua_syst"):
        start = time.perf_counter()
        network, history = train(kind, train_sample, val_sample, settings, seed)
        networks[kind] = network
        print(
            f"trained {kind}: {len(history.train)} steps, best full-loss step {history.best_step}, "
            f"{time.perf_counter() - start:.0f} s",
            flush=True,
        )
    return networks


def result_rows(networks: dict[str, nn.Module], test_sample: dict) -> dict[str, dict[str, Any]]:
    """pyhf intervals and Fisher summaries of the reference and of each network's templates."""
    reference = reference_templates()
    rows: dict[str, dict[str, Any]] = {
        "reference": {
            "stat": pyhf_result(reference, False),
            "syst": {**pyhf_result(reference, True), "fisher": fisher_summary(reference, True)},
        }
    }
    for kind, network in networks.items():
        templates = network_templates(network, test_sample)
        row = {}
        for label, systematic in (("stat", False), ("syst", True)):
            row[label] = pyhf_result(templates, systematic)
            row[label]["fisher"] = fisher_summary(templates, systematic)
        rows[kind] = row
        if kind == "ua_syst":
            rows[kind]["syst"]["own_interval"] = list(own_interval(templates))
    return rows


def print_results(rows: dict[str, dict[str, Any]], ratio: float) -> None:
    """The table of intervals and correlations, the width ratios and the step-time ratio."""
    # The uncertainty-aware row: trained with the systematic for the column with the systematic,
    # and on the statistical part only for the statistical-only column.
    table = {
        "cross-entropy": (rows["cross_entropy"]["stat"], rows["cross_entropy"]["syst"]),
        "uncertainty-aware": (rows["ua_stat"]["stat"], rows["ua_syst"]["syst"]),
        "reference (2D fine binning)": (rows["reference"]["stat"], rows["reference"]["syst"]),
    }
    print()
    print(
        "| training | stat. only: 68% interval (width) | with systematic: 68% interval (width) "
        "| corr(mu, nuisance): pyhf fit | Fisher eta->0+ / eta->0- |"
    )
    print("|---|---|---|---|---|")
    for name, (stat, syst) in table.items():
        fisher = syst["fisher"]
        print(
            f"| {name} | [{stat['interval'][0]:.3f}, {stat['interval'][1]:.3f}] "
            f"({stat['width']:.3f}) | [{syst['interval'][0]:.3f}, {syst['interval'][1]:.3f}] "
            f"({syst['width']:.3f}) | {syst['correlation']:+.2f} "
            f"| {fisher['up']['correlation']:+.2f} / {fisher['down']['correlation']:+.2f} |"
        )
    ce, ua, ref = (table[name][1]["width"] for name in table)
    ce_stat, ua_stat = table["cross-entropy"][0]["width"], table["uncertainty-aware"][0]["width"]
    own = rows["ua_syst"]["syst"]["own_interval"]
    print()
    print(f"with systematic: uncertainty-aware / cross-entropy width = {ua / ce:.3f}")
    print(f"with systematic: uncertainty-aware / reference width = {ua / ref:.3f}")
    print(f"stat. only: uncertainty-aware / cross-entropy width = {ua_stat / ce_stat:.3f}")
    print(
        f"cross-check, uncertainty-aware with systematic: pyhf "
        f"[{table['uncertainty-aware'][1]['interval'][0]:.4f}, "
        f"{table['uncertainty-aware'][1]['interval'][1]:.4f}], own likelihood "
        f"[{own[0]:.4f}, {own[1]:.4f}]"
    )
    print(f"time of one uncertainty-aware step / one cross-entropy step: {ratio:.2f}")


if __name__ == "__main__":
    main()
