"""What the live image is made of: its Debian packages and the node-side Python packages."""

from __future__ import annotations

# Everything the live image runs; the admin's image.packages are added to this.
# strongSwan's openssl plugin provides X25519, Ed25519, AES-GCM and ChaCha20-Poly1305.
BASE_PACKAGES = (
    "linux-image-amd64", "systemd", "systemd-sysv", "udev", "kmod",
    "charon-systemd", "strongswan-swanctl", "libstrongswan-standard-plugins",
    "nftables", "iproute2", "python3",
    # /etc/protocols and /etc/services: charon resolves selectors like 10.0.0.1/32[tcp/7411]
    # through them; without netbase a port-scoped config is "invalid value for: local_ts".
    "netbase",
    # enrollment: the node proves its machine with its TPM 2.0 (chaosnode.tpm through
    # tpm2-pytss over /dev/tpmrm0) and makes its key and CSR with python3-cryptography
    "python3-tpm2-pytss", "libtss2-tcti-device0", "python3-cryptography",
    # the night (chaosnode.morning): the window's time zone rules, and the clock from
    # schedule.time_source
    "tzdata", "systemd-timesyncd",
)

# The Python packages that run on the nodes, copied from the checkout into the image.
NODE_PACKAGES = ("tyd", "chaosnode")
