"""The protocol records: round trips and refusals with their reasons (no TPM, no network)."""

from __future__ import annotations

import base64
import json

import pytest

from chaosnode.enrollment import (
    FINGERPRINT,
    MAX_BODY,
    REFUSALS,
    ApprovalRequest,
    FinishRequest,
    FinishResponse,
    ProtocolError,
    StartRequest,
    StartResponse,
    boot_fingerprint,
    proof,
    proof_matches,
)

CSR = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"
START = StartRequest(
    node="node01",
    macs=("52:54:00:99:00:11",),
    ek_public=b"\x00\x01ek",
    ak_public=b"\x00\x01ak",
    csr=CSR,
)


def start_json(**changes: object) -> bytes:
    data = json.loads(START.to_json())
    data.update(changes)
    return json.dumps({k: v for k, v in data.items() if v is not ...}).encode()


def reason(call: object) -> tuple[str, str]:
    with pytest.raises(ProtocolError) as err:
        call()  # type: ignore[operator]
    return err.value.code, err.value.reason


APPROVAL = ApprovalRequest(node="node03", macs=("52:54:00:99:00:13",), csr=CSR)


def approval_json(**changes: object) -> bytes:
    data = json.loads(APPROVAL.to_json())
    data.update(changes)
    return json.dumps({k: v for k, v in data.items() if v is not ...}).encode()


def test_round_trips():
    assert StartRequest.from_json(START.to_json()) == START
    assert ApprovalRequest.from_json(APPROVAL.to_json()) == APPROVAL
    resp = StartResponse("A" * 32, b"blob", b"secret", 10)
    assert StartResponse.from_json(resp.to_json()) == resp
    fin = FinishRequest("A" * 32, "0" * 64)
    assert FinishRequest.from_json(fin.to_json()) == fin
    done = FinishResponse("cert", "ca", "crl", "2026-11-28T00:00:00+00:00")
    assert FinishResponse.from_json(done.to_json()) == done


@pytest.mark.parametrize(
    "body, code, text",
    [
        (b"\xff", "malformed", "not JSON"),
        (b"[]", "malformed", "JSON object"),
        (start_json(macs=...), "malformed", "lacks macs"),
        (start_json(extra=1), "malformed", "unknown fields extra"),
        (start_json(node="Node01"), "malformed", "node 'Node01' is not valid"),
        (start_json(node=7), "malformed", "node must be a string"),
        (start_json(macs=["52:54:00:99:00:1"]), "malformed", "is not a MAC"),
        (start_json(macs=["52:54:00:99:00:11"] * 17), "malformed", "at most 16"),
        (start_json(ek_public="not base64!"), "malformed", "ek_public is not base64"),
        (start_json(ak_public=""), "malformed", "ak_public is empty"),
        (
            start_json(ek_public=base64.b64encode(b"x" * 2000).decode()),
            "malformed",
            "ek_public is longer",
        ),
        (start_json(csr="hello"), "malformed", "PEM certificate request"),
        (b" " * (MAX_BODY + 1), "too_large", "the limit is 16384"),
    ],
)
def test_start_request_refusals(body, code, text):
    got = reason(lambda: StartRequest.from_json(body))
    assert got[0] == code and text in got[1]
    assert REFUSALS[code] in (400, 413)


@pytest.mark.parametrize(
    "body, code, text",
    [
        (b"\xff", "malformed", "approval request is not JSON"),
        (approval_json(csr=...), "malformed", "approval request lacks csr"),
        # the TPM variant's fields are not part of this record: no mixing the two
        (approval_json(ek_public="AAE="), "malformed", "unknown fields ek_public"),
        (approval_json(node="../etc"), "malformed", "node '../etc' is not valid"),
        (approval_json(macs="52:54:00:99:00:13"), "malformed", "at most 16"),
        (approval_json(macs=["52:54:00:99:00:13"] * 17), "malformed", "at most 16"),
        (approval_json(macs=["52-54-00-99-00-13"]), "malformed", "is not a MAC"),
        (approval_json(csr="-----BEGIN CERTIFICATE-----"), "malformed", "PEM certificate request"),
        (approval_json(csr=CSR + "A" * 5000), "malformed", "csr is longer than 4096"),
        (b" " * (MAX_BODY + 1), "too_large", "the limit is 16384"),
    ],
)
def test_approval_request_refusals(body, code, text):
    got = reason(lambda: ApprovalRequest.from_json(body))
    assert got[0] == code and text in got[1]


def test_a_start_request_without_ek_and_ak_is_not_a_start_request():
    got = reason(lambda: StartRequest.from_json(APPROVAL.to_json()))
    assert got == ("malformed", "start request lacks ek_public, ak_public")


def test_boot_fingerprint_is_short_grouped_and_from_the_key():
    fp = boot_fingerprint(b"public key")
    assert FINGERPRINT.match(fp) and len(fp) == 19
    assert fp == boot_fingerprint(b"public key") != boot_fingerprint(b"other key")


@pytest.mark.parametrize(
    "data, text",
    [
        ({"session": "short", "hmac": "0" * 64}, "session 'short' is not valid"),
        ({"session": "A" * 32, "hmac": "0" * 63}, "hmac"),
        ({"session": "A" * 32, "hmac": "G" * 64}, "hmac"),
        ({"session": "A" * 32}, "lacks hmac"),
    ],
)
def test_finish_request_refusals(data, text):
    code, why = reason(lambda: FinishRequest.from_json(json.dumps(data).encode()))
    assert code == "malformed" and text in why


def test_refusal_record_and_its_fallbacks():
    err = ProtocolError("bad_proof", "nope")
    assert err.status == 403
    assert ProtocolError.from_json(err.to_json(), 403).code == "bad_proof"
    assert ProtocolError.from_json(b"<html>", 502).code == "internal"
    assert ProtocolError.from_json(b'{"error": "weird", "reason": "x"}', 400).code == "malformed"
    assert ProtocolError("no-such-code", "x").code == "internal"


def test_proof_is_bound_to_secret_and_csr():
    p = proof(b"s" * 32, b"csr")
    assert proof_matches(b"s" * 32, b"csr", p)
    assert not proof_matches(b"t" * 32, b"csr", p)
    assert not proof_matches(b"s" * 32, b"csr2", p)
