"""Each feature's model section (Feature.model, builder/<feature>/model.py): declared in the
feature's folder, found by the core loader, reference, `show` and validator through FEATURES,
and named by none of them."""

from __future__ import annotations

import ast
import dataclasses

import pytest
from chaostest import ROOT

from builder.config import load_cluster_text
from builder.errors import ConfigError
from builder.features import FEATURES, models, top_level
from builder.head.model import HeadModel
from builder.model import Cluster
from builder.night.model import NightModel, ScheduleSection

# the core modules that must ask FEATURES instead of naming a feature's section
# (show.py asks the night for its boot-answer row: a use of the feature, not of its model)
CORE = ("model", "config", "validate", "reference", "checks", "settings")
BASE = (ROOT / "chaos.yaml").read_text()


def test_every_top_level_key_is_declared_once():
    names = [k.name for k in top_level()]
    assert len(names) == len(set(names))
    cluster_keys = {f.name for f in dataclasses.fields(Cluster) if "help" in f.metadata}
    for model in models():
        own = {f.name for f in dataclasses.fields(model)}
        assert not own & cluster_keys, f"{model.__name__} redeclares a core key"


def test_a_feature_model_follows_the_key_it_names():
    names = [k.name for k in top_level()]
    for feature in FEATURES:
        if feature.model is None:
            assert not feature.model_after
            continue
        first = dataclasses.fields(feature.model)[0].name
        assert names[names.index(first) - 1] in (
            feature.model_after,
            *(f.name for f in dataclasses.fields(feature.model)),
        )
        assert feature.model_after in names


def test_the_night_and_the_head_own_their_sections():
    by_model = {f.model: f.name for f in FEATURES if f.model is not None}
    assert by_model[NightModel] == "night" and by_model[HeadModel] == "head"
    owners = {k.name: k.owner for k in top_level()}
    assert owners["schedule"] is NightModel
    assert owners["users"] is owners["users_file"] is owners["login_from"] is HeadModel
    assert owners["serve"] is Cluster and owners["nodes"] is Cluster


def test_core_modules_name_no_feature_section():
    for name in CORE:
        tree = ast.parse((ROOT / "builder" / f"{name}.py").read_text())
        imported = {
            node.module or ""
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level >= 1
        }
        named = {m for m in imported if m.split(".")[0] in ("night", "head")}
        assert not named, f"builder/{name}.py imports {named}: ask FEATURES instead"


def test_a_loaded_cluster_has_every_section_and_section_finds_it():
    cluster = load_cluster_text(BASE)
    assert {type(part) for part in cluster.sections} == set(models())
    assert cluster.section(NightModel).schedule == ScheduleSection()  # chaos.yaml sets none
    assert cluster.section(HeadModel).users == ()


def test_with_section_replaces_one_section_in_place():
    cluster = load_cluster_text(BASE)
    night = NightModel(schedule=ScheduleSection(windows=("17:00-09:00",)))
    changed = cluster.with_section(night)
    assert changed.section(NightModel) is night
    assert [type(p) for p in changed.sections] == [type(p) for p in cluster.sections]
    assert changed.section(HeadModel) is cluster.section(HeadModel)
    assert cluster.section(NightModel).schedule.windows == ()  # frozen: a new cluster


def test_a_model_no_feature_declares_is_a_lookup_error():
    @dataclasses.dataclass(frozen=True)
    class Stray:
        pass

    with pytest.raises(LookupError, match="Stray: no feature declares"):
        load_cluster_text(BASE).section(Stray)


def test_a_misspelt_feature_key_is_refused_with_the_feature_keys_as_hints():
    with pytest.raises(ConfigError) as bad:
        load_cluster_text(BASE + "schedul:\n  windows: [17:00-09:00]\n")
    assert "schedul: unknown key; did you mean 'schedule'?" in str(bad.value)
    with pytest.raises(ConfigError) as bad:
        load_cluster_text(BASE + "login_fro: [192.0.2.0/24]\n")
    assert "login_fro: unknown key; did you mean 'login_from'?" in str(bad.value)


def test_sections_is_no_chaos_yaml_key():
    with pytest.raises(ConfigError) as bad:
        load_cluster_text(BASE + "sections: []\n")
    assert "sections: unknown key" in str(bad.value)


def test_a_feature_sections_problems_carry_file_line_and_field():
    text = BASE + "schedule:\n  windows: [17:00-09:00]\n  time_zone: Europe/Berln\n"
    line = text.splitlines().index("  time_zone: Europe/Berln") + 1
    with pytest.raises(ConfigError) as bad:
        load_cluster_text(text)
    assert (
        f"chaos.yaml:{line}: schedule.time_zone: unknown time zone 'Europe/Berln'; "
        "did you mean 'Europe/Berlin'?" in str(bad.value)
    )
