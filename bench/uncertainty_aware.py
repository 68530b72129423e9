"""Demonstration of uncertainty-aware training on the 2D Gaussian toy of Wunsch et al. (issue 9).

Toy (``analysis/ml/gaussian_toy.py``): signal ~ N((0, 0), 1), background ~ N((1, 1), 1) with unit
uncorrelated covariances; one background systematic shifting x2 by +-1 (shifted copies of the
background events); normalised to 50 signal and 1000 background events. Network: one hidden layer
of 100 ReLU nodes, sigmoid output.
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
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis.ml.early_stopping import LoopSettings  # noqa: E402
from analysis.ml.gaussian_toy import (  # noqa: E402
    build_network,
    ce_loss,
    fisher_summary,
    make_sample,
    network_templates,
    pyhf_model,
    reference_templates,
    stacked_templates,
    train,
    ua_loss,
)
from analysis.ml.profile_scan import interval_68, profile_scan  # noqa: E402

# mu > 0: a negative signal would make the expected counts of signal-rich fine bins negative,
# and at mu = 0 a bin with signal but no background events has a zero expectation.
SCAN = np.linspace(0.02, 2.5, 125)


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
