"""The torch device a stage runs on, chosen the same way by training and by the batched refits."""

from __future__ import annotations

from typing import TYPE_CHECKING

from analysis.core.errors import AnalysisError

if TYPE_CHECKING:  # torch is imported by the stages that compute, not by every core user
    import torch


def select_device(preference: str, key: str) -> torch.device:
    """``cpu``, ``cuda`` (requires a visible GPU) or ``auto`` (CUDA when visible, else the CPU).

    ``key`` is the config key the preference came from, named in the error.
    """
    import torch

    if preference == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if preference == "cuda":
        raise AnalysisError(
            f"config: key '{key}' is 'cuda' but no GPU is visible; "
            "use 'auto' to fall back to the CPU"
        )
    return torch.device("cpu")
