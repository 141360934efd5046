"""The feature registry (builder/features/): each feature's folder, fields and templates are
its own, and core code gets every template, unit and counter through it."""

from __future__ import annotations

import shutil

import pytest
from chaostest import ROOT

from builder.config import load_cluster
from builder.errors import RenderError
from builder.features import FEATURES, node_context
from builder.features.feature import TEMPLATE_SUFFIX
from builder.image.base import templates_only
from builder.render import OVERLAYS, environment, render_templates, template_names
from builder.views import node_view


def test_every_overlay_folder_is_a_declared_feature_and_back():
    folders = sorted(d.name for d in OVERLAYS.iterdir() if d.is_dir())
    assert folders == sorted(f.name for f in FEATURES)


def test_only_for_names_templates_of_the_folder_and_fields_of_the_feature(default_cluster):
    node = default_cluster.nodes[0]
    core = node_view(default_cluster, node)
    for feature in FEATURES:
        own = feature.fields(default_cluster, node, core)
        for template, flag in feature.only_for.items():
            assert template.endswith(TEMPLATE_SUFFIX), (feature.name, template)
            assert (OVERLAYS / feature.name / template).is_file(), (feature.name, template)
            assert flag in own, f"{feature.name}: {template} waits for {flag}, not its field"


@pytest.mark.parametrize("case", ["all", "migration", "head"])
def test_no_two_features_give_a_field_of_the_same_name(case):
    """A feature's field that another one (or the core view) also sets would silently win."""
    cluster, _ = load_cluster(ROOT / "tests" / "golden" / f"{case}.yaml")
    for node in cluster.nodes:
        core = node_view(cluster, node)
        seen = {name: "core" for name in vars(core)}
        for feature in FEATURES:
            for name in feature.fields(cluster, node, core):
                assert name not in seen, f"{name}: from {seen[name]} and {feature.name}"
                seen[name] = feature.name


def test_a_folder_no_feature_declares_is_refused(tmp_path):
    overlays = tmp_path / "overlays"
    shutil.copytree(OVERLAYS, overlays, symlinks=True)
    (overlays / "gpu" / "etc").mkdir(parents=True)
    (overlays / "gpu" / "etc" / "gpu.conf.j2").write_text("{{ name }}\n")
    with pytest.raises(RenderError, match=r"overlays/gpu: no feature declares this folder"):
        template_names(overlays)


def test_templates_dir_holds_nothing_for_the_nodes():
    """templates/ is what the serve host renders for itself; a node's template left there
    (say, from a branch that predates the feature folders) would never be rendered."""
    stray = sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "templates").rglob("*")
        if p.is_file() and p.parts[len(ROOT.parts) + 1] == "etc"
    )
    assert not stray, f"node templates in templates/: move them to overlays/<feature>/: {stray}"


def test_a_node_gets_a_gated_template_only_when_its_feature_says_so(default_cluster):
    env, names = environment(), template_names()
    for node in default_cluster.nodes:
        context = node_context(default_cluster, node)
        tree = render_templates(context, env, names)
        assert ("etc/slurm/slurm.conf" in tree) == bool(context.fields["slurm_head"])
        assert ("etc/default/slurmd" in tree) == bool(context.fields["slurm_compute"])
        assert "etc/nftables.conf" in tree and "etc/tyd/tyd.json" in tree


def test_the_base_gets_every_static_file_and_no_template_nor_empty_folder(tmp_path):
    """What install_common_overlay copies: each feature's static files (links kept); the
    templates are each node's, and a folder of templates only must not leave an empty one."""
    for feature in FEATURES:
        shutil.copytree(
            OVERLAYS / feature.name,
            tmp_path,
            symlinks=True,
            dirs_exist_ok=True,
            ignore=templates_only,
        )
    copied = {
        p.relative_to(tmp_path).as_posix()
        for p in tmp_path.rglob("*")
        if p.is_symlink() or p.is_file()
    }
    static = {
        p.relative_to(OVERLAYS / f.name).as_posix()
        for f in FEATURES
        for p in (OVERLAYS / f.name).rglob("*")
        if (p.is_symlink() or p.is_file()) and not p.name.endswith(TEMPLATE_SUFFIX)
    }
    assert copied == static
    assert "etc/systemd/system/chaos-slurm.service" in copied
    empty = [p for p in tmp_path.rglob("*") if p.is_dir() and not any(p.iterdir())]
    assert not empty, empty
