# syntax=docker/dockerfile:1
# The production image: web (uvicorn, ASGI), worker and beat all run from it (see
# docker-compose.yml). Two stages: the builder has the compilers and turns every dependency
# into a wheel; the final image installs those wheels and has no build tools at all.

# --------------------------------------------------------------------------- builder
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential gcc libpq-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /build
COPY pyproject.toml ./
# Only the dependencies become wheels: the project's own code is copied into the final image
# as plain files (templates/ and static/ sit beside it).
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && pip wheel --wheel-dir /wheels -r requirements.txt

# --------------------------------------------------------------------------- runtime
FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=controlplane.settings.production \
    CONTROLPLANE_VAR_DIR=/var/lib/controlplane \
    STATIC_ROOT=/app/staticfiles \
    PORT=8000

# The app runs as this unprivileged user; it owns nothing but the var dir.
RUN groupadd --system --gid 10001 controlplane \
 && useradd --system --uid 10001 --gid controlplane --no-create-home \
            --home-dir /nonexistent --shell /usr/sbin/nologin controlplane

COPY --from=builder /wheels /tmp/wheels
RUN pip install --no-index --find-links=/tmp/wheels /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels

# Code is owned by root and read-only for the app user.
WORKDIR /app
COPY manage.py pyproject.toml ./
COPY controlplane ./controlplane
COPY apps ./apps
COPY dataplane ./dataplane
COPY templates ./templates
COPY static ./static
COPY docs ./docs

# Static files are collected at build time (hashed names, compressed) into a root-owned
# directory served by whitenoise. The placeholder key and host exist only for this step.
RUN SECRET_KEY=collectstatic-only ALLOWED_HOSTS=localhost CONTROLPLANE_VAR_DIR=/tmp/build-var \
    python manage.py collectstatic --noinput --verbosity 0 \
 && rm -rf /tmp/build-var \
 && chmod -R u=rwX,go=rX /app \
 && mkdir -p "$CONTROLPLANE_VAR_DIR" \
 && chown controlplane:controlplane "$CONTROLPLANE_VAR_DIR" \
 && chmod 0750 "$CONTROLPLANE_VAR_DIR"

VOLUME ["/var/lib/controlplane"]
USER controlplane:controlplane
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-m", "controlplane.healthcheck", "web"]

# No `--forwarded-allow-ips "*"`: uvicorn would then take the client address from the
# left of X-Forwarded-For, which the client writes. It trusts FORWARDED_ALLOW_IPS (default
# loopback); Django takes the client address by NUM_PROXIES (apps/accounts/client_ip.py).
CMD ["uvicorn", "controlplane.asgi:application", "--host", "0.0.0.0", "--port", "8000", \
     "--proxy-headers", "--no-server-header"]
