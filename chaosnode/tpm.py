"""The node's TPM 2.0, used transiently: an EK and an AK that live only while we use them.

Nothing is written to the TPM: no persistent handles, no NV writes, no owner password (the
day-time OS owns the TPM). Every object and session is flushed in a `finally`, which also
matters on a raw swtpm (tests), where nothing else would flush them.
Works with python3-tpm2-pytss 1.2.0 (Debian bookworm, the node image).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from tpm2_pytss import ESAPI
from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPM2_SE, TPMA_OBJECT
from tpm2_pytss.TSS2_Exception import TSS2_Exception
from tpm2_pytss.types import (
    TPM2B_DATA,
    TPM2B_ENCRYPTED_SECRET,
    TPM2B_ID_OBJECT,
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE_CREATE,
    TPML_PCR_SELECTION,
    TPMT_PUBLIC,
    TPMT_SYM_DEF,
)
from tpm2_pytss.utils import NoSuchIndex, create_ek_template

from .paths import TPM_DEVICE

NODE_TCTI: Final = f"device:{TPM_DEVICE}"
EK_TYPE: Final = "EK-ECC256"
AK_ATTRIBUTES: Final = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
    | TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.SIGN_ENCRYPT
)
NV_CHUNK: Final = 512
# what a measured-boot quote covers (sha256 bank): firmware, shim, GRUB, kernel and initrds
# (0-9) and shim's MOK lists (14); the service's verifier checks exactly this selection
QUOTE_PCRS: Final = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14)

# the TSS logs harmless errors while probing for EK templates in NV; keep the console clean
os.environ.setdefault("TSS2_LOG", "esys+none")


class TpmError(Exception):
    """The TPM could not be opened or refused an operation."""


@dataclass(frozen=True)
class Quote:
    """A quote of QUOTE_PCRS: the TPMS_ATTEST bytes the TPM signed, and the marshalled
    TPMT_SIGNATURE of the AK."""

    attest: bytes
    signature: bytes


def quote_selection() -> TPML_PCR_SELECTION:
    return TPML_PCR_SELECTION.parse("sha256:" + ",".join(map(str, QUOTE_PCRS)))


@dataclass(frozen=True)
class Attestation:
    """What the node sends: marshalled TPM2B_PUBLIC of the EK and the AK."""

    ek_public: bytes
    ak_public: bytes


def ak_template(attributes: int = AK_ATTRIBUTES) -> TPM2B_PUBLIC:
    """An ECC P-256 ECDSA-SHA256 signing key; restricted unless a test says otherwise."""
    area = TPMT_PUBLIC.parse(
        "ecc256:ecdsa-sha256:null", objectAttributes=attributes, nameAlg="sha256"
    )
    return TPM2B_PUBLIC(publicArea=area)


class Tpm:
    """One ESAPI connection; use as a context manager (`with Tpm(tcti) as tpm`)."""

    def __init__(self, tcti: str = NODE_TCTI) -> None:
        self.tcti = tcti
        self._esapi: Any = None

    def __enter__(self) -> Tpm:
        try:
            self._esapi = ESAPI(self.tcti)
        except Exception as exc:  # TSS2_Exception or a TCTI load failure
            raise TpmError(f"cannot open the TPM at {self.tcti}: {exc}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._esapi is not None:
            self._esapi.close()
            self._esapi = None

    @property
    def esapi(self) -> Any:
        if self._esapi is None:
            raise TpmError("TPM not open")
        return self._esapi

    # -- building blocks; each caller flushes what it got ------------------
    def _nv_read(self, index: int) -> bytes:
        """Read an NV index (EK template or nonce) without any owner auth."""
        esapi = self.esapi
        try:
            handle = esapi.tr_from_tpmpublic(index)
        except TSS2_Exception:
            raise NoSuchIndex(index) from None
        try:
            pub, _ = esapi.nv_read_public(handle)
            size = int(pub.nvPublic.dataSize)
            data = b""
            while len(data) < size:
                chunk = esapi.nv_read(
                    handle, min(NV_CHUNK, size - len(data)), len(data), auth_handle=handle
                )
                data += bytes(chunk)
            return data
        except TSS2_Exception:
            raise NoSuchIndex(index) from None
        finally:
            esapi.tr_close(handle)

    def _create_ek(self, unique: bytes | None = None) -> tuple[Any, TPM2B_PUBLIC]:
        _, template = create_ek_template(EK_TYPE, self._nv_read)
        if unique is not None:  # benches: many distinct EKs from one TPM
            template.publicArea.unique.ecc.x = unique.ljust(32, b"\0")[:32]
            template.publicArea.unique.ecc.y = b"\0" * 32
        handle, public, _, _, _ = self.esapi.create_primary(
            TPM2B_SENSITIVE_CREATE(), template, ESYS_TR.ENDORSEMENT
        )
        return handle, public

    def _endorsement_policy(self) -> Any:
        """A policy session satisfying the EK's policy (PolicySecret on ENDORSEMENT)."""
        esapi = self.esapi
        sym = TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL)
        session = esapi.start_auth_session(
            ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.POLICY, sym, TPM2_ALG.SHA256
        )
        try:
            esapi.policy_secret(ESYS_TR.ENDORSEMENT, session, b"", b"", b"", 0)
        except BaseException:
            esapi.flush_context(session)
            raise
        return session

    def _with_policy(self, call: Any) -> Any:
        session = self._endorsement_policy()
        try:
            return call(session)
        finally:
            self._flush(session)

    def _create_ak(self, ek: Any, template: TPM2B_PUBLIC) -> tuple[Any, TPM2B_PUBLIC]:
        esapi = self.esapi
        private, public, _, _, _ = self._with_policy(
            lambda s: esapi.create(ek, TPM2B_SENSITIVE_CREATE(), template, session1=s)
        )
        handle = self._with_policy(lambda s: esapi.load(ek, private, public, session1=s))
        return handle, public

    def _flush(self, handle: Any) -> None:
        # already gone is fine (a failed policy session is flushed by the TPM)
        with contextlib.suppress(TSS2_Exception):
            self.esapi.flush_context(handle)

    @contextmanager
    def keys(
        self, ak_attributes: int = AK_ATTRIBUTES, ek_unique: bytes | None = None
    ) -> Iterator[Keys]:
        """A transient EK with an AK under it, flushed on exit. ak_attributes and ek_unique
        are for tests and benches (a weak AK; many EKs from one TPM)."""
        ek = ak = None
        try:
            try:
                ek, ek_pub = self._create_ek(ek_unique)
                ak, ak_pub = self._create_ak(ek, ak_template(ak_attributes))
            except TSS2_Exception as exc:
                raise TpmError(f"TPM refused to create the EK/AK: {exc}") from None
            yield Keys(self, ek, ak, Attestation(ek_pub.marshal(), ak_pub.marshal()))
        finally:
            for handle in (ak, ek):
                if handle is not None:
                    self._flush(handle)


class Keys:
    """The loaded EK and AK of one enrollment attempt."""

    def __init__(self, tpm: Tpm, ek: Any, ak: Any, attestation: Attestation) -> None:
        self._tpm, self._ek, self._ak = tpm, ek, ak
        self.attestation = attestation

    def activate_credential(self, credential_blob: bytes, encrypted_secret: bytes) -> bytes:
        """Recover the server's secret; only the TPM that holds this EK and AK can."""
        try:
            blob, used = TPM2B_ID_OBJECT.unmarshal(credential_blob)
            secret, used2 = TPM2B_ENCRYPTED_SECRET.unmarshal(encrypted_secret)
        except Exception as exc:
            raise TpmError(f"malformed credential from the server: {exc}") from None
        if used != len(credential_blob) or used2 != len(encrypted_secret):
            raise TpmError("malformed credential from the server: trailing bytes")
        esapi = self._tpm.esapi
        try:
            cred = self._tpm._with_policy(
                lambda s: esapi.activate_credential(
                    self._ak, self._ek, blob, secret, session1=ESYS_TR.PASSWORD, session2=s
                )
            )
        except TSS2_Exception as exc:
            # any failure means "not this TPM" (ECC gives 0x1DF, RSA a misleading 0x101)
            raise TpmError(f"credential activation failed: {exc}") from None
        return bytes(cred)

    def quote(self, nonce: bytes) -> Quote:
        """The AK's quote of QUOTE_PCRS with the server's nonce (read-only on the TPM)."""
        try:
            attest, signature = self._tpm.esapi.quote(
                self._ak, quote_selection(), TPM2B_DATA(nonce)
            )
        except TSS2_Exception as exc:
            raise TpmError(f"the TPM refused the quote: {exc}") from None
        return Quote(bytes(attest), signature.marshal())
