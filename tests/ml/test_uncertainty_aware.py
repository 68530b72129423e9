"""Tests of the uncertainty-aware loss: histogram, likelihood, Fisher information, training.

Numbers are checked against independent computations: numpy histograms and per-bin loops,
the analytic Gaussian-kernel derivative, the analytic expected Fisher information, finite
differences, and pyhf's likelihood. A quick version of the issue's demonstration checks that the
uncertainty-aware training beats the cross entropy when a systematic matters.
"""

from __future__ import annotations

import numpy as np
import pyhf
import pytest
import torch
from torch import nn

from analysis.core.errors import AnalysisError
from analysis.ml.uncertainty_aware import (
    Binning,
    EventSet,
    LoopSettings,
    asimov_fisher,
    differentiable_histogram,
    expected_yields,
    interval_68,
    poi_nuisance_correlation,
    poi_variance,
    profile_scan,
    train_with_early_stopping,
    twice_nll,
    uncertainty_aware_loss,
)
from bench.uncertainty_aware import (
    make_sample,
    network_templates,
    pyhf_model,
    reference_templates,
    train,
)

DOUBLE = torch.float64


def _tiny_templates() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two processes (signal, background), 3 bins, two systematics, one affecting the signal."""
    nominal = torch.tensor([[15.0, 8.0, 2.0], [20.0, 40.0, 80.0]], dtype=DOUBLE)
    up = torch.tensor(
        [
            [[15.0, 8.0, 2.0], [26.0, 42.0, 70.0]],  # background shape
            [[16.5, 9.6, 2.0], [20.0, 40.0, 80.0]],  # signal shape
        ],
        dtype=DOUBLE,
    )
    down = torch.tensor(
        [
            [[15.0, 8.0, 2.0], [16.0, 37.0, 85.0]],
            [[13.2, 7.2, 2.2], [20.0, 40.0, 80.0]],
        ],
        dtype=DOUBLE,
    )
    signal = torch.tensor([True, False])
    return nominal, up, down, signal


def _analytic_fisher(nominal, up, down, signal, side: str) -> torch.Tensor:
    """J^T diag(1/nu) J + diag(0, 1, ..., 1), the derivatives written out by hand."""
    nu = nominal.sum(dim=0)
    rows = [nominal[signal].sum(dim=0)]
    for j in range(up.shape[0]):
        varied = (up[j] - nominal) if side == "up" else (nominal - down[j])
        rows.append(varied.sum(dim=0))
    jac = torch.stack(rows)  # (1 + S, B)
    fisher = (jac / nu) @ jac.T
    return fisher + torch.diag(torch.tensor([0.0] + [1.0] * up.shape[0], dtype=fisher.dtype))


# --- the differentiable histogram -------------------------------------------------------------


def test_histogram_forward_is_exact_binary():
    rng = np.random.default_rng(3)
    scores = rng.uniform(0, 1, 500)
    scores[:3] = [0.0, 1.0, 0.5]  # edges: 1.0 belongs to the last bin
    weights = rng.uniform(0.5, 2.0, 500)
    process = rng.integers(0, 3, 500)
    binning = Binning(8)
    hist = differentiable_histogram(
        EventSet(torch.tensor(scores), torch.tensor(weights), torch.tensor(process)), 3, binning
    )
    for p in range(3):
        expected, _ = np.histogram(
            scores[process == p], binning.edges(), weights=weights[process == p]
        )
        np.testing.assert_allclose(hist[p].detach().numpy(), expected, rtol=1e-12)


def test_histogram_forward_is_exact_multiclass():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(400, 3))
    scores = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    weights = rng.uniform(0.5, 2.0, 400)
    process = rng.integers(0, 2, 400)
    binning = Binning(4, n_classes=3)
    hist = (
        differentiable_histogram(
            EventSet(torch.tensor(scores), torch.tensor(weights), torch.tensor(process)), 2, binning
        )
        .detach()
        .numpy()
    )
    # Independent per-event loop: category = argmax, bin of the highest score on [1/3, 1].
    expected = np.zeros((2, 12))
    for score, weight, proc in zip(scores, weights, process, strict=True):
        category = int(np.argmax(score))
        index = min(int((score[category] - 1 / 3) / ((1 - 1 / 3) / 4)), 3)
        expected[proc, category * 4 + index] += weight
    np.testing.assert_allclose(hist, expected, rtol=1e-12)


def test_histogram_gradient_is_gaussian_kernel_of_half_bin_width():
    scores = torch.tensor([0.03, 0.41, 0.5, 0.97], dtype=DOUBLE, requires_grad=True)
    weights = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=DOUBLE)
    process = torch.tensor([0, 1, 0, 1])
    coefficients = torch.arange(1.0, 9.0, dtype=DOUBLE).reshape(1, 8) * torch.tensor(
        [[1.0], [-0.5]], dtype=DOUBLE
    )
    hist = differentiable_histogram(EventSet(scores, weights, process), 2, Binning(8))
    (hist * coefficients).sum().backward()
    centres = (np.arange(8) + 0.5) / 8
    sigma = 0.5 / 8
    expected = []
    for x, w, p in zip(scores.detach().numpy(), weights.numpy(), process.numpy(), strict=True):
        kernel_derivative = -(x - centres) / sigma**2 * np.exp(-0.5 * ((x - centres) / sigma) ** 2)
        expected.append(w * np.sum(coefficients[p].numpy() * kernel_derivative))
    np.testing.assert_allclose(scores.grad.numpy(), expected, rtol=1e-10)


def test_histogram_weight_gradient_is_the_exact_indicator():
    scores = torch.tensor([0.1, 0.6], dtype=DOUBLE)
    weights = torch.tensor([1.0, 1.0], dtype=DOUBLE, requires_grad=True)
    hist = differentiable_histogram(EventSet(scores, weights, torch.tensor([0, 0])), 1, Binning(2))
    hist[0, 1].backward()
    assert weights.grad.tolist() == [0.0, 1.0]


# --- likelihood and Fisher information --------------------------------------------------------


def test_interpolation_is_asymmetric_linear():
    nominal, up, down, signal = _tiny_templates()
    for mu, eta1, eta2 in ((1.3, 0.7, -0.4), (0.8, -1.2, 0.5)):
        params = torch.tensor([mu, eta1, eta2], dtype=DOUBLE)
        got = expected_yields(params, nominal, up, down, signal).numpy()
        expected = np.zeros(3)
        for p in range(2):
            templ = nominal[p].numpy().copy()
            for j, eta in enumerate((eta1, eta2)):
                templ += max(eta, 0) * (up[j, p] - nominal[p]).numpy()
                templ += min(eta, 0) * (nominal[p] - down[j, p]).numpy()
            expected += (mu if signal[p] else 1.0) * templ
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_likelihood_matches_pyhf_code0():
    nominal, up, down, _ = _tiny_templates()
    templates = {
        "signal": nominal[0].numpy(),
        "background": nominal[1].numpy(),
        "up": up[0, 1].numpy(),
        "down": down[0, 1].numpy(),
    }
    model = pyhf_model(templates, systematic=True)
    pyhf.set_backend("numpy")
    data = np.asarray(model.expected_data(model.config.suggested_init()))
    asimov = torch.tensor(data[:3], dtype=DOUBLE)
    poi = model.config.poi_index
    values = []
    for mu, eta in ((1.0, 0.0), (1.4, 0.8), (0.6, -1.3)):
        pars = np.zeros(2)
        pars[poi], pars[1 - poi] = mu, eta
        ours = twice_nll(
            torch.tensor([mu, eta], dtype=DOUBLE),
            asimov,
            nominal,
            up[:1],
            down[:1],
            _tiny_templates()[3],
        )
        values.append((float(ours), float(-2 * model.logpdf(pars, data)[0])))
    # Same up to a constant: compare differences to the first point.
    ours, theirs = np.array(values).T
    np.testing.assert_allclose(ours - ours[0], theirs - theirs[0], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("side", ["up", "down"])
def test_fisher_matches_analytic_and_finite_differences(side):
    nominal, up, down, signal = _tiny_templates()
    fisher = asimov_fisher(nominal, up, down, signal, side, create_graph=False)
    torch.testing.assert_close(fisher, _analytic_fisher(nominal, up, down, signal, side))
    # Finite differences of the exact (kinked) likelihood, one-sided into the chosen side.
    asimov = nominal.sum(dim=0)
    sign = 1.0 if side == "up" else -1.0
    h = 1e-4
    point = np.array([1.0, 0.0, 0.0])

    def half_nll(params: np.ndarray) -> float:
        p = torch.tensor(params, dtype=DOUBLE)
        return 0.5 * float(twice_nll(p, asimov, nominal, up, down, signal))

    numeric = np.zeros((3, 3))
    for i in range(3):
        for k in range(3):
            # Steps in the nuisances go only towards `side`, staying on one branch of the kink.
            step_i = np.eye(3)[i] * h * (sign if i else 1.0)
            step_k = np.eye(3)[k] * h * (sign if k else 1.0)
            f = half_nll
            second = (
                f(point + step_i + step_k) - f(point + step_i) - f(point + step_k) + f(point)
            ) / h**2
            numeric[i, k] = second * (sign if i else 1.0) * (sign if k else 1.0)
    np.testing.assert_allclose(fisher.numpy(), numeric, rtol=2e-3, atol=2e-3)


def test_fisher_gradient_equals_gradient_of_expected_information():
    """The Asimov data follow the templates, so d(loss)/d(templates) is that of J^T V^-1 J."""
    nominal, up, down, signal = _tiny_templates()
    grads = []
    for fisher_fn in (
        lambda n: asimov_fisher(n, up, down, signal, "up"),
        lambda n: _analytic_fisher(n, up, down, signal, "up"),
    ):
        templ = nominal.clone().requires_grad_(True)
        poi_variance(fisher_fn(templ)).backward()
        grads.append(templ.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_poi_variance_and_correlation_against_numpy_inverse():
    nominal, up, down, signal = _tiny_templates()
    fisher = asimov_fisher(nominal, up, down, signal, "down", create_graph=False)
    covariance = np.linalg.inv(fisher.numpy())
    assert float(poi_variance(fisher)) == pytest.approx(covariance[0, 0], rel=1e-12)
    expected = covariance[0, 1:] / np.sqrt(covariance[0, 0] * np.diag(covariance)[1:])
    np.testing.assert_allclose(poi_nuisance_correlation(fisher).numpy(), expected, rtol=1e-12)


def test_stat_only_variance_is_inverse_of_sum_s2_over_b():
    nominal, _, _, signal = _tiny_templates()
    empty = nominal.new_zeros((0, 2, 3))
    variance = poi_variance(asimov_fisher(nominal, empty, empty, signal))
    s, total = nominal[0].numpy(), nominal.sum(dim=0).numpy()
    assert float(variance.detach()) == pytest.approx(1.0 / np.sum(s**2 / total), rel=1e-12)


def test_profile_scan_matches_pyhf_interval():
    """Our profiled Asimov scan against pyhf's likelihood profiled by minuit on a smooth case."""
    nominal, up, down, signal = _tiny_templates()
    mu_values = np.linspace(0.0, 2.5, 51)
    ours = profile_scan(
        mu_values, nominal.numpy(), up[:1].numpy(), down[:1].numpy(), signal.numpy()
    )
    templates = {
        "signal": nominal[0].numpy(),
        "background": nominal[1].numpy(),
        "up": up[0, 1].numpy(),
        "down": down[0, 1].numpy(),
    }
    model = pyhf_model(templates, systematic=True)
    pyhf.set_backend("numpy", "scipy")
    init = model.config.suggested_init()
    bounds = model.config.suggested_bounds()
    bounds[model.config.poi_index] = (-5.0, 5.0)
    data = model.expected_data(init)
    minimum = float(pyhf.infer.mle.fit(data, model, par_bounds=bounds, return_fitted_val=True)[1])
    theirs = [
        float(
            pyhf.infer.mle.fixed_poi_fit(
                mu, data, model, par_bounds=bounds, return_fitted_val=True
            )[1]
        )
        - minimum
        for mu in mu_values
    ]
    np.testing.assert_allclose(ours, theirs, atol=2e-4)
    lo, hi = interval_68(mu_values, ours)
    assert lo < 1.0 < hi


def test_interval_68_linear_interpolation_and_error():
    mu = np.linspace(0, 2, 21)
    curve = ((mu - 1.0) / 0.5) ** 2
    lo, hi = interval_68(mu, curve)
    assert (lo, hi) == pytest.approx((0.5, 1.5), abs=0.01)
    with pytest.raises(AnalysisError, match="widen the scan range"):
        interval_68(mu, curve / 100)


# --- the loss on network outputs ---------------------------------------------------------------


def test_loss_gradient_reaches_every_network_parameter_binary_and_multiclass():
    torch.manual_seed(0)
    x = torch.randn(300, 2)
    process = torch.randint(0, 3, (300,))
    weights = torch.full((300,), 2.0)
    for n_classes in (1, 3):
        network = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, n_classes))

        def scores(inputs: torch.Tensor, network: nn.Module = network, k: int = n_classes):
            out = network(inputs)
            return torch.sigmoid(out[:, 0]) if k == 1 else torch.softmax(out, dim=1)

        nominal = EventSet(scores(x), weights, process)
        shifted = EventSet(scores(x + torch.tensor([0.0, 0.5])), weights, process)
        lowered = EventSet(scores(x - torch.tensor([0.0, 0.5])), weights, process)
        loss = uncertainty_aware_loss(
            nominal, {"shift": (shifted, lowered)}, [0], 3, Binning(5, n_classes)
        )
        loss.backward()
        assert torch.isfinite(loss) and loss > 0
        for parameter in network.parameters():
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all()
            assert parameter.grad.abs().sum() > 0


def test_bad_inputs_give_one_clear_error():
    events = EventSet(torch.rand(10, 3), torch.ones(10), torch.zeros(10, dtype=torch.long))
    with pytest.raises(AnalysisError, match=r"shape \(N,\)"):
        differentiable_histogram(events, 1, Binning(4))
    with pytest.raises(AnalysisError, match=r"shape \(N, 2\)"):
        differentiable_histogram(events, 1, Binning(4, 2))
    with pytest.raises(AnalysisError, match="bins must be >= 1"):
        Binning(0)
    with pytest.raises(AnalysisError, match="train.uncertainty_aware.signal"):
        uncertainty_aware_loss(events, {}, [5], 2, Binning(4, 3))


# --- training ----------------------------------------------------------------------------------


def test_early_stopping_stops_after_patience_and_restores_best():
    torch.manual_seed(0)
    network = nn.Linear(1, 1)
    validation = iter([5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 3.3, 9.0, 9.0])
    kept = {}

    def val_loss() -> torch.Tensor:
        value = next(validation)
        if value == 3.0:
            kept["state"] = {k: v.clone() for k, v in network.state_dict().items()}
        return torch.tensor(value)

    def train_loss() -> torch.Tensor:
        return (network(torch.ones(1, 1)) ** 2).sum()

    history = train_with_early_stopping(
        network, train_loss, train_loss, val_loss, LoopSettings(1, 100, 4, 0.1)
    )
    # 1 pre-training step (validation 5.0), the start of the full phase (4.0), then 3.0 is best
    # at full step 0 and four worse steps stop the loop.
    assert history.phase == ["pretrain"] + ["full"] * 5
    assert history.best_step == 0 and history.best_validation == 3.0
    for name, value in network.state_dict().items():
        torch.testing.assert_close(value, kept["state"][name])


def test_training_is_reproducible():
    generator = torch.Generator().manual_seed(5)
    train_sample, val_sample = make_sample(500, generator), make_sample(500, generator)
    settings = LoopSettings(3, 5, 5, 0.01)
    histories = [train("ua_syst", train_sample, val_sample, settings, seed=2)[1] for _ in range(2)]
    assert histories[0].train == histories[1].train
    assert histories[0].validation == histories[1].validation


def _asimov_width(templates: dict[str, np.ndarray], systematic: bool) -> float:
    """Width of the Asimov 68% interval from the module's profile scan (empty bins dropped)."""
    nominal = np.stack([templates["signal"], templates["background"]])
    if systematic:
        up = np.stack([[templates["signal"], templates["up"]]])
        down = np.stack([[templates["signal"], templates["down"]]])
    else:
        up = down = np.zeros((0, 2, nominal.shape[1]))
    keep = nominal.sum(axis=0) > 0
    mu = np.linspace(0.05, 2.5, 99)
    lo, hi = interval_68(
        mu,
        profile_scan(
            mu, nominal[:, keep], up[:, :, keep], down[:, :, keep], np.array([1, 0], bool)
        ),
    )
    return hi - lo


def test_quick_demonstration_uncertainty_aware_beats_cross_entropy():
    """The issue's acceptance on a small toy: narrower with the systematic, same without."""
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(11)
    samples = [make_sample(10_000, generator) for _ in range(3)]
    settings = LoopSettings(pretrain_steps=30, max_steps=400, patience=30, learning_rate=0.01)
    widths, correlations = {}, {}
    for kind in ("cross_entropy", "ua_stat", "ua_syst"):
        network, _ = train(kind, samples[0], samples[1], settings, seed=1)
        templates = network_templates(network, samples[2])
        widths[kind] = {syst: _asimov_width(templates, syst) for syst in (False, True)}
        nominal = torch.tensor(np.stack([templates["signal"], templates["background"]]))
        up = torch.tensor(np.stack([[templates["signal"], templates["up"]]]))
        down = torch.tensor(np.stack([[templates["signal"], templates["down"]]]))
        fisher = asimov_fisher(nominal, up, down, torch.tensor([True, False]), "up", False)
        correlations[kind] = abs(float(poi_nuisance_correlation(fisher)[0]))
    reference = reference_templates(n_bins=40)
    ref_width = _asimov_width(reference, True)
    assert widths["ua_syst"][True] < 0.9 * widths["cross_entropy"][True]
    assert widths["ua_syst"][True] < 1.2 * ref_width
    assert correlations["ua_syst"] < 0.5 * correlations["cross_entropy"]
    assert widths["ua_stat"][False] == pytest.approx(widths["cross_entropy"][False], rel=0.05)


def _three_class_sample(n_events: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Signal at (0, 0), background A at (1, 1) with the x2 shift systematic, B at (-1, 1)."""
    means = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-1.0, 1.0]])
    x = torch.randn(3, n_events, 2, generator=generator) + means[:, None, :]
    shift = torch.tensor([0.0, 1.0])
    inputs = x.reshape(-1, 2)
    process = torch.arange(3).repeat_interleave(n_events)
    weights = torch.tensor([50.0, 800.0, 200.0]).repeat_interleave(n_events) / n_events
    varied_a = {sign: x.clone() for sign in (1.0, -1.0)}
    for sign, values in varied_a.items():
        values[1] += sign * shift
    return {
        "x": inputs,
        "up": varied_a[1.0].reshape(-1, 2),
        "down": varied_a[-1.0].reshape(-1, 2),
        "process": process,
        "weights": weights,
    }


def _multiclass_ua_loss(network: nn.Module, sample: dict[str, torch.Tensor]) -> torch.Tensor:
    def events(inputs: torch.Tensor) -> EventSet:
        return EventSet(torch.softmax(network(inputs), dim=1), sample["weights"], sample["process"])

    variations = {"shift": (events(sample["up"]), events(sample["down"]))}
    return uncertainty_aware_loss(events(sample["x"]), variations, [0], 3, Binning(4, 3))


def _multiclass_ce_loss(network: nn.Module, sample: dict[str, torch.Tensor]) -> torch.Tensor:
    # Class-balanced: each process gets the same total weight.
    weights = sample["weights"] / torch.tensor([50.0, 800.0, 200.0])[sample["process"]]
    losses = nn.functional.cross_entropy(network(sample["x"]), sample["process"], reduction="none")
    return (weights * losses).sum() / weights.sum()


def test_multiclass_uncertainty_aware_training_beats_cross_entropy():
    """Max-score categories of a 3-class network: the trained loss beats the cross entropy's."""
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(21)
    train_s, val_s, test_s = (_three_class_sample(4000, generator) for _ in range(3))
    settings = LoopSettings(pretrain_steps=0, max_steps=300, patience=30, learning_rate=0.01)
    variances = {}
    for kind in ("cross_entropy", "uncertainty_aware"):
        torch.manual_seed(3)
        network = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 3))
        loss = _multiclass_ce_loss if kind == "cross_entropy" else _multiclass_ua_loss
        train_with_early_stopping(
            network,
            lambda network=network, loss=loss: loss(network, train_s),
            lambda network=network, loss=loss: loss(network, train_s),
            lambda network=network, loss=loss: loss(network, val_s),
            settings,
        )
        with torch.no_grad():
            variances[kind] = float(_multiclass_ua_loss(network, test_s))
    assert variances["uncertainty_aware"] < 0.9 * variances["cross_entropy"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_loss_on_cuda_matches_cpu():
    generator = torch.Generator().manual_seed(8)
    sample = _three_class_sample(2000, generator)
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3)).double()
    cpu = _multiclass_ua_loss(
        network, {k: v.double() if v.is_floating_point() else v for k, v in sample.items()}
    )
    device = torch.device("cuda")
    network = network.to(device)
    cuda_sample = {
        k: (v.double() if v.is_floating_point() else v).to(device) for k, v in sample.items()
    }
    gpu = _multiclass_ua_loss(network, cuda_sample)
    gpu.backward()
    assert float(gpu) == pytest.approx(float(cpu), rel=1e-9)
    assert all(torch.isfinite(p.grad).all() for p in network.parameters())
