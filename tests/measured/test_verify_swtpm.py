"""The trust decision on the host tier: a software TPM extended exactly as a synthetic boot's
event log says, quoted by an AK, verified against the build's reference. A genuine boot is
accepted; each single deviation is refused, saying what differed. The TPM is used
transiently: no persistent handles, no NV writes."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess

import pytest
from measuredlab import NODE, SERVER

from builder.enroll.swtpm import SoftTpm
from builder.measured.reference import Reference
from builder.measured.synthetic import Boot, boot_events, extend_tpm, log_bytes
from builder.measured.verify import Accepted, Evidence, MeasurementRefused, verify_boot
from chaosnode.tpm import QUOTE_PCRS, Tpm

NONCE = hashlib.sha256(b"the service's challenge").digest()
ROGUE = hashlib.sha256(b"a file this build did not make").hexdigest()


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One boot and what the node sends; each field but `boot` is one way to cheat."""

    boot: Boot = Boot()
    logged: Boot | None = None  # the log describes another boot than the TPM saw
    quote_nonce: bytes = NONCE  # the nonce the node quoted with
    other_ak: bool = False  # the quote comes from another AK


def attest(tpm: SoftTpm, reference: Reference, attempt: Attempt = Attempt()) -> Accepted:
    node = reference.node(NODE)
    assert node is not None
    events = boot_events(reference, node, SERVER, attempt.boot)
    logged = (
        events if attempt.logged is None else boot_events(reference, node, SERVER, attempt.logged)
    )
    with Tpm(tpm.tcti) as t:
        extend_tpm(t.esapi, events)
        with t.keys() as keys:
            proven = keys.attestation.ak_public  # what credential activation proved
            quote = keys.quote(attempt.quote_nonce)
        if attempt.other_ak:  # (a raw swtpm has 3 object slots: one EK and AK at a time)
            with t.keys(ek_unique=b"another machine") as other:
                quote = other.quote(attempt.quote_nonce)
    return verify_boot(
        Evidence(quote.attest, quote.signature, log_bytes(logged)), proven, NONCE, reference, NODE
    )


def refusal(tpm: SoftTpm, reference: Reference, attempt: Attempt) -> MeasurementRefused:
    with pytest.raises(MeasurementRefused) as err:
        attest(tpm, reference, attempt)
    return err.value


def test_a_genuine_boot_is_accepted_and_the_tpm_keeps_nothing(soft_tpm, reference):
    accepted = attest(soft_tpm, reference)
    assert accepted.node == NODE
    assert [n for n, _ in accepted.pcrs] == list(QUOTE_PCRS)
    read = []
    with Tpm(soft_tpm.tcti) as t:  # a TPM reads at most 8 PCRs at once
        for n in QUOTE_PCRS:
            values = t.esapi.pcr_read(f"sha256:{n}")[2]  # keep it: digests point into it
            read.append(bytes(values.digests[0]).hex())
    assert read == [v for _, v in accepted.pcrs]
    r = subprocess.run(
        ["tpm2_getcap", "-T", soft_tpm.tcti, "handles-persistent"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert r.stdout.strip() == ""


def test_another_initrd_is_refused(soft_tpm, reference):
    node = reference.node(NODE)
    err = refusal(
        soft_tpm,
        reference,
        Attempt(
            Boot(initrds=(("(tftp)/initrd.img", ROGUE), ("(tftp)/nodes/node01.cpio", node.overlay)))
        ),
    )
    assert err.code == "unknown_file"
    assert any(
        r.startswith("PCR 9: an initrd this build did not make for node01 ('(tftp)/initrd.img'")
        for r in err.reasons
    )
    assert f"PCR 9: the base initrd (sha256 {reference.initrd}) was not loaded" in err.reasons


def test_another_nodes_overlay_is_refused(soft_tpm, reference):
    other = reference.node("node02")
    err = refusal(
        soft_tpm,
        reference,
        Attempt(
            Boot(
                initrds=(
                    ("(tftp)/initrd.img", reference.initrd),
                    ("(tftp)/nodes/node02.cpio", other.overlay),
                )
            )
        ),
    )
    assert "PCR 9: an initrd this build did not make for node01" in err.reason
    assert "the overlay of node01" in err.reason


def test_another_kernel_is_refused(soft_tpm, reference):
    err = refusal(soft_tpm, reference, Attempt(Boot(kernel=ROGUE, kernel_app=ROGUE)))
    assert err.code == "unknown_file"
    assert "PCR 9: a kernel this build did not make for node01 ('(tftp)/vmlinuz'" in err.reason
    assert (
        f"PCR 4: an application this build did not make (Authenticode sha256 {ROGUE})"
        in err.reasons
    )


def test_secure_boot_off_is_refused(soft_tpm, reference):
    err = refusal(soft_tpm, reference, Attempt(Boot(secure_boot=False)))
    assert (err.code, err.reasons) == ("secure_boot_off", ("Secure Boot is off",))


def test_an_extra_application_in_pcr4_is_refused(soft_tpm, reference):
    err = refusal(soft_tpm, reference, Attempt(Boot(extra_applications=(ROGUE,))))
    assert (err.code, err.reasons) == (
        "unknown_application",
        (f"PCR 4: an application this build did not make (Authenticode sha256 {ROGUE})",),
    )


def test_a_changed_command_line_is_refused(soft_tpm, reference):
    err = refusal(
        soft_tpm, reference, Attempt(Boot(cmdline=reference.kernel_args + " init=/bin/sh"))
    )
    assert err.code == "grub_command"  # the `linux` command differs first, then the line
    assert any(
        r.startswith(
            "kernel command line differs: measured '(tftp)/vmlinuz "
            f"{reference.kernel_args} init=/bin/sh'"
        )
        for r in err.reasons
    )


def test_a_command_typed_at_grubs_prompt_is_refused(soft_tpm, reference):
    err = refusal(soft_tpm, reference, Attempt(Boot(extra_commands=("set debug=all",))))
    assert err.reasons == (
        "PCR 8: GRUB ran a command this build's config does not have: 'set debug=all'",
    )


def test_a_log_that_does_not_replay_to_the_quote_is_refused(soft_tpm, reference):
    node = reference.node(NODE)
    rogue = Boot(initrds=(("(tftp)/initrd.img", ROGUE), ("(tftp)/nodes/node01.cpio", node.overlay)))
    err = refusal(soft_tpm, reference, Attempt(boot=rogue, logged=Boot()))
    assert (err.code, err.reasons) == ("no_replay", ("event log does not replay to the quote",))


def test_an_old_nonce_is_refused(soft_tpm, reference):
    err = refusal(soft_tpm, reference, Attempt(quote_nonce=hashlib.sha256(b"old").digest()))
    assert err.code == "stale_nonce"
    assert err.reason.startswith("stale nonce")


def test_a_quote_from_another_ak_is_refused(soft_tpm, reference):
    err = refusal(soft_tpm, reference, Attempt(other_ak=True))
    assert (err.code, err.reasons) == ("bad_signature", ("quote not signed by this AK",))
