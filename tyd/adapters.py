"""Build the hooks a config asks for (a null socket or set disables that hook)."""

from __future__ import annotations

from .config import Config
from .errors import TydError
from .hooks import Hook
from .ipsec import ViciHook
from .nft import NftSetHook


def build_hooks(cfg: Config) -> list[Hook]:
    hooks: list[Hook] = []
    h = cfg.hooks
    if h.nft_set is not None:
        hooks.append(NftSetHook(h.nft_table, h.nft_set, h.static_peers))
    if h.vici_socket is not None:
        try:
            cert_pem = cfg.tls.cert.read_text()
            ca_pem = cfg.tls.ca.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise TydError(f"tls.cert/tls.ca: cannot read for the VICI hook: {exc}") from None
        hooks.append(ViciHook(h.vici_socket, h.ipsec, cert_pem, ca_pem, h.static_peers))
    return hooks
