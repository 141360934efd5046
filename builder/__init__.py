"""chaos-build: turn idle lab PCs into a RAM-booted, IPsec-meshed compute cluster."""

__version__ = "0.1.0"
