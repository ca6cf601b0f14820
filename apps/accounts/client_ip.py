"""Which address a request comes from, the one rule for login lockouts (django-axes) and API
throttles (DRF).

``X-Forwarded-For`` is written by whoever sends the request, so it is believed only as far as
the operator says proxies of theirs sit in front: ``NUM_PROXIES`` (environment variable,
default 0). With 0 the address is the TCP peer (``REMOTE_ADDR``) and a client rotating the
header gains nothing; with n > 0 it is the n-th address from the right of the header, the one
the outermost trusted proxy saw. DRF's own ``NUM_PROXIES`` is set from the same setting and
applies the same rule; this function adds that an entry that is not an IP address falls back
to the peer, so a forged header can never reach a database column for addresses."""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def client_ip(request: Any) -> str:
    """The client's address for a Django ``HttpRequest`` or a DRF ``Request``; "" when the
    server gave none (never None, so it can be a cache key)."""
    remote_addr = str(request.META.get("REMOTE_ADDR") or "")
    num_proxies: int = getattr(settings, "NUM_PROXIES", 0)
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if num_proxies <= 0 or not forwarded:
        return remote_addr
    addresses = [a.strip() for a in str(forwarded).split(",")]
    candidate = addresses[-min(num_proxies, len(addresses))]
    return candidate if _is_ip(candidate) else remote_addr
