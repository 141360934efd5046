"""Measured boot: what a genuine boot of this build measures into the TPM (the reference,
written beside the build output), and the verifier that checks a node's quote and UEFI
event log against it. See "Measured boot" in docs/pieces.md.
"""
