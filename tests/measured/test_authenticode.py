"""Authenticode sha256 of PE images: equal to what OVMF and shim logged into PCR 4 in the
probe (probes/measured-boot), to osslsigncode's, and unchanged by the signatures."""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from measuredlab import tiny_pe

from builder.measured.authenticode import NotAPeImage, authenticode_file, authenticode_sha256
from builder.measured.reference import GRUB_NET_SIGNED, GRUB_SIGNED, SHIM_SIGNED

# (file sha256, Authenticode sha256 the firmware/shim logged in PCR 4) from the probe's
# event logs: shim-signed 1.51~1+deb12u1+16.1-2~deb12u1, grub-efi-amd64-signed
# 1+2.06+13+deb12u2 (probes/measured-boot/README.md, evidence/run-*.analysis.txt)
LOGGED = {
    SHIM_SIGNED: (
        "0fc347af103ec1dfac6e3f184c0a5241a2ce756a0932b359c404d39c45423806",
        "80a66d53a945d2286fcadd780fae1c225aa732079cd67b5225dc78aaab4e2ff8",
    ),
    GRUB_SIGNED: (
        "78313ff24688c8b2e1d4f4e1eff13236b2bd29b0f76ba749fd7fff4d305a1d94",
        "a68f6d71ebddaa19751ff8d729f67d11b0df8e4c49400c3e7e90de16119e1265",
    ),
    GRUB_NET_SIGNED: (
        "a376f239f40fc54aa63e343f3d2ab254c4a1ebcaec1a3fe5de0497aa640362d9",
        "f85e271fd67bfb46fc14e90af0962f311de7e6a77ce46d210244835ccac469ed",
    ),
}
needs_osslsigncode = pytest.mark.skipif(
    shutil.which("osslsigncode") is None, reason="osslsigncode is not installed"
)


@pytest.mark.parametrize("path", list(LOGGED), ids=lambda p: p.name)
def test_digest_is_what_the_firmware_logged_for_the_probed_package(path: Path):
    if not path.exists():
        pytest.skip(f"{path} is not installed (shim-signed, grub-efi-amd64-signed)")
    file_sha, logged = LOGGED[path]
    if hashlib.sha256(path.read_bytes()).hexdigest() != file_sha:
        pytest.skip(f"{path} is another version than the probe's")
    assert authenticode_file(path) == logged


def oracle(path: Path) -> str:
    r = subprocess.run(
        ["osslsigncode", "verify", "-in", str(path)], capture_output=True, text=True, timeout=60
    )
    found = re.search(r"Calculated message digest\s*:\s*([0-9A-F]+)", r.stdout)
    assert found, r.stdout + r.stderr
    return found.group(1).lower()


@needs_osslsigncode
@pytest.mark.parametrize("path", [GRUB_SIGNED, GRUB_NET_SIGNED], ids=lambda p: p.name)
def test_digest_equals_osslsigncodes(path: Path):
    if not path.exists():
        pytest.skip(f"{path} is not installed")
    assert authenticode_file(path) == oracle(path)


@needs_osslsigncode
def test_removing_the_signature_keeps_the_digest(tmp_path: Path):
    if not GRUB_SIGNED.exists():
        pytest.skip("grub-efi-amd64-signed is not installed")
    bare = tmp_path / "grub-unsigned.efi"
    subprocess.run(
        ["osslsigncode", "remove-signature", "-in", str(GRUB_SIGNED), "-out", str(bare)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert bare.stat().st_size < GRUB_SIGNED.stat().st_size
    assert authenticode_file(bare) == authenticode_file(GRUB_SIGNED)


def test_checksum_and_certificate_table_are_not_hashed():
    plain = tiny_pe(b"code")
    signed = tiny_pe(b"code", cert_table=b"\x08\x00\x00\x00\x00\x02\x02\x00" + b"sig" * 8)
    assert authenticode_sha256(plain) == authenticode_sha256(signed)
    patched = bytearray(plain)
    patched[0x58 + 64] ^= 0xFF  # CheckSum
    assert authenticode_sha256(bytes(patched)) == authenticode_sha256(plain)
    assert authenticode_sha256(tiny_pe(b"other code")) != authenticode_sha256(plain)
    assert authenticode_sha256(tiny_pe(b"code", pe32_plus=False)) != authenticode_sha256(plain)


@pytest.mark.parametrize(
    "data, why",
    [
        (b"", "no MZ header"),
        (b"MZ" + bytes(10), "truncated"),
        (b"MZ" + bytes(0x3A) + b"\x40\0\0\0" + b"XX\0\0", "no PE signature"),
    ],
)
def test_not_a_pe_image_is_a_typed_error(data: bytes, why: str):
    with pytest.raises(NotAPeImage, match=why):
        authenticode_sha256(data)


@given(st.binary(max_size=2048), st.integers(0, 1023), st.binary(min_size=1, max_size=8))
def test_any_bytes_give_a_digest_or_not_a_pe_image(noise: bytes, at: int, patch: bytes):
    image = bytearray(tiny_pe(noise))
    image[at : at + len(patch)] = patch
    with contextlib.suppress(NotAPeImage):
        assert len(authenticode_sha256(bytes(image))) == 32
