"""Fixtures of the figure tests: the fitted tiny workspace with the later stages' outputs."""

from __future__ import annotations

import pytest

from tests.plots.inputs import write_fit_inputs


@pytest.fixture(scope="session")
def fit_inputs(tmp_path_factory):
    """The tiny workspace, its fit with pyhf/minuit (fit.json contract) and fake later outputs."""
    directory = tmp_path_factory.mktemp("fit")
    model, fit = write_fit_inputs(directory)
    return directory, model, fit
