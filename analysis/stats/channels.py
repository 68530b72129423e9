"""The histogrammed regions (channels) and their event selections.

Channels: one per classifier class (events whose argmax class it is, observable ``max_score``)
and the configured control regions (any observable, fixed edges). Same-sign copies of every
channel (``ss_{channel}``) feed the QCD estimate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from analysis.core.eras import era_name

#: Prefix of the same-sign copies of the channels (QCD estimate).
SAME_SIGN = "ss_"


@dataclass(frozen=True)
class Channel:
    """A histogrammed region: a selection, an observable, and for NN channels a category index."""

    name: str
    selection: Mapping[str, Any]
    observable: str
    category: int | None = None


def channels(settings: Mapping[str, Any], classes: Sequence[str]) -> list[Channel]:
    """NN categories (one per class, in the signal region) and the control regions."""
    region = settings["signal_region"]
    result = [Channel(name, region, "max_score", index) for index, name in enumerate(classes)]
    for name, spec in (settings.get("control_regions") or {}).items():
        result.append(Channel(name, spec["selection"], spec["observable"]))
    return result


def same_sign(channel: Channel) -> Channel:
    """The same-sign copy of a channel: identical cuts with ``is_os`` = 0."""
    return Channel(
        SAME_SIGN + channel.name, {**channel.selection, "is_os": 0}, channel.observable,
        channel.category,
    )  # fmt: skip


def selection_columns(chans: Sequence[Channel]) -> list[str]:
    """Columns the channel selections and observables read."""
    names = {"event", "is_os", "category"}
    for channel in chans:
        names.update(channel.selection)
        names.add(channel.observable)
    return sorted(names)


def selection_mask(columns: Mapping[str, np.ndarray], selection: Mapping[str, Any]) -> np.ndarray:
    """Events passing every cut: a column equal to a value, or in ``[low, high)`` for a
    ``[low, high]`` pair (``None``/null for an open end)."""
    mask = np.ones(len(next(iter(columns.values()))), dtype=bool)
    for name, cut in selection.items():
        values = columns[name]
        if isinstance(cut, list):
            low, high = cut
            if low is not None:
                mask &= values >= low
            if high is not None:
                mask &= values < high
        else:
            mask &= values == cut
    return mask


def passes(columns: Mapping[str, np.ndarray], channel: Channel) -> np.ndarray:
    """Events in ``channel``: its selection and, for an NN channel, its category."""
    mask = selection_mask(columns, channel.selection)
    if channel.category is not None:
        mask &= columns["category"] == channel.category
    return mask


def era_channels(chans: Sequence[Channel], eras: Sequence[str]) -> list[Channel]:
    """One copy of every channel per era, named ``<channel>_<era>`` (``eras.channels:
    per_era``), era by era; the selections are the same, each copy holds one era's samples."""
    return [
        Channel(
            era_name(channel.name, era), channel.selection, channel.observable, channel.category
        )  # fmt: skip
        for era in eras
        for channel in chans
    ]


def base_channel(name: str, eras: Sequence[str]) -> tuple[str, str | None]:
    """A channel name split into the configured channel and its era (``None`` when the name
    carries no era): ``ggH_2018UL`` -> ``("ggH", "2018UL")``. Era names hold no underscore."""
    head, _, tail = name.rpartition("_")
    return (head, tail) if head and tail in eras else (name, None)
