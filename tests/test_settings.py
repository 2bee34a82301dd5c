"""Settings as declared classes (``profiles``): attributes, a read-only mapping, checks at construction, a
description for every field, and no store key changed by how settings are declared."""

from __future__ import annotations

import dataclasses
import json

import pytest

from reprolib import profiles
from tests.planned import PROFILES, SNAPSHOT, planned


@pytest.mark.parametrize("profile", PROFILES)
def test_the_plans_choose_the_same_models_and_settings_as_the_snapshot(profile):
    """Settings choose configs, they are no keys: every resolved setting and every planned model key (less the
    code digest) is what ``tests/data/planned.json`` holds (written by ``python -m tests.planned``)."""
    was, now = json.loads(SNAPSHOT.read_text())[profile], planned(profile)
    assert sorted(now) == sorted(was)
    for nid in was:
        assert now[nid]["settings"] == was[nid]["settings"], nid
        assert now[nid]["models"] == was[nid]["models"], nid


@pytest.mark.parametrize("nid", list(profiles.SETTINGS))
def test_settings_read_as_attributes_and_as_a_read_only_mapping(nid):
    P = profiles.settings(nid, "smoke")
    assert isinstance(P, profiles.CLASSES[nid]) and P.profile == "smoke"
    assert set(P) == set(profiles.SETTINGS[nid]["smoke"]) | {"profile"}
    assert all(P[k] == getattr(P, k) for k in P) and P.get("no such setting", 5) == 5
    with pytest.raises(KeyError):
        P["seedz"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        P.claims_strict = True


@pytest.mark.parametrize("nid", list(profiles.SETTINGS))
def test_every_setting_is_described_and_shown(nid):
    P = profiles.settings(nid, "cpu")
    table = P.table()
    assert list(table.index)[0] not in ("profile", "device")  # the notebook's own settings first
    assert set(table.index) == set(P) and (table["meaning"].str.len() > 10).all()
    assert table.loc["threads", "value"] == repr(P.threads)


def test_a_bad_value_fails_at_construction_too():
    P = profiles.settings("02", "smoke")
    assert P.replace(seeds=7).seeds == 7 and P.seeds == 48
    with pytest.raises(ValueError, match=r"Regimes: seeds=0 is not allowed: a positive integer"):
        P.replace(seeds=0)
    with pytest.raises(ValueError, match=r"curve_seeds=True is not allowed: a positive integer"):
        dataclasses.replace(P, curve_seeds=True)


def test_checks_keep_the_value_as_given():
    """A check converts nothing: an integer stays an integer where a number is asked (its repr is in keys)."""
    P = profiles.settings("04", "smoke", guidance=0, guidance_sweep=[0, 2])
    assert repr(P.guidance) == "0" and repr(P.guidance_sweep) == "[0, 2]"
    assert profiles.settings("02", "smoke", steps={"16": 3, "256": 4}).steps == {16: 3, 256: 4}
