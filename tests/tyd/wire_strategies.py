"""Hypothesis strategies for hostile tyd input: frames with a valid envelope (header, JSON
object, signed records) and hostile contents: certificates with any field perturbed (and
re-signed by the real CA), wrong types, huge numbers, deep nesting, duplicate keys, invalid
UTF-8. Shared by the unit tests (test_hostile_input.py) and bench/fuzz.py."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

from badcerts import field_replaced, malformed_certs
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from helpers import CLUSTER, address, name
from hostile_json import bytes_like, damage_fields, json_values, raw_json, sometimes
from hypothesis import strategies as st

from builder.pki import Pki
from tyd import codec
from tyd.codec import Kind
from tyd.record import DOMAIN
from tyd.tls import pem_cert_der


@dataclass(frozen=True)
class Insider:
    """What a member holds: its node key and certificate; the CA key only so that the
    strategies can make certificates the CA 'signed' with impossible fields."""

    cluster: str
    name: str
    address: str
    key: ed25519.Ed25519PrivateKey
    cert: bytes
    ca_key: ed25519.Ed25519PrivateKey


def insider_of(pki: Pki, i: int = 2) -> Insider:
    """Node i of a test PKI (tests/tyd/helpers.make_pki) as the insider."""
    key = serialization.load_pem_private_key(pki.paths.node_key(name(i)).read_bytes(), None)
    ca_key, _ = pki.ca()
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    assert isinstance(ca_key, ed25519.Ed25519PrivateKey)
    return Insider(
        CLUSTER, name(i), address(i), key, pem_cert_der(pki.paths.node_cert(name(i))), ca_key
    )


@st.composite
def certificates(draw: st.DrawFn, insider: Insider) -> bytes:
    """The insider's real certificate, or one the CA signed with a field made hostile."""
    choice = draw(st.sampled_from(["real", "real", "malformed", "field", "field", "bytes"]))
    der = insider.cert
    if choice == "malformed":
        return draw(st.sampled_from(sorted(malformed_certs(der, insider.ca_key).values())))
    if choice == "field":
        return field_replaced(
            der, insider.ca_key, draw(st.integers(0, 9)), draw(st.binary(max_size=40))
        )
    if choice == "bytes":
        return draw(bytes_like(der, always=True, max_random=codec.MAX_CERT + 8))
    return der


def _body(insider: Insider) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {
        "cluster": insider.cluster,
        "name": insider.name,
        "address": insider.address,
        "fp": "0" * 64,
        "state": "alive",
        "inc": now,
        "hb": 1,
        "slots": 1,
        "ts": now,
    }


@st.composite
def records(draw: st.DrawFn, insider: Insider, sender: bool = False) -> Any:
    """A signed record ({rec, sig, cert}) with hostile contents at any level. A sender's is
    mostly the insider's own, so that the members of its SYNC get verified at all; other
    entries speak for the insider or for others (whose certificate it does not hold)."""
    import hashlib

    if sender and sometimes(draw, "hostile") == "none":
        cert = insider.cert
    else:
        cert = draw(certificates(insider))
    body = _body(insider)
    if not sender:
        k = draw(st.sampled_from([2, 3, 7, 40]))
        body["name"], body["address"] = (
            (insider.name, insider.address) if k == 2 else (f"node{k:02d}", f"127.0.0.{10 + k}")
        )
    body["fp"] = hashlib.sha256(cert).hexdigest()
    if sometimes(draw, "change") == "change":
        body[draw(st.sampled_from(sorted(body)))] = draw(json_values)
    if sometimes(draw, "remove") == "remove":
        body.pop(draw(st.sampled_from(sorted(body))))
    rec = draw(raw_json(body))
    forged = sometimes(draw, "forged") != "none" if sender else draw(st.booleans())
    sig = draw(st.binary(max_size=80)) if forged else insider.key.sign(DOMAIN + rec)
    record: dict[str, Any] = {"rec": _b64(rec), "sig": _b64(sig), "cert": _b64(cert)}
    if sometimes(draw, "base64") == "base64":
        key = draw(st.sampled_from(sorted(record)))
        record[key] = record[key][:-1] + "!"
    damage_fields(draw, record)
    return record


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@st.composite
def payloads(draw: st.DrawFn, insider: Insider) -> tuple[Kind, bytes]:
    """A message kind and its payload: the keys its kind needs, hostile contents."""
    kind = draw(st.sampled_from(list(Kind)))
    envelope: dict[str, Any] = {}
    for key in sorted(codec.KEYS[kind]):
        if key == "cluster":
            envelope[key] = (
                insider.cluster if sometimes(draw, "wrong") == "none" else draw(json_values)
            )
        elif key == "sender":
            envelope[key] = draw(records(insider, sender=True))
        elif key == "members":
            envelope[key] = draw(st.lists(records(insider), max_size=3))
        else:
            envelope[key] = draw(st.one_of(st.text(max_size=300), json_values))
    return kind, draw(raw_json(envelope))


@st.composite
def frames(draw: st.DrawFn, insider: Insider) -> bytes:
    """Whole frames; the header is mostly right (its length always matches the payload)."""
    kind, payload = draw(payloads(insider))
    version = draw(st.sampled_from([codec.VERSION] * 30 + [1, 3, 255]))
    raw_kind = draw(st.sampled_from([int(kind)] * 30 + [0, 7, 255]))
    magic = draw(st.sampled_from([codec.MAGIC] * 30 + [b"YT"]))
    return codec.HEADER.pack(magic, version, raw_kind, len(payload)) + payload
