"""Hypothesis strategies for hostile enrollment requests: the JSON object each endpoint
expects, with hostile contents (perturbed TPM public areas and CSRs, wrong types, huge
numbers, deep nesting, duplicate keys, invalid UTF-8). Shared by the unit tests
(test_hostile_requests.py) and bench/fuzz.py. No TPM needed: the EK is a software key in
an EK's template, which the service can wrap a credential for."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hostile_json import bytes_like, damage_fields, raw_json, sometimes
from hypothesis import strategies as st
from tpm2_pytss.constants import TPMA_OBJECT
from tpm2_pytss.types import TPM2B_PUBLIC, TPMT_SYM_DEF_OBJECT

from builder.config import load_cluster
from builder.enroll.registry import approve, registry_path
from builder.model import Cluster
from builder.pki import Pki, pki_for
from chaosnode.enroll import make_csr, new_key
from chaosnode.enrollment import APPROVAL_PATH, FINISH_PATH, START_PATH, StartRequest
from chaosnode.tpm import ak_template
from chaosnode.tpmpub import ek_hash

EK_ATTRIBUTES = (
    TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.DECRYPT
    | TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.ADMINWITHPOLICY
)


@dataclass(frozen=True)
class Material:
    """Well-formed pieces the strategies damage: an EK (registered for `node` by whoever
    uses it: its hash is `ek_hash`), an AK, CSRs of every node."""

    node: str
    ek_public: bytes
    ek_hash: str
    ak_public: bytes
    csrs: dict[str, str]  # node -> PEM CSR for that node's name and address


def software_ek() -> bytes:
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return TPM2B_PUBLIC.from_pem(
        pem, objectAttributes=EK_ATTRIBUTES, symmetric=TPMT_SYM_DEF_OBJECT.parse("aes128cfb")
    ).marshal()


def material(nodes: dict[str, str]) -> Material:
    """From {node: address} (chaos.yaml's); the first node is the one the EK is for."""
    ek = software_ek()
    csrs = {
        n: make_csr(new_key(), n, ipaddress.IPv4Address(a))
        .public_bytes(serialization.Encoding.PEM)
        .decode()
        for n, a in nodes.items()
    }
    return Material(next(iter(nodes)), ek, ek_hash(ek), ak_template().marshal(), csrs)


def prepare(config: Path) -> tuple[Cluster, Pki, Material]:
    """Beside a chaos.yaml: its cluster CA, and a software EK registered for its first
    node; what the service, in-process or `chaos-build enroll serve`, then answers."""
    cluster = load_cluster(config)[0]
    pki = pki_for(cluster, config)
    pki.init_ca(cluster.cluster.name, dt.datetime.now(dt.UTC), 30)
    m = material({n.name: str(n.address) for n in cluster.nodes})
    approve(registry_path(cluster, config), cluster, m.ek_hash, m.node, "fuzz")
    return cluster, pki, m


@st.composite
def csr_like(draw: st.DrawFn, m: Material) -> str:
    pem = draw(st.sampled_from(sorted(m.csrs.values())))
    damage = sometimes(draw, "flip", "truncate", "garbage")
    lines = pem.splitlines()
    if damage == "flip":
        k = draw(st.integers(1, len(lines) - 2))
        line = lines[k]
        at = draw(st.integers(0, len(line) - 1))
        lines[k] = line[:at] + draw(st.sampled_from("AZaz09+/=")) + line[at + 1 :]
    elif damage == "truncate":
        lines = lines[: draw(st.integers(1, len(lines)))]
    elif damage == "garbage":
        return lines[0] + "\n" + draw(st.text(max_size=200))
    return "\n".join(lines) + "\n"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@st.composite
def requests(draw: st.DrawFn, m: Material) -> tuple[str, bytes]:
    """An endpoint and a body for it."""
    path = draw(st.sampled_from([START_PATH, START_PATH, APPROVAL_PATH, FINISH_PATH]))
    node = draw(st.sampled_from(sorted(m.csrs))) if sometimes(draw, "other") != "none" else m.node
    macs = draw(
        st.lists(
            st.sampled_from(["52:54:00:99:00:11", "52:54:00:99:00:1", "52:54:00:99:00:13"]),
            max_size=3,
        )
    )
    body: dict[str, Any]
    if path == FINISH_PATH:
        body = {
            "session": secrets.token_urlsafe(24),
            "hmac": draw(st.text("0123456789abcdef", min_size=64, max_size=64)),
        }
    elif path == APPROVAL_PATH:
        body = {"node": node, "macs": macs, "csr": draw(csr_like(m))}
    else:
        body = {
            "node": node,
            "macs": macs,
            "ek_public": _b64(draw(bytes_like(m.ek_public))),
            "ak_public": _b64(draw(bytes_like(m.ak_public))),
            "csr": draw(csr_like(m)),
        }
    damage_fields(draw, body)
    return path, draw(raw_json(body))


def well_formed(m: Material) -> bytes:
    """The start request the strategies damage (for a sanity check)."""
    return StartRequest(m.node, (), m.ek_public, m.ak_public, m.csrs[m.node]).to_json()
