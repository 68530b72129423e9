"""Choice of the torch device (analysis.core.device)."""

from __future__ import annotations

import pytest
import torch

from analysis.core.device import select_device
from analysis.core.errors import AnalysisError


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_device_selection_without_a_gpu():
    """``auto`` and ``cpu`` run on the CPU; ``cuda`` is one error line naming the config key
    (fails if ``auto`` demanded a GPU, or a missing GPU fell back silently where one was asked)."""
    assert select_device("auto", "inference.refits.device") == torch.device("cpu")
    assert select_device("cpu", "train.device") == torch.device("cpu")
    with pytest.raises(AnalysisError, match="'inference.refits.device' is 'cuda'"):
        select_device("cuda", "inference.refits.device")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_selection_with_a_gpu():
    """``auto`` and ``cuda`` use the GPU, ``cpu`` keeps the CPU."""
    assert select_device("auto", "train.device").type == "cuda"
    assert select_device("cuda", "train.device").type == "cuda"
    assert select_device("cpu", "train.device") == torch.device("cpu")
