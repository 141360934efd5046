"""The firmware a smoke VM boots: SeaBIOS (QEMU's default, the BIOS/iPXE path) or OVMF,
the UEFI firmware of Debian's ovmf package, with Secure Boot enforced (Microsoft's keys
enrolled, as on a lab PC that runs Windows 11) or off (no keys: setup mode).

Secure Boot needs q35 with SMM and the secure pflash, and the NIC without QEMU's iPXE option
ROM (unsigned: OVMF's own virtio-net driver does PXE instead)."""

from __future__ import annotations

import enum
import shutil
from pathlib import Path

OVMF = Path("/usr/share/OVMF")
OVMF_CODE = OVMF / "OVMF_CODE_4M.secboot.fd"  # SMM-protected variable store
VARS = {
    "secure-boot": OVMF / "OVMF_VARS_4M.ms.fd",  # PK, KEK, db with Microsoft's CAs
    "secure-boot-off": OVMF / "OVMF_VARS_4M.fd",
}  # no PK: Secure Boot is not enforced


class Firmware(enum.Enum):
    BIOS = "bios"
    SECURE_BOOT = "secure-boot"
    SECURE_BOOT_OFF = "secure-boot-off"


def qemu_args(firmware: Firmware, workdir: Path) -> list[str]:
    """The machine and firmware arguments; for OVMF the VM gets its own copy of the variable
    store (workdir/ovmf-vars.fd: shim writes SbatLevel there, the package's stays pristine)."""
    if firmware is Firmware.BIOS:
        return ["-machine", "pc"]
    store = workdir / "ovmf-vars.fd"
    shutil.copyfile(VARS[firmware.value], store)
    return [
        "-machine",
        "q35,smm=on",
        "-global",
        "driver=cfi.pflash01,property=secure,value=on",
        "-drive",
        f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
        "-drive",
        f"if=pflash,format=raw,unit=1,file={store}",
    ]


def nic_options(firmware: Firmware) -> str:
    """Suffix for the virtio-net device: no option ROM under OVMF."""
    return "" if firmware is Firmware.BIOS else ",romfile="


def missing() -> list[str]:
    """The OVMF files this machine lacks (apt-get install ovmf)."""
    return [str(p) for p in (OVMF_CODE, *VARS.values()) if not p.is_file()]
