"""The verifier without a TPM: quotes signed in software by an AK-shaped key, for the checks
that need no TPM (selection, malformed evidence, unknown node) and for totality: any
evidence gives Accepted or MeasurementRefused, never another exception."""

from __future__ import annotations

import hashlib
import struct

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st
from measuredlab import NODE, SERVER
from tpm2_pytss.types import TPM2B_PUBLIC

from builder.measured.eventlog import (
    EV_EFI_ACTION,
    EV_IPL,
    EV_NO_ACTION,
    SHA256,
    Event,
    measured,
    parse_event_log,
)
from builder.measured.quote import QuoteError, parse_attest
from builder.measured.synthetic import Boot, boot_events, log_bytes, soft_quote
from builder.measured.verify import Evidence, MeasurementRefused, verify_boot
from chaosnode.tpm import AK_ATTRIBUTES

NONCE = b"n" * 32
ROGUE = hashlib.sha256(b"a UEFI shell").hexdigest()
KEY = ec.generate_private_key(ec.SECP256R1())
AK = TPM2B_PUBLIC.from_pem(
    KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ),
    objectAttributes=AK_ATTRIBUTES,
).marshal()


GENUINE = Boot()


def evidence(reference, boot: Boot = GENUINE, node: str = NODE) -> Evidence:
    events = boot_events(reference, reference.node(node), SERVER, boot)
    attest, signature = soft_quote(KEY, NONCE, events)
    return Evidence(attest, signature, log_bytes(events))


def refused(reference, ev: Evidence, node: str = NODE) -> MeasurementRefused:
    with pytest.raises(MeasurementRefused) as err:
        verify_boot(ev, AK, NONCE, reference, node)
    return err.value


def test_each_node_is_accepted_for_its_own_boot_only(reference):
    assert verify_boot(evidence(reference), AK, NONCE, reference, NODE).node == NODE
    err = refused(reference, evidence(reference, node="node02"))
    assert err.code == "unknown_file"
    assert "the overlay of node01" in err.reason


def test_a_node_missing_from_the_reference_is_refused(reference):
    assert refused(reference, evidence(reference), "node99").reasons == (
        "node node99 is not in the measured-boot reference (build again)",
    )


def resign(attest: bytes) -> bytes:
    r, s = decode_dss_signature(KEY.sign(attest, ec.ECDSA(hashes.SHA256())))
    return struct.pack(">HH", 0x18, 0x0B) + b"".join(
        struct.pack(">H", 32) + v.to_bytes(32, "big") for v in (r, s)
    )


def test_a_quote_of_other_pcrs_is_refused(reference):
    ev = evidence(reference)
    at = ev.attest.index(bytes([0x00, 0x0B, 3]))  # the sha256 selection's bitmap
    narrowed = bytearray(ev.attest)
    narrowed[at + 3 + 1] &= ~0x02  # drop PCR 9
    attest = bytes(narrowed)
    err = refused(reference, Evidence(attest, resign(attest), ev.event_log))
    assert err.code == "bad_selection"
    assert "not sha256 PCRs 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14" in err.reason


def test_a_log_whose_text_lies_about_its_digest_is_refused(reference):
    node = reference.node(NODE)
    events = boot_events(reference, node, SERVER)
    lying = [
        measured(
            e.pcr,
            e.kind,
            b"kernel_cmdline: (tftp)/vmlinuz " + reference.kernel_args.encode() + b"\0",
            b"(tftp)/vmlinuz init=/bin/sh",
        )
        if e.text().startswith("kernel_cmdline")
        else e
        for e in events
    ]
    attest, signature = soft_quote(KEY, NONCE, lying)
    err = refused(reference, Evidence(attest, signature, log_bytes(lying)))
    assert "does not match its digest" in err.reason


def test_a_malformed_log_and_quote_are_refused_with_a_reason(reference):
    ev = evidence(reference)
    err = refused(reference, Evidence(ev.attest, ev.signature, ev.event_log[:-3]))
    assert err.code == "bad_event_log"
    assert err.reason.startswith("the event log is malformed (the log is truncated in event")
    with pytest.raises(QuoteError, match="trailing"):
        parse_attest(ev.attest + b"\0")
    # what a node booted with Secure Boot off sent in the smoke lab: nothing
    err = refused(reference, Evidence(ev.attest, ev.signature, b""))
    assert err.code == "bad_event_log" and err.reason.startswith("the event log is empty")


def test_no_kernel_command_line_is_refused(reference):
    events = [
        e
        for e in boot_events(reference, reference.node(NODE), SERVER)
        if not (e.pcr == 8 and e.kind == EV_IPL and e.text().startswith("kernel_"))
    ]
    attest, signature = soft_quote(KEY, NONCE, events)
    err = refused(reference, Evidence(attest, signature, log_bytes(events)))
    assert err.reasons == ("PCR 8: 0 kernel command lines were measured, not one",)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=120), st.binary(max_size=600))
def test_any_evidence_is_accepted_or_refused_never_an_exception(
    reference, attest: bytes, signature: bytes, log: bytes
):
    with pytest.raises(MeasurementRefused):
        verify_boot(Evidence(attest, signature, log), AK, NONCE, reference, NODE)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000), st.binary(min_size=1, max_size=8))
def test_a_damaged_genuine_log_is_refused_unless_its_events_are_intact(
    reference, at: int, patch: bytes
):
    ev = evidence(reference)
    at %= len(ev.event_log)
    log = ev.event_log[:at] + patch + ev.event_log[at + len(patch) :]
    try:
        verify_boot(Evidence(ev.attest, ev.signature, log), AK, NONCE, reference, NODE)
    except MeasurementRefused:
        return
    # accepted: the damage hit bytes that neither reach a PCR nor are read by a check (the
    # header's unused fields, the text of firmware events)
    assert extended(log) == extended(ev.event_log)


def extended(log: bytes) -> list[object]:
    """What a log extends, in order (EV_NO_ACTION digests are never extended)."""
    return [(e.pcr, e.digests) for e in parse_event_log(log).events if e.kind != EV_NO_ACTION]


def test_an_application_logged_as_an_action_is_refused(reference):
    events = boot_events(reference, reference.node(NODE), SERVER)
    shim = next(e for e in events if e.pcr == 4 and e.data == b"shimx64.efi")
    disguised = Event(
        4,
        EV_EFI_ACTION,
        ((SHA256, bytes.fromhex(ROGUE)),),
        b"Calling EFI Application from Boot Option",
    )
    events.insert(events.index(shim), disguised)
    attest, signature = soft_quote(KEY, NONCE, events)
    err = refused(reference, Evidence(attest, signature, log_bytes(events)))
    assert err.reasons == (
        "PCR 4: an event's text ('Calling EFI Application from Boot "
        f"Option') does not match its digest {ROGUE}",
    )
