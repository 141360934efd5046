"""The reference the build writes: computed from the boot files, public (no secrets),
written atomically, read back exactly; and the build step that writes it."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from measuredlab import NODE, SERVER, boot_files, cluster

from builder.image.pxe import GRUB_NET_CFG, kernel_cmdline
from builder.measured.authenticode import authenticode_file
from builder.measured.reference import (
    REFERENCE_FILE,
    SHIM_SIGNED,
    ReferenceError,
    load_reference,
    prefix_pattern,
    write_reference,
)
from builder.measured.step import write_measured_reference


def test_the_reference_pins_this_builds_files(reference, tmp_path: Path):
    files = boot_files(tmp_path)
    apps = {a.name: a.authenticode for a in reference.applications}
    assert apps["shim"] == authenticode_file(SHIM_SIGNED)
    assert apps["kernel"] == authenticode_file(files.kernel)
    assert reference.kernel == hashlib.sha256(files.kernel.read_bytes()).hexdigest()
    assert reference.initrd == hashlib.sha256(files.initrd.read_bytes()).hexdigest()
    assert reference.grub_configs == (hashlib.sha256(GRUB_NET_CFG.encode()).hexdigest(),)
    node = reference.node(NODE)
    mac = cluster().node(NODE).mac.lower()
    assert node.overlay == hashlib.sha256(b"overlay of node01").hexdigest()
    ctx = SimpleNamespace(cluster=cluster())
    assert reference.kernel_args == kernel_cmdline(ctx)  # type: ignore[arg-type]
    for command in (
        f"configfile (tftp)/grub/mac-{mac}.cfg",
        f"linux (tftp)/vmlinuz {reference.kernel_args}",
        "initrd (tftp)/initrd.img (tftp)/nodes/node01.cpio",
        "boot",
    ):
        assert command in node.grub_commands
    assert [n.name for n in reference.nodes] == [n.name for n in cluster().nodes]


def test_the_prelude_allows_this_server_and_local_disks_only():
    pattern = re.compile(prefix_pattern(SERVER) + r"\Z")
    for ok in (
        "(tftp,10.99.0.1)/grub",
        "(hd0)/EFI/debian",
        "(hd0,gpt1)/EFI/debian",
        "(cd0)/boot/grub",
    ):
        assert pattern.match(ok), ok
    for bad in (
        "(tftp,10.99.0.66)/grub",
        "(http,10.99.0.1)/grub",
        "(hd0)/EFI/evil",
        "(tftp,10.99.0.1)/grub/../x",
    ):
        assert not pattern.match(bad), bad
    assert re.compile(prefix_pattern(None) + r"\Z").match("(tftp,192.0.2.1)/grub")


def test_written_atomically_and_read_back_exactly(reference, tmp_path: Path):
    path = tmp_path / REFERENCE_FILE
    write_reference(reference, path)
    assert load_reference(path) == reference
    assert sorted(p.name for p in tmp_path.iterdir()) == [REFERENCE_FILE]


def test_a_failed_write_keeps_the_last_good_reference(
    reference, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path = tmp_path / REFERENCE_FILE
    path.write_text("the last good one\n")

    def refuse(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError):
        write_reference(reference, path)
    assert path.read_text() == "the last good one\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [REFERENCE_FILE]


def test_a_bad_reference_file_is_a_typed_error(reference, tmp_path: Path):
    path = tmp_path / REFERENCE_FILE
    for text, why in (
        ("{", "cannot read"),
        ('{"format": "other/1"}', "not a chaos-measured"),
        (reference.to_json().replace('"kernel":', '"kernel": 1, "x":'), "not a chaos-measured"),
    ):
        path.write_text(text)
        with pytest.raises(ReferenceError, match=why):
            load_reference(path)


def test_the_build_step_writes_a_public_reference_beside_the_output(tmp_path: Path):
    if not SHIM_SIGNED.exists():
        pytest.skip("shim-signed is not installed")
    c = cluster()
    files = boot_files(tmp_path / "base")
    # a node overlay carries the node's secrets; the reference must hold only their hash
    secret = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    ctx = SimpleNamespace(
        cluster=c,
        nodes=c.nodes,
        base_dir=files.kernel.parent,
        node_cpios={n.name: b"cpio " + secret for n in c.nodes},
        bundle_cpio=b"bundle " + secret,
        node=None,
        base_key="0123abcd",
        staging=tmp_path / "staging",
    )
    ctx.staging.mkdir()
    assert write_measured_reference(ctx)  # type: ignore[arg-type]
    text = (ctx.staging / REFERENCE_FILE).read_text()
    written = load_reference(ctx.staging / REFERENCE_FILE)
    assert written.node(NODE).overlay == hashlib.sha256(b"cpio " + secret).hexdigest()
    # the ISO's path (chaos.yaml builds one): its one GRUB config and the bundle, by hash
    assert written.iso is not None
    assert written.iso.overlay == hashlib.sha256(b"bundle " + secret).hexdigest()
    assert written.iso.marker == hashlib.sha256(f"{c.cluster.name}\n".encode()).hexdigest()
    assert (
        "search --no-floppy --file --set=root /boot/chaos-0123abcd.id" in written.iso.grub_commands
    )
    assert secret.decode() not in text and "PRIVATE" not in text
    assert str(c.serve.address) in written.prefix_pattern.replace("\\", "")
    assert json.loads(text)["format"] == "chaos-measured-reference/1"
