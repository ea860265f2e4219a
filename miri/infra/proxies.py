"""The client's address: the TCP peer, or what a trusted proxy says it forwarded for.

``X-Forwarded-For`` is only a claim; anyone can send it. It is believed only when the peer is a
proxy the operator listed in ``MIRI_TRUSTED_PROXIES``, and then only the entries that such
proxies added: walking the header from the right, the first address that is not itself a
trusted proxy is the client. Every per-client limit keys on this address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(text: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 127.0.0.1"`` -> networks; raises ValueError naming a bad entry."""
    networks = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"not an address or CIDR: {part!r}") from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: Address, proxies: Iterable[Network]) -> bool:
    return any(address in network for network in proxies)


def client_address(
    peer: str | None, forwarded_for: str | None, proxies: tuple[Network, ...]
) -> str:
    """The client address for a request from ``peer`` carrying ``forwarded_for``."""
    if not peer:
        return "unknown"
    if not proxies or not forwarded_for:
        return peer
    current = _address(peer)
    if current is None:
        return peer
    if not _trusted(current, proxies):
        return peer
    for entry in reversed(forwarded_for.split(",")):
        claimed = _address(entry)
        if claimed is None:
            # A garbled entry: nothing left of it can be trusted; the last proxy is the client.
            return str(current)
        current = claimed
        if not _trusted(current, proxies):
            return str(current)
    return str(current)  # every hop was a trusted proxy: the leftmost one
