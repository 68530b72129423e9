"""What figures call things: axis titles of features and legend texts of processes and classes.

The table is the ``plots.labels`` config section (``features``, ``processes``, ``classes``: name ->
text, matplotlib mathtext allowed); a name without an entry is shown as it is. Every figure takes
its texts from here, so renaming a process in every legend is one config edit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from matplotlib.mathtext import MathTextParser

from analysis.core.errors import AnalysisError

#: The sections of ``plots.labels``.
SECTIONS = ("features", "processes", "classes")


class Labels(NamedTuple):
    """The label table: name -> display text per kind of name."""

    features: dict[str, str]
    processes: dict[str, str]
    classes: dict[str, str]

    def feature(self, name: str) -> str:
        """Axis title of a feature (skim column), with its unit."""
        return self.features.get(name, name)

    def process(self, name: str) -> str:
        """Legend text of a process (or sample)."""
        return self.processes.get(name, name)

    def output(self, name: str) -> str:
        """Name of a classifier class (the network output of that class)."""
        return self.classes.get(name, name)

    def nn_axis(self, name: str) -> str:
        """Axis title of the score of a classifier output: ``NN output: <class>``."""
        return f"NN output: {self.output(name)}"


def labels_from_settings(settings: Mapping[str, Any] | None) -> Labels:
    """The label table of the ``plots.labels`` section, every text checked to render.

    Raises:
        AnalysisError: naming the config key of a text matplotlib cannot typeset.
    """
    settings = settings or {}
    parser = MathTextParser("path")
    tables = {}
    for section in SECTIONS:
        table = {str(k): str(v) for k, v in (settings.get(section) or {}).items()}
        for name, text in table.items():
            _check_text(parser, text, f"plots.labels.{section}.{name}")
        tables[section] = table
    return Labels(**tables)


def _check_text(parser: MathTextParser, text: str, key: str) -> None:
    """Raise if the math parts (between ``$``) of ``text`` are not valid mathtext."""
    parts = text.replace(r"\$", "").split("$")
    if len(parts) % 2 == 0:
        raise AnalysisError(f"{key}: '{text}' has an unpaired '$'; pair them or escape as '\\$'")
    for math in parts[1::2]:
        try:
            parser.parse(f"${math}$")
        except ValueError as error:
            first = str(error).strip().splitlines()[-1]
            raise AnalysisError(f"{key}: '{text}' is not valid mathtext ({first})") from None
