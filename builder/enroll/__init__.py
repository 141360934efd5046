"""Node enrollment, server side: the TPM registry, boots of nodes without a TPM awaiting
approval, and the HTTPS enrollment service."""
