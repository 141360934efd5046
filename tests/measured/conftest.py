"""Fixtures of the measured-boot tests: the reference of a test build; a fresh software TPM
per test (PCRs start at zero on each swtpm start)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from measuredlab import make_reference

from builder.enroll.swtpm import SoftTpm, free_ports, start_swtpm
from builder.measured.reference import GRUB_NET_SIGNED, SHIM_SIGNED, Reference


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    if not (SHIM_SIGNED.exists() and GRUB_NET_SIGNED.exists()):
        pytest.skip("shim-signed and grub-efi-amd64-signed are not installed")
    return make_reference(tmp_path_factory.mktemp("boot"))


@pytest.fixture
def soft_tpm(tmp_path: Path) -> Iterator[SoftTpm]:
    if shutil.which("swtpm") is None:
        pytest.skip("swtpm is not installed (apt-get install swtpm)")
    tpm = start_swtpm(tmp_path / "tpm", free_ports(2))
    try:
        yield tpm
    finally:
        tpm.stop()
