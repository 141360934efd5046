"""The enrollment service's measured-boot check (chaos.yaml security.measured_boot):
off, audit (log and count a deviation, enroll anyway) or enforce (refuse it). A node marked
`boot: legacy-bios` has nothing to measure and skips only this check. The reference is
reread when the build rewrites it.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from builder.model import BootPath, MeasuredBoot, Node

from .reference import Reference, ReferenceError, load_reference
from .verify import Evidence, MeasurementRefused, verify_boot

log = logging.getLogger("chaos.enroll")


@dataclass
class BootCheck:
    mode: MeasuredBoot
    reference_path: Path
    counts: Counter[str] = field(default_factory=Counter)  # outcome -> enrollments
    _cached: tuple[float, Reference] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def enforced(self) -> bool:
        return self.mode is MeasuredBoot.ENFORCE

    def wanted(self, node: Node) -> bool:
        """Does this node's enrollment quote its boot (the start response sends a nonce)?"""
        return self.mode is not MeasuredBoot.OFF and node.boot is BootPath.UEFI

    def refusal(
        self, node: Node, ak_public: bytes, nonce: bytes, evidence: Evidence
    ) -> MeasurementRefused | None:
        """None if the boot is fine (or not checked); else the refusal, logged and counted
        (the caller refuses the enrollment only when enforced)."""
        if self.mode is MeasuredBoot.OFF:
            return None
        if node.boot is BootPath.LEGACY_BIOS:
            self._count("unmeasured legacy-bios")
            return None
        try:
            if not evidence.attest:
                raise MeasurementRefused("no_quote", ["the node sent no quote of its boot"])
            verify_boot(evidence, ak_public, nonce, self.reference(), node.name)
        except MeasurementRefused as refused:
            self._count(f"refused {refused.code}")
            log.warning(
                "measured boot of %s %s: %s",
                node.name,
                "refused" if self.enforced else "deviates (audit)",
                refused.reason,
            )
            return refused
        self._count("accepted")
        log.info("measured boot of %s: a genuine boot of this build", node.name)
        return None

    def reference(self) -> Reference:
        try:
            mtime = self.reference_path.stat().st_mtime
        except OSError:
            raise MeasurementRefused(
                "no_reference",
                [f"no measured-boot reference at {self.reference_path}: run `chaos-build build`"],
            ) from None
        with self._lock:
            if self._cached is None or self._cached[0] != mtime:
                try:
                    self._cached = (mtime, load_reference(self.reference_path))
                except ReferenceError as exc:
                    raise MeasurementRefused("no_reference", [str(exc)]) from None
            return self._cached[1]

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] += 1
