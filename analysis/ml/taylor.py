"""Taylor-coefficient ranking of the network inputs.

Method of Wunsch et al., "Identifying the relevant dependencies of the neural network response on
characteristics of the input space" (Comput. Softw. Big Sci. 2 (2018) 5): for each output class
``f``, with standardised inputs ``x``, the weighted means over events of

- first order: ``<|df/dx_i|>``,
- second order: ``1/2 <|d2f/dx_i2|>`` and ``<|d2f/dx_i dx_j|>`` for ``i < j``,

computed with autograd (``torch.func``), in batches. A large coefficient means the output depends
strongly on that input (or pair of inputs) where the events are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.func import hessian, jacrev, vmap

#: Events per batch; memory grows with batch x classes x features^2.
TAYLOR_BATCH = 2048


def taylor_coefficients(
    network: torch.nn.Module, standardized: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean absolute first- and second-order derivatives of the softmax outputs.

    Args:
        network: returns logits; softmax is applied here.
        standardized: standardised inputs, shape (events, features).
        weights: per-event weights (normalised by the caller, e.g. per class).

    Returns:
        ``first`` of shape (classes, features) with ``<|df/dx_i|>`` and ``second`` of shape
        (classes, features, features) with ``<|d2f/dx_i dx_j|>`` (the full symmetric matrix,
        without the 1/2 of the diagonal terms).
    """
    network = network.eval()

    def outputs(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(network(x.unsqueeze(0)), dim=1)[0]

    gradient, curvature = vmap(jacrev(outputs)), vmap(hessian(outputs))
    first = second = None
    total = float(np.sum(weights))
    for start in range(0, len(standardized), TAYLOR_BATCH):
        x = torch.from_numpy(np.ascontiguousarray(standardized[start : start + TAYLOR_BATCH]))
        w = torch.from_numpy(np.asarray(weights[start : start + TAYLOR_BATCH], np.float32))
        grads = gradient(x).abs().detach()  # (batch, classes, features)
        hessians = curvature(x).abs().detach()  # (batch, classes, features, features)
        batch_first = torch.einsum("b,bcf->cf", w, grads)
        batch_second = torch.einsum("b,bcfg->cfg", w, hessians)
        first = batch_first if first is None else first + batch_first
        second = batch_second if second is None else second + batch_second
    return (first / total).double().numpy(), (second / total).double().numpy()


def ranked_terms(
    first: np.ndarray, second: np.ndarray, features: Sequence[str], classes: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """All first- and second-order terms per class, sorted by decreasing coefficient.

    Each term is ``{"variables": [...], "order": 1 or 2, "value": float}``; the diagonal
    second-order terms carry the 1/2 of the Taylor expansion.
    """
    ranking = {}
    n_features = len(features)
    for c, name in enumerate(classes):
        terms = [
            {"variables": [features[i]], "order": 1, "value": float(first[c, i])}
            for i in range(n_features)
        ]
        for i in range(n_features):
            for j in range(i, n_features):
                factor = 0.5 if i == j else 1.0
                terms.append(
                    {
                        "variables": [features[i], features[j]],
                        "order": 2,
                        "value": float(factor * second[c, i, j]),
                    }
                )
        ranking[name] = sorted(terms, key=lambda term: (-term["value"], term["variables"]))
    return ranking
