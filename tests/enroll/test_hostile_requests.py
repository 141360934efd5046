"""Every enrollment request gives a reply or a typed refusal (ProtocolError), never another
exception (issue 19): the records parse or refuse, and the service's logic answers or
refuses, for bodies with hostile contents (tests/enroll/request_strategies.py). No TPM and
no socket: the EK is a software key, registered for node01."""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path

import pytest
from conftest import write_lab_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from request_strategies import Material, prepare, requests, well_formed

from builder.enroll import service
from builder.enroll.registry import PendingStore, registry_path
from chaosnode.enrollment import (
    APPROVAL_PATH,
    START_PATH,
    ApprovalRequest,
    FinishRequest,
    ProtocolError,
    StartRequest,
)

SOURCE = "10.99.0.11"


def answer(svc: service.Enrollment, path: str, body: bytes) -> str:
    """'ok' or the refusal's code."""
    try:
        if path == START_PATH:
            svc.start(StartRequest.from_json(body), SOURCE)
        elif path == APPROVAL_PATH:
            svc.approval(ApprovalRequest.from_json(body), SOURCE)
        else:
            svc.finish(FinishRequest.from_json(body), SOURCE)
    except ProtocolError as exc:
        return exc.code
    return "ok"


def hostile_service(root: Path) -> tuple[service.Enrollment, Material]:
    config = write_lab_config(root)
    cluster, pki, m = prepare(config)
    settings_ = service.ServiceSettings(ipaddress.IPv4Address("127.0.0.1"), 1)
    return service.Enrollment(
        cluster,
        pki,
        registry_path(cluster, config),
        PendingStore(pki.paths.root / "pending.jsonl"),
        settings_,
    ), m


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> tuple[service.Enrollment, Material]:
    return hostile_service(tmp_path_factory.mktemp("hostile"))


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
def test_any_request_is_answered_or_refused_with_a_code(
    target: tuple[service.Enrollment, Material], data: st.DataObject
) -> None:
    svc, m = target
    path, body = data.draw(requests(m))
    assert answer(svc, path, body)  # no other exception escaped


def test_the_well_formed_request_is_challenged(target: tuple[service.Enrollment, Material]) -> None:
    """What the strategies damage is right to begin with: the service issues a challenge."""
    svc, m = target
    assert answer(svc, START_PATH, well_formed(m)) == "ok"


def two_san_csr(node: str, address: str) -> str:
    """A CSR whose extension request holds two SAN extensions, signed with its own key (as
    anybody can): cryptography raises DuplicateExtension when its extensions are read."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from der import children, tlv

    from chaosnode.enroll import make_csr

    key = ed25519.Ed25519PrivateKey.generate()
    der = make_csr(key, node, ipaddress.IPv4Address(address)).public_bytes(
        serialization.Encoding.DER
    )
    ((_, body),) = children(der)
    (_, info), algorithm, _ = children(body)
    fields = children(info)  # version, subject, key, [0] attributes
    ((_, attribute),) = children(fields[3][1])
    oid, values = children(attribute)
    ((_, extensions),) = children(values[1])  # SET { Extensions }
    san = children(extensions)[0]  # make_csr's only extension
    doubled = tlv(*san) + tlv(*san)
    fields[3] = (0xA0, tlv(0x30, tlv(*oid) + tlv(0x31, tlv(0x30, doubled))))
    info_der = tlv(0x30, b"".join(tlv(*f) for f in fields))
    signed = tlv(0x30, info_der + tlv(*algorithm) + tlv(0x03, b"\0" + key.sign(info_der)))
    return (
        "-----BEGIN CERTIFICATE REQUEST-----\n"
        + base64.encodebytes(signed).decode()
        + "-----END CERTIFICATE REQUEST-----\n"
    )


def test_a_csr_cryptography_cannot_read_is_bad_csr(
    target: tuple[service.Enrollment, Material],
) -> None:
    from cryptography import x509

    svc, m = target
    pem = two_san_csr("node03", "10.99.0.13")
    with pytest.raises(x509.DuplicateExtension):
        x509.load_pem_x509_csr(pem.encode()).extensions  # noqa: B018 - what it used to hit
    body = ApprovalRequest("node03", (), pem).to_json()
    assert answer(svc, APPROVAL_PATH, body) == "bad_csr"
