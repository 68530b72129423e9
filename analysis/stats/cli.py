"""Command-line pieces every inference stage shares: the workspace and settings options."""

from __future__ import annotations

import argparse
import json
from typing import Any

from analysis.core.errors import AnalysisError


def add_workspace_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options every inference stage shares: workspace and settings."""
    parser.add_argument("--workspace", required=True, help="pyhf JSON workspace")
    parser.add_argument(
        "--settings",
        default="{}",
        help="the config's inference section as JSON, plus patch and patch_name",
    )


def parse_settings(text: str) -> dict[str, Any]:
    """The ``--settings`` JSON, with one clear line when it is malformed."""
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as err:
        raise AnalysisError(f"--settings: not valid JSON ({err})") from None
    if not isinstance(settings, dict):
        raise AnalysisError("--settings: must be a JSON object")
    return settings
