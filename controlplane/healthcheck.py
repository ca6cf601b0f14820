"""Container health checks (``docker-compose.yml``), with nothing but the standard library and
the project's own dependencies, because the slim image has no curl.

``python -m controlplane.healthcheck web``: GET /healthz on the local server, as a request
that passes the production checks would: a Host from ALLOWED_HOSTS (otherwise Django answers
400) and ``X-Forwarded-Proto: https`` (otherwise SECURE_SSL_REDIRECT answers 301).

``python -m controlplane.healthcheck broker``: the Celery broker accepts a connection (beat's
only job is to publish there; it has no ping of its own)."""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request


def probe_host(allowed_hosts: str) -> str:
    """A host name Django will accept, from the ALLOWED_HOSTS variable (comma-separated)."""
    for raw in allowed_hosts.split(","):
        host = raw.strip()
        if host and host != "*":
            return host.lstrip(".")
    return "localhost"


def check_web(port: int, timeout: float = 5.0) -> bool:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/healthz",
        headers={
            "Host": probe_host(os.environ.get("ALLOWED_HOSTS", "")),
            "X-Forwarded-Proto": "https",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def check_broker(timeout: float = 5.0) -> bool:
    from kombu import Connection  # local: only this check needs it

    url = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL") or ""
    if not url:
        return False
    try:
        with Connection(url, connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
        return True
    except Exception:  # any failure to connect means unhealthy
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("check", choices=["web", "broker"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    args = parser.parse_args(argv)
    healthy = check_web(args.port) if args.check == "web" else check_broker()
    print("healthy" if healthy else "unhealthy")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
