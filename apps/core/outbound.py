"""Where the control plane may send webhooks: the SSRF guard and the sender shared by runtime
pushes (a runtime's ``push_url``) and alert channels (apps/alerts). Kernel code: imports no app.

A runtime token can name any ``push_url``, an Operator any alert channel URL; the worker then
POSTs there. Left unchecked that
lets a token holder make the control plane reach its own loopback services, the private
network or a cloud metadata endpoint. So a push target is checked twice: when a heartbeat
registers it (a 400 naming ``push_url``) and again when a push connects, against the address
the name resolves to *then*; the push connects to exactly that checked address (no second
lookup a rebinding DNS server could answer differently), follows no redirect and has short
connect and read timeouts.

Refused unless the operator allows them with ``RUNTIME_PUSH_ALLOWED_CIDRS``: every address
that is not globally routable (loopback, private, link-local, CGNAT, multicast, reserved,
unspecified, documentation, IPv6 unique-local and site-local; IPv4-mapped and NAT64 IPv6 forms
are judged by the IPv4 address inside). Cloud metadata addresses are refused even inside an
allowed network: no runtime lives there.
"""

from __future__ import annotations

import ipaddress
import random
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import certifi
import urllib3
from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Instance metadata services (AWS, GCP, Azure, OpenStack: 169.254.169.254; AWS IPv6; ECS task
# metadata; Alibaba Cloud; Oracle Cloud's second address). Refused whatever the allow list says.
METADATA_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.169.254/32",
        "169.254.170.2/32",
        "169.254.169.253/32",
        "100.100.100.200/32",
        "192.0.0.192/32",
        "fd00:ec2::254/128",
        "fd00:ec2::23/128",
    )
)
# Not globally routable yet not flagged by ``ipaddress`` as private in every Python version.
_ALWAYS_REFUSED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "100.64.0.0/10",  # carrier-grade NAT (RFC 6598)
        "192.0.0.0/24",  # IETF protocol assignments
        "198.18.0.0/15",  # benchmarking
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the broadcast address
        "64:ff9b:1::/48",  # local-use NAT64
        "fec0::/10",  # deprecated site-local
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
ALLOWED_SCHEMES = ("http", "https")
# The one name lookup of a push (tests replace it to play a rebinding DNS server).
getaddrinfo = socket.getaddrinfo


class PushTargetRefused(ValueError):
    """The push target may not be reached; the message says why, for the runtime's operator."""


@dataclass(frozen=True)
class PushTarget:
    """A push URL split for a pinned connection: connect to ``address``, speak to ``host``."""

    scheme: str
    host: str  # as written in the URL (the Host header and the TLS server name)
    port: int
    path: str  # path and query, at least "/"
    address: str  # the checked IP address the connection goes to


def allowed_networks() -> tuple[IPNetwork, ...]:
    """The operator's allow list (``RUNTIME_PUSH_ALLOWED_CIDRS``), parsed."""
    return tuple(
        ipaddress.ip_network(cidr, strict=False) for cidr in settings.RUNTIME_PUSH_ALLOWED_CIDRS
    )


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    return None


def refusal_reason(address: IPAddress, allowed: Iterable[IPNetwork] = ()) -> str | None:
    """Why ``address`` may not receive a push, or None if it may."""
    inner = _embedded_ipv4(address)
    candidates = [address] if inner is None else [address, inner]
    for candidate in candidates:
        if any(candidate in net for net in METADATA_NETWORKS):
            return f"{address} is a cloud metadata address"
    # ``in`` is False across IP versions, so each candidate meets only its own networks.
    if any(candidate in net for net in allowed for candidate in candidates):
        return None
    # An IPv6 form that carries an IPv4 address is routed to that address: judge that one.
    judged = inner if inner is not None else address
    if any(judged in net for net in _ALWAYS_REFUSED) or (
        not judged.is_global or judged.is_multicast or judged.is_reserved
    ):
        return f"{address} is not a public address"
    return None


def _split(url: str) -> tuple[SplitResult, str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise PushTargetRefused(f"Not a valid URL: {exc}.") from exc
    if parts.scheme not in ALLOWED_SCHEMES:
        raise PushTargetRefused("Use an http or https URL.")
    if parts.username or parts.password:
        raise PushTargetRefused("Credentials in the URL are not allowed.")
    host = parts.hostname
    if not host:
        raise PushTargetRefused("The URL names no host.")
    return parts, host, port or (443 if parts.scheme == "https" else 80)


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise PushTargetRefused(f"{host} does not resolve.") from exc
    addresses: list[IPAddress] = []
    for info in infos:
        # scope ids ("fe80::1%eth0") carry no meaning for the check; drop them
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise PushTargetRefused(f"{host} does not resolve.")
    return addresses


def push_target_resolve(url: str, *, noun: str = "Push URLs") -> PushTarget:
    """Resolve ``url``'s host now and check every address it resolves to.

    ``noun`` names the URLs in the refusal ("Push URLs", "Alert channel URLs"). Returns the
    target with the first address, to which the push must connect. Every address must pass,
    not only the first: a name that also resolves to a refused address is refused, so round-robin
    answers cannot slip one in. Raises PushTargetRefused."""
    parts, host, port = _split(url)
    allowed = allowed_networks()
    addresses = _resolve(host, port)
    for address in addresses:
        reason = refusal_reason(address, allowed)
        if reason is not None:
            raise PushTargetRefused(
                f"{noun} may not point at {host} ({reason}); an operator can allow a "
                "network with RUNTIME_PUSH_ALLOWED_CIDRS."
            )
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return PushTarget(
        scheme=parts.scheme, host=host, port=port, path=path, address=str(addresses[0])
    )


@dataclass(frozen=True)
class PushResponse:
    status: int


def push_send(target: PushTarget, *, body: bytes, headers: dict[str, str]) -> PushResponse:
    """POST ``body`` to the checked address of ``target``: no redirects, no retries here (the
    task retries with backoff), short connect and read timeouts.

    TLS still verifies the certificate against the URL's host name (sent as SNI), although the
    socket goes to the pinned address. Raises ``urllib3.exceptions.HTTPError`` (and OSError)
    when the target cannot be reached or answers nothing."""

    timeout = urllib3.Timeout(
        connect=settings.RUNTIME_WEBHOOK_CONNECT_TIMEOUT_S,
        read=settings.RUNTIME_WEBHOOK_READ_TIMEOUT_S,
    )
    pool: urllib3.HTTPConnectionPool
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            target.address,
            target.port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
        )
    else:
        pool = urllib3.HTTPConnectionPool(
            target.address, target.port, timeout=timeout, retries=False, maxsize=1
        )
    default_port = 443 if target.scheme == "https" else 80
    host_header = target.host if ":" not in target.host else f"[{target.host}]"
    if target.port != default_port:
        host_header += f":{target.port}"
    try:
        response = pool.urlopen(
            "POST",
            target.path,
            body=body,
            headers={**headers, "Host": host_header},
            redirect=False,
            retries=False,
            preload_content=False,
        )
        # The body is never used; read at most a little so the connection can be closed cleanly.
        response.read(1024)
        response.release_conn()
        return PushResponse(status=response.status)
    finally:
        pool.close()


def backoff_seconds(attempt: int, *, base: float = 1.0, cap: float | None = None) -> float:
    """Seconds before retry ``attempt`` (0 for the first retry) of a webhook: exponential
    backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015),
    which spreads a fleet's retries instead of stampeding. Capped (``RUNTIME_WEBHOOK_RETRY_CAP_S``
    by default) below the broker's visibility timeout."""
    limit = settings.RUNTIME_WEBHOOK_RETRY_CAP_S if cap is None else cap
    return random.uniform(0, min(limit, base * 2**attempt))
