"""Every enrollment request gives a reply or a typed refusal (ProtocolError), never another
exception (issue 19): the records parse or refuse, and the service's logic answers or
refuses, for bodies with hostile contents (tests/enroll/request_strategies.py). No TPM and
no socket: the EK is a software key, registered for node01."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import pytest
from conftest import write_lab_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from request_strategies import Material, material, requests, well_formed

from builder.config import load_cluster
from builder.enroll import service
from builder.enroll.registry import PendingStore, approve, registry_path
from builder.pki import Pki
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
    cluster = load_cluster(config)[0]
    pki = Pki(root / "pki", cluster.security.key_type)
    pki.init_ca(cluster.cluster.name, dt.datetime.now(dt.UTC), 30)
    m = material({n.name: str(n.address) for n in cluster.nodes})
    approve(registry_path(cluster, config), cluster, m.ek_hash, m.node, "fuzz")
    settings_ = service.ServiceSettings(ipaddress.IPv4Address("127.0.0.1"), 1)
    return service.Enrollment(cluster, pki, registry_path(cluster, config),
                              PendingStore(pki.paths.root / "pending.jsonl"), settings_), m


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> tuple[service.Enrollment, Material]:
    return hostile_service(tmp_path_factory.mktemp("hostile"))


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_any_request_is_answered_or_refused_with_a_code(
        target: tuple[service.Enrollment, Material], data: st.DataObject) -> None:
    svc, m = target
    path, body = data.draw(requests(m))
    assert answer(svc, path, body)  # no other exception escaped


def test_the_well_formed_request_is_challenged(
        target: tuple[service.Enrollment, Material]) -> None:
    """What the strategies damage is right to begin with: the service issues a challenge."""
    svc, m = target
    assert answer(svc, START_PATH, well_formed(m)) == "ok"
