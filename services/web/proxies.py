"""Whose request it is: the client's address, believing X-Forwarded-For only from the proxies we run.

Anyone can send an X-Forwarded-For header. Read from any peer, it lets a client put any address into a
sign-off's audit event and start afresh against every limit counted per address by changing it. So the
header is read only when the peer that connected is one of the listed proxies (ROUNDTABLE_TRUSTED_PROXIES),
and then from the right: each proxy appends the address it was reached from, so the right-most entry
that is not itself a listed proxy is the client as our own proxies saw it; whatever the client wrote
further left is ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from starlette.requests import HTTPConnection

from services.settings import Settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_HOPS = 20
"""Entries of X-Forwarded-For looked at, from the right: no real chain of our proxies is longer."""


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [2001:db8::1]:443
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # 192.0.2.1:443
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: Address | None, networks: Sequence[Network]) -> bool:
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def client_address(peer: str | None, forwarded_for: Iterable[str], networks: Sequence[Network]) -> str | None:
    """The client's address: the peer's, unless the peer is a listed proxy; then the right-most address
    of X-Forwarded-For (`forwarded_for`: every value of the header, in order) that is not a listed proxy.
    A chain made only of listed proxies, or an entry that is no address, ends the walk at the last
    trusted hop, which is then the best we know."""
    if not networks or not _trusted(_address(peer or ""), networks):
        return peer
    hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
    found = peer
    for hop in reversed(hops[-MAX_HOPS:]):
        address = _address(hop)
        if address is None:
            return found
        found = str(address)
        if not _trusted(address, networks):
            return found
    return found


def client_ip(connection: HTTPConnection, settings: Settings) -> str | None:
    """The address of the client behind this request, as every use of it (audit events, limits) sees it."""
    peer = connection.client.host if connection.client else None
    return client_address(peer, connection.headers.getlist("x-forwarded-for"), settings.trusted_networks)
