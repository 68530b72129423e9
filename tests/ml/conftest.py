"""Shared fixtures of the uncertainty-aware tests: tiny templates and their pyhf model."""

from __future__ import annotations

import pyhf
import pytest
import torch

from analysis.ml.gaussian_toy import pyhf_model

Templates = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


@pytest.fixture()
def tiny_templates() -> Templates:
    """Two processes (signal, background), 3 bins, two systematics, one affecting the signal."""
    double = torch.float64
    nominal = torch.tensor([[15.0, 8.0, 2.0], [20.0, 40.0, 80.0]], dtype=double)
    up = torch.tensor(
        [
            [[15.0, 8.0, 2.0], [26.0, 42.0, 70.0]],  # background shape
            [[16.5, 9.6, 2.0], [20.0, 40.0, 80.0]],  # signal shape
        ],
        dtype=double,
    )
    down = torch.tensor(
        [
            [[15.0, 8.0, 2.0], [16.0, 37.0, 85.0]],
            [[13.2, 7.2, 2.2], [20.0, 40.0, 80.0]],
        ],
        dtype=double,
    )
    signal = torch.tensor([True, False])
    return nominal, up, down, signal


@pytest.fixture()
def tiny_pyhf_model(tiny_templates: Templates) -> pyhf.pdf.Model:
    """pyhf model of the tiny templates with the first (background) systematic."""
    nominal, up, down, _ = tiny_templates
    templates = {
        "signal": nominal[0].numpy(),
        "background": nominal[1].numpy(),
        "up": up[0, 1].numpy(),
        "down": down[0, 1].numpy(),
    }
    return pyhf_model(templates, systematic=True)
