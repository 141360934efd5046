"""chaos.yaml's `security:` on the build host (model.py): IPsec's scope and proposals, the PKI,
enrollment's certificates and TPM registry, measured boot. Declared by the enroll feature
(builder/features/enroll.py); read by the PKI (builder/pki.py), enrollment (builder/enroll/),
measured boot (builder/measured/) and IPsec (builder/views.py ipsec_policy)."""
