"""Boot built images in QEMU and read the self-check line from the serial console.

Used by the image tests and bench/image.py. Networking is QEMU user mode with
restrict=on only: the guest reaches QEMU's own DHCP and TFTP server and nothing else.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import BuildError
from builder.run import spawn

QEMU = "qemu-system-x86_64"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
# Secure Boot enforced: the SMM build with Microsoft's keys enrolled (as on a lab PC)
OVMF_SECBOOT_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd")
OVMF_MS_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
RESULT = re.compile(r"CHAOS-(READY|FAILED) [^\r\n]*[\r\n]")
TCG = ["-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "1"]
KVM = ["-accel", "kvm", "-cpu", "host", "-smp", "2"]
PROBE_SECONDS = 20.0


@dataclass
class Boot:
    """One QEMU run: the console text, the result line and when it appeared."""

    argv: list[str]
    console: str = ""
    line: str | None = None
    seconds: float | None = None
    exit_code: int | None = None
    exited_by_itself: bool = False

    @property
    def fields(self) -> dict[str, str]:
        if self.line is None:
            return {}
        return dict(part.split("=", 1) for part in self.line.split()[1:] if "=" in part)

    @property
    def ready(self) -> bool:
        return self.line is not None and self.line.startswith("CHAOS-READY")


@dataclass
class Machine:
    """What to boot and how: firmware, boot medium, NIC, disks."""

    accel: list[str]
    mac: str = "52:54:00:99:00:11"
    memory_mb: int = 1024
    uefi: bool = False
    secure_boot: bool = False  # with uefi: OVMF with Secure Boot enforced (q35 + SMM)
    cdrom: Path | None = None
    tftp: Path | None = None
    bootfile: str | None = None
    kernel: Path | None = None
    initrd: Path | None = None
    append: str = ""
    disks: list[Path] = field(default_factory=list)
    # virtio serial numbers of the disks, in order (the always-on head's state disk appears
    # as /dev/disk/by-id/virtio-SERIAL)
    disk_serials: tuple[str, ...] = ()
    # more options of the user-mode network, e.g. the cluster's subnet and a forward:
    # ("net=10.99.0.0/24", "host=10.99.0.2", "hostfwd=tcp:127.0.0.1:2222-10.99.0.10:22")
    user_net: tuple[str, ...] = ()
    # the test agent's socket (chaosnode.agent answers on the virtio port org.chaos.agent)
    agent: Path | None = None
    workdir: Path | None = None

    def argv(self) -> list[str]:
        argv = [
            QEMU,
            *self.accel,
            "-m",
            str(self.memory_mb),
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-no-reboot",
            "-nodefaults",
            "-vga",
            "std",
        ]
        if self.uefi:
            if self.workdir is None:
                raise BuildError("UEFI boots need a workdir for the OVMF variable store")
            vars_copy = self.workdir / f"OVMF_VARS-{os.getpid()}-{time.monotonic_ns()}.fd"
            shutil.copyfile(OVMF_MS_VARS if self.secure_boot else OVMF_VARS, vars_copy)
            code = OVMF_SECBOOT_CODE if self.secure_boot else OVMF_CODE
            argv += ["-machine", "q35,smm=on" if self.secure_boot else "q35"]
            if self.secure_boot:
                argv += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
            argv += [
                "-drive",
                f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
                "-drive",
                f"if=pflash,format=raw,unit=1,file={vars_copy}",
            ]
        else:
            argv += ["-machine", "pc"]
        netdev = "user,id=net0,restrict=on"
        for option in self.user_net:
            netdev += f",{option}"
        if self.tftp is not None:
            netdev += f",tftp={self.tftp},bootfile={self.bootfile}"
        nic = f"virtio-net-pci,netdev=net0,mac={self.mac}"
        if self.secure_boot:
            nic += ",romfile="  # QEMU's iPXE option ROM is unsigned
        argv += ["-netdev", netdev, "-device", nic + (",bootindex=0" if self.tftp else "")]
        if self.cdrom is not None:
            argv += ["-drive", f"file={self.cdrom},media=cdrom,readonly=on,if=none,id=cd0"]
            argv += (
                ["-device", "ide-cd,drive=cd0,bootindex=0"]
                if not self.uefi
                else ["-device", "ide-cd,drive=cd0,bootindex=0,bus=ide.0"]
            )
        if self.tftp is not None:
            argv += ["-boot", "n"]
        if self.kernel is not None:
            argv += ["-kernel", str(self.kernel), "-append", self.append]
            if self.initrd is not None:
                argv += ["-initrd", str(self.initrd)]
        if self.agent is not None:
            argv += [
                "-device",
                "virtio-serial-pci",
                "-chardev",
                f"socket,id=agent,path={self.agent},server=on,wait=off",
                "-device",
                "virtserialport,chardev=agent,name=org.chaos.agent",
            ]
        for i, disk in enumerate(self.disks):
            serial = f",serial={self.disk_serials[i]}" if i < len(self.disk_serials) else ""
            argv += [
                "-drive",
                f"file={disk},format=raw,if=none,id=disk{i}",
                "-device",
                f"virtio-blk-pci,drive=disk{i}{serial}",
            ]
        return argv


def boot(machine: Machine, timeout: float = 300.0, wait_for_exit: bool = False) -> Boot:
    """Boot until the CHAOS-READY/FAILED line (and, if asked, until QEMU exits)."""
    result = Boot(argv=machine.argv())
    start = time.monotonic()
    proc = spawn(result.argv, stdout=subprocess.PIPE)
    chunks: list[str] = []
    found = threading.Event()

    def reader() -> None:
        assert proc.stdout is not None
        text = ""
        while data := proc.stdout.read1(4096):  # type: ignore[attr-defined]
            chunk = data.decode(errors="replace")
            chunks.append(chunk)
            if result.line is None:
                searched = max(0, len(text) - 512)
                text += chunk
                match = RESULT.search(text, searched)
                if match:
                    result.line = match.group(0).strip()
                    result.seconds = time.monotonic() - start
                    found.set()
        found.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    found.wait(timeout)
    if wait_for_exit and result.line is not None:
        try:
            proc.wait(timeout=max(5.0, timeout - (time.monotonic() - start)))
            result.exited_by_itself = True
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        proc.kill()
    result.exit_code = proc.wait()
    thread.join(5)
    result.console = "".join(chunks)
    return result


def probe_accel(kernel: Path, workdir: Path) -> list[str]:
    """KVM if a short probe boot of the kernel reaches its root-mount panic in time, else TCG."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return TCG
    argv = [
        QEMU,
        *KVM,
        "-m",
        "256",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-no-reboot",
        "-nodefaults",
        "-kernel",
        str(kernel),
        "-append",
        "console=ttyS0 panic=-1 root=/dev/chaos-probe",
    ]
    try:
        proc = subprocess.run(
            argv, capture_output=True, timeout=PROBE_SECONDS, check=False, cwd=workdir
        )
    except subprocess.TimeoutExpired:
        return TCG
    return KVM if b"Kernel panic" in proc.stdout else TCG
