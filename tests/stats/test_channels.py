"""Per-era copies of the channels and their names (analysis/stats/channels.py)."""

from __future__ import annotations

from analysis.stats.channels import Channel, base_channel, era_channels


def test_era_channels_copy_every_channel_per_era():
    chans = [Channel("ggH", {"is_os": 1}, "max_score", 0), Channel("cr", {}, "mt_1")]
    copies = era_channels(chans, ["2018UL", "2024"])
    assert [c.name for c in copies] == ["ggH_2018UL", "cr_2018UL", "ggH_2024", "cr_2024"]
    assert copies[2].selection == {"is_os": 1} and copies[2].category == 0
    assert copies[3].observable == "mt_1" and copies[3].category is None


def test_base_channel_splits_off_a_known_era_only():
    eras = ["2018UL", "2024"]
    assert base_channel("wjets_highmt_2024", eras) == ("wjets_highmt", "2024")
    assert base_channel("wjets_highmt", eras) == ("wjets_highmt", None)
    assert base_channel("2024", eras) == ("2024", None)
