"""Node enrollment, server side: the TPM registry and the HTTPS enrollment service."""
