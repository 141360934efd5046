"""Boots of nodes without a TPM (attestation: approval), each waiting for an admin.

Such a node proves nothing by itself: every boot makes a new key, shows the key's short
fingerprint on the console and asks again and again. The service records the boot here
(PKI_DIR/boots.json, one entry per key); `chaos-build enroll approve-boot FINGERPRINT`, run
by an admin who compared the console with `chaos-build enroll pending`, marks exactly that
entry approved. The approval is bound to the key's full hash, is used once, and expires.
Service and CLI are separate processes: every change is a locked read-modify-write.
The clock is passed in.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from chaosnode.enrollment import FINGERPRINT

from ..errors import ChaosError
from .records import RecordFile

APPROVAL_SECONDS: Final = 15 * 60  # an approval is good for this long
MAX_BOOTS: Final = 1000
BOOTS_FILE: Final = "boots.json"  # in PKI_DIR, beside pending.jsonl


class BootError(ChaosError):
    """An approval the admin asked for cannot be given (unknown or expired fingerprint)."""

    exit_code = 2


class Verdict(enum.Enum):
    WAITING = "waiting"  # recorded (again); no approval yet
    EXPIRED = "expired"  # it was approved, but too long ago: waiting again
    USED = "used"  # its approval was already used: no second certificate
    OTHER_NODE = "other_node"  # this key waits as another node
    APPROVED = "approved"  # approved in time: issue now (the approval is spent)


@dataclass(frozen=True)
class Boot:
    fingerprint: str  # 3f2a-91bc-0d4e-7a11, as the node's console shows it
    key_sha256: str  # sha256:<hex> of the CSR's public key: what the approval binds to
    node: str
    source: str
    macs: tuple[str, ...]
    first_seen: str  # ISO 8601, UTC
    last_seen: str
    attempts: int
    approved_at: str | None = None
    used_at: str | None = None

    def age(self, now: dt.datetime) -> dt.timedelta:
        return now - dt.datetime.fromisoformat(self.first_seen)

    def silent_for(self, now: dt.datetime) -> dt.timedelta:
        return now - dt.datetime.fromisoformat(self.last_seen)

    @property
    def state(self) -> str:
        return "used" if self.used_at else "approved" if self.approved_at else "waiting"


def normal_fingerprint(text: str) -> str | None:
    """3F2A91BC0D4E7A11, 3f2a-91bc-0d4e-7a11 or 3f2a 91bc ... -> 3f2a-91bc-0d4e-7a11."""
    digits = "".join(c for c in text.lower() if c not in "-: ")
    grouped = "-".join(digits[i : i + 4] for i in range(0, len(digits), 4))
    return grouped if FINGERPRINT.match(grouped) else None


def _when(now: dt.datetime) -> str:
    return now.isoformat(timespec="seconds")


class BootStore:
    """PKI_DIR/boots.json: one entry per key, the most recently seen MAX_BOOTS kept."""

    def __init__(
        self, path: Path, limit: int = MAX_BOOTS, approval_seconds: float = APPROVAL_SECONDS
    ) -> None:
        self.path = path
        self.window = dt.timedelta(seconds=approval_seconds)
        self._file = RecordFile(
            path,
            Boot,
            lambda b: b.key_sha256,
            limit,
            lambda why: BootError(
                f"{why}; move it aside, waiting nodes are recorded again at their next try"
            ),
        )

    def entries(self) -> list[Boot]:
        return self._file.entries()

    def ask(
        self,
        fingerprint: str,
        key_sha256: str,
        node: str,
        macs: tuple[str, ...],
        source: str,
        now: dt.datetime,
    ) -> tuple[Verdict, Boot]:
        """A node asks for a certificate for this key: record the try and say what holds.
        APPROVED spends the approval (single use)."""
        with self._file.locked() as boots:
            when = _when(now)
            old = boots.get(key_sha256)
            if old is None:
                boot = Boot(fingerprint, key_sha256, node, source, macs, when, when, 1)
                boots[key_sha256] = boot
                return Verdict.WAITING, boot
            if old.node != node:
                return Verdict.OTHER_NODE, old
            if old.used_at:
                return Verdict.USED, old
            boot = replace(old, source=source, macs=macs, last_seen=when, attempts=old.attempts + 1)
            verdict = Verdict.WAITING
            if old.approved_at:
                if now - dt.datetime.fromisoformat(old.approved_at) > self.window:
                    boot, verdict = replace(boot, approved_at=None), Verdict.EXPIRED
                else:
                    boot, verdict = replace(boot, used_at=when), Verdict.APPROVED
            boots[key_sha256] = boot
            return verdict, boot

    def approve(self, fingerprint: str, now: dt.datetime) -> Boot:
        """The admin approves the one waiting boot with this fingerprint."""
        fp = normal_fingerprint(fingerprint)
        if fp is None:
            raise BootError(
                f"{fingerprint!r} is not a boot fingerprint; write it as the "
                "node's console shows it, such as 3f2a-91bc-0d4e-7a11"
            )
        with self._file.locked() as boots:
            found = [b for b in boots.values() if b.fingerprint == fp and not b.used_at]
            if not found:
                used = any(b.fingerprint == fp for b in boots.values())
                raise BootError(
                    f"no boot is waiting with fingerprint {fp}"
                    + (
                        " (that boot already got its certificate; a new boot shows a new "
                        "fingerprint)"
                        if used
                        else "; `chaos-build enroll pending` lists the boots that wait"
                    )
                )
            if len(found) > 1:  # two keys share 64 bits: someone is trying; approve neither
                raise BootError(
                    f"{len(found)} boots wait with fingerprint {fp} (nodes "
                    f"{', '.join(sorted(b.node for b in found))}): approve none; "
                    "reboot the real node to get a new fingerprint"
                )
            [boot] = found
            silent = boot.silent_for(now)
            if silent > self.window:
                raise BootError(
                    f"the boot with fingerprint {fp} ({boot.node}) expired: it "
                    f"last asked {int(silent.total_seconds() // 60)} min ago; "
                    "reboot it and approve the fingerprint it shows then"
                )
            boot = replace(boot, approved_at=_when(now))
            boots[boot.key_sha256] = boot
            return boot
