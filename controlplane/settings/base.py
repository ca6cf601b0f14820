"""Settings shared by every profile, read from the environment.

With nothing set, this is the embedded default: SQLite and a Celery broker on the
filesystem under ``var/``, so ``make run`` needs no external service.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ
import structlog

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()

VAR_DIR = Path(env("CONTROLPLANE_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _embedded_secret_key() -> str:
    """A random key kept under var/, so the embedded default never ships a fixed secret."""
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        import secrets  # local: only the embedded default needs it

        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = env("SECRET_KEY", default="") or _embedded_secret_key()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Django's admin writes models past the audited services, so it is off by default and
# read-only when on (controlplane/admin_site.py): a window for inspecting rows.
DJANGO_ADMIN_ENABLED = env.bool("DJANGO_ADMIN_ENABLED", default=False)

INSTALLED_APPS = [
    "controlplane.admin_site.ReadOnlyAdminConfig",  # django.contrib.admin, read-only
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "django_htmx",
    "csp",
    "axes",
    "apps.audit",
    "apps.accounts",
    "apps.tenancy",
    "apps.bundles",
    "apps.flags",
    "apps.telemetry",
    "apps.reviews",
    "apps.alerts",
    "apps.budgets",
    "apps.rollouts",
    "apps.runtimes",
    "apps.approvals",
    "apps.dashboard",
    "apps.core.fastpath",
    "apps.core.input_guards.InputGuardsConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "apps.audit.middleware.RequestIdMiddleware",
    # a view interrupted by a lost database answers 503 with Retry-After, not a 500
    "apps.core.errors.DatabaseUnavailableMiddleware",
    "apps.core.input_guards.HostileInputMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "apps.core.errors.ApiCommonMiddleware",  # CommonMiddleware; 308 under /api/
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # after a login with a password someone else chose: every page leads to the change page
    "apps.accounts.middleware.PasswordChangeRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # last, as django-axes asks: turns a locked-out login into the lockout page
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "controlplane.urls"
CSRF_FAILURE_VIEW = "apps.core.errors.csrf_failure"
# Largest request body the API takes (413 JSON beyond it), checked by
# apps.core.input_guards before any parser reads it.
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=10 * 1024 * 1024)
WSGI_APPLICATION = "controlplane.wsgi.application"
ASGI_APPLICATION = "controlplane.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.tenancy.context_processors.current_tenant",
            ],
        },
    },
]

_sqlite_default = f"sqlite:///{VAR_DIR / 'controlplane.sqlite3'}"
# An empty variable counts as unset (compose files and shells often export KEY=).
DATABASES = {"default": env.db_url_config(env("DATABASE_URL", default="") or _sqlite_default)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server, worker and beat share one file: WAL lets readers run beside the
    # writer, IMMEDIATE takes the write lock up front instead of failing mid-transaction.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=0))
# A persistent connection (CONN_MAX_AGE > 0: the fast path's, a worker's) is checked before
# its first use in each request or task, so one the database dropped meanwhile (a restart, a
# failover, an idle timeout) is replaced instead of failing that request (issue 9, the nets).
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", env.bool("CONN_HEALTH_CHECKS", default=True))
# Django's psycopg connection pool (PostgreSQL only; on in the production profile): under ASGI
# every Django request runs in a thread of its own, so without a pool each one opened a new
# connection (~7 ms and a backend process forked per request; decision 0021, measured by
# benchmarks.ingest). Connections are handed back to the pool at the end of each request
# and checked (CONN_HEALTH_CHECKS) when taken again. A pool replaces persistent connections,
# so CONN_MAX_AGE is 0 with it (Django refuses both). Size it per web process: the requests
# a process runs at once (asgiref's threads) plus the fast path's and the workers' own.
DATABASE_POOL = env.bool("DATABASE_POOL", default=False)
if DATABASE_POOL and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=2),
        "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=10),
        # a request waits this long for a free connection, then fails (503, decision 0015)
        "timeout": env.float("DATABASE_POOL_TIMEOUT_S", default=10.0),
        # a pooled connection idle this long is closed (down to min_size)
        "max_idle": env.float("DATABASE_POOL_MAX_IDLE_S", default=300.0),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", default="")
# Every Redis call (cache, pub/sub publish, Celery broker) gives up after these many seconds:
# a hung Redis must cost a request a bounded delay, never the whole hang (issue 9, item 4).
REDIS_SOCKET_CONNECT_TIMEOUT_S = env.float("REDIS_SOCKET_CONNECT_TIMEOUT_S", default=0.5)
REDIS_SOCKET_TIMEOUT_S = env.float("REDIS_SOCKET_TIMEOUT_S", default=1.0)
# The fast path's pub/sub subscriber PINGs after this long without traffic and reconnects
# (with backoff) when the PING is not answered as long again: a hung Redis is noticed.
FASTPATH_REDIS_HEALTH_S = env.float("FASTPATH_REDIS_HEALTH_S", default=5.0)
# Open long-polls and streams one runtime token may hold per fast-path process (a fleet of
# SDKs sharing a token counts together: size it for the fleet); beyond it, 429.
FASTPATH_MAX_OPEN_PER_TOKEN = env.int("FASTPATH_MAX_OPEN_PER_TOKEN", default=1000)
# How often the fast path reads every topic's version anyway: the catch-up for a pub/sub message
# lost in an outage (0: 5 s with Redis, 0.5 s without, where polling is the only news).
FASTPATH_POLL_INTERVAL_S = env.float("FASTPATH_POLL_INTERVAL_S", default=0.0)
# A waiting read (an approval's decision) is read again after this many seconds without an
# event: the safety net for a pub/sub message lost in an outage.
FASTPATH_WAIT_RECHECK_S = env.float("FASTPATH_WAIT_RECHECK_S", default=5.0)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "SOCKET_CONNECT_TIMEOUT": REDIS_SOCKET_CONNECT_TIMEOUT_S,
                "SOCKET_TIMEOUT": REDIS_SOCKET_TIMEOUT_S,
                # The cache holds throttle counters and the Overview's health figures of the
                # minute: with Redis down a request is served unthrottled (and logged), the
                # figures computed afresh, rather than answered 500.
                "IGNORE_EXCEPTIONS": True,
                "LOG_IGNORED_EXCEPTIONS": True,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    # first: refuses a locked-out username+address before any password is checked
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:overview"
LOGOUT_REDIRECT_URL = "login"
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user row; anonymous visitors see nothing

# How many proxies of yours sit in front of the web server and append to X-Forwarded-For.
# 0 (default): the client address is the TCP peer and the header is ignored, so a client
# cannot pick its own address. Used by the login lockout and the API throttles alike
# (apps/accounts/client_ip.py).
NUM_PROXIES = env.int("NUM_PROXIES", default=0)

# Login lockout (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords for one username
# from one address, that pair is refused for LOGIN_LOCKOUT_MINUTES, on the login page and
# the API token endpoint alike. Kept in the database, so it holds while Redis is down.
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "apps.accounts.client_ip.client_ip"
AXES_LOCKOUT_CALLABLE = "apps.accounts.lockout.login_locked_out"
AXES_DISABLE_ACCESS_LOG = True  # failures are kept; successful logins need no row each
AXES_VERBOSE = False

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    # vendor/plotly/plotly.min.js from the plotly package
    "controlplane.staticfinders.PlotlyFinder",
]
# The container image collects static files at build time into a read-only directory of its
# own (STATIC_ROOT=/app/staticfiles); the embedded default keeps them under var/.
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
# Files served at the site's root: /favicon.ico, which browsers and feed readers ask for
# without reading the page's <link rel="icon"> (static/img/favicon.svg).
WHITENOISE_ROOT = BASE_DIR / "static" / "root"

# Content-Security-Policy (django-csp 4.x): scripts only from our own origin (/static/: htmx,
# plotly, the pages' behaviour in static/js/app.js, the API docs' bundles), so an injected
# <script> or on*= attribute does not run. Styles allow inline because plotly.js, htmx's
# indicator and the API docs (Swagger UI, ReDoc) set style attributes at run time; an injected
# style cannot run code. data: images are the icons pico and Swagger UI embed; ReDoc renders
# in a blob: worker. See docs/decisions/0009-audit-checkpoints-and-csp.md.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "worker-src": ["'self'", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
# Headers Django's SecurityMiddleware sends on every profile (production adds HSTS, secure
# cookies and the HTTPS redirect): no MIME sniffing, no referrer beyond our origin, no
# cross-origin window handles, framing refused.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"

REST_FRAMEWORK = {
    # Token first: DRF answers a failed or missing login with the first class's challenge,
    # so scripts get 401 + `WWW-Authenticate: Token` (the session has none, which gives 403).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.api.token_auth.ApiTokenAuthentication",
        "apps.accounts.api.token_auth.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "apps.core.api.AutoSchema",
    # Size, depth and NUL limits on every JSON body (apps/core/input_guards.py).
    "DEFAULT_PARSER_CLASSES": [
        "apps.core.input_guards.GuardedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "apps.core.api.exception_handler",
    # JSON only: the API has no HTML representation (DRF's browsable API rendered errors as
    # pages and failed with 500 on views without a serializer_class), see apps/core/api.py.
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "apps.core.api_http.JsonFallbackNegotiation",
    "DEFAULT_METADATA_CLASS": "apps.core.api_http.ApiMetadata",
    # Per runtime token, on every runtime-facing Django endpoint (a no-op for other callers).
    "DEFAULT_THROTTLE_CLASSES": ["apps.accounts.api.throttling.RuntimeTokenRateThrottle"],
    # The token endpoint takes passwords from anonymous callers: slow down guessing.
    "DEFAULT_THROTTLE_RATES": {"anon": env("API_ANON_THROTTLE_RATE", default="30/minute")},
    "NUM_PROXIES": NUM_PROXIES,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Agent control plane API",
    "DESCRIPTION": "Operator API (/api/v1/) and data-plane runtime API of the agent control plane.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Operator API operations are tagged with their app's label (apps.core.api.AutoSchema).
    "TAGS": [
        {"name": "tenancy", "description": "Tenants, agents and environments."},
        {"name": "accounts", "description": "Users, roles, tenant grants and runtime tokens."},
        {"name": "bundles", "description": "Bundle versions, evaluations and promotion gates."},
        {"name": "rollouts", "description": "Deployments, rollbacks, rollout plans and rollouts."},
        {"name": "flags", "description": "Flags, segments and kill switches."},
        {"name": "budgets", "description": "Budgets on cost, tokens, requests and tool calls."},
        {"name": "approvals", "description": "Approval queues and approval requests."},
        {"name": "alerts", "description": "Alerts and the channels they are sent to."},
        {"name": "audit", "description": "The audit trail and its signed checkpoints."},
        {
            "name": "runtime",
            "description": "What data-plane runtimes call with a runtime token: the signed "
            "config snapshot (long-poll), keys, heartbeats, telemetry, budget reservations "
            "and approval requests.",
        },
        {
            "name": "unleash-client",
            "description": "Unleash's client API for Unleash SDKs, with a runtime token.",
        },
    ],
    # Every operation documents the error statuses it can answer (apps/core/api.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apps.core.api.document_error_responses",
        # The runtime fast path's routes, which Django never sees (after the one above).
        "apps.core.fastpath.openapi.document_fastpath_routes",
    ],
    # Two different choice sets are both called "mode" (flags import, kill switch mode).
    "ENUM_NAME_OVERRIDES": {
        "FlagImportModeEnum": ["merge", "replace"],
        "KillSwitchModeEnum": "apps.flags.models.AgentMode",
        # Budgets and kill switches both have a "scope", with different choices.
        "BudgetScopeEnum": "apps.budgets.models.Scope",
        "KillSwitchScopeEnum": "apps.flags.models.KillSwitchScope",
    },
}

# Ed25519 key that signs bundle versions and runtime snapshots. Production: a PEM (PKCS#8)
# private key, or the base64 of its raw 32-byte seed, in CONTROLPLANE_SIGNING_KEY, or a PEM
# file named by CONTROLPLANE_SIGNING_KEY_FILE. Embedded default: generated under var/signing/
# and rotated with `./manage.py signing_key rotate`. Retired public keys stay published.
SIGNING_KEY = env("CONTROLPLANE_SIGNING_KEY", default="")
SIGNING_KEY_FILE = env("CONTROLPLANE_SIGNING_KEY_FILE", default="")
SIGNING_KEY_DIR = Path(env("CONTROLPLANE_SIGNING_KEY_DIR", default="") or VAR_DIR / "signing")

# Celery: Redis in production; with no broker configured, kombu's filesystem transport,
# which needs no server (the embedded default).
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="") or REDIS_URL or "filesystem://"
# A message a worker took and never acknowledged (the worker was killed) goes back to the queue
# after `visibility_timeout` seconds (kombu's default: an hour). Sized to the longest hold of a
# task: a webhook retry's countdown (capped by RUNTIME_WEBHOOK_RETRY_CAP_S; the worker holds an
# ETA message unacknowledged until then) plus its time limit (15 s), so a push cut short by a
# killed worker is delivered again within a minute (a worker restores every 5 s) and one
# merely waiting for its retry is not delivered twice.
REDIS_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT_S", default=40),
    "socket_connect_timeout": REDIS_SOCKET_CONNECT_TIMEOUT_S,
    "socket_timeout": REDIS_SOCKET_TIMEOUT_S,
    # .delay() from a request gives up fast; the beat re-sends what was missed
    "max_retries": 1,
    # how often a worker looks for expired messages: every 5 s (kombu's default, 10 s times a
    # throttle of 10, would add up to 100 s)
    "unacked_restore_interval": 5,
    "unacked_restore_throttle": 1,
}
# beat keeps its schedule under var/celery/ whatever the broker (it fails to start without it)
(VAR_DIR / "celery").mkdir(parents=True, exist_ok=True)
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "celery" / "broker"
    (_broker_dir / "processed").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        # how often the worker looks for new messages (kombu's default: every second)
        "polling_interval": 0.2,
    }
    # kombu's filesystem transport, except that a worker asked to stop stops polling at once
    # (controlplane/broker.py says why Celery would otherwise wait 2-4 s for it).
    CELERY_BROKER_TRANSPORT = "controlplane.broker:FilesystemTransport"
    # The longest the worker's timer sleeps (default 1 s): stopping waits for that sleep, so
    # with the options and transport above, Ctrl-C on `make run` stops the worker in about
    # a second, not 6 to 10.
    CELERY_WORKER_TIMER_PRECISION = 0.2
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = REDIS_BROKER_TRANSPORT_OPTIONS
CELERY_BROKER_CONNECTION_TIMEOUT = REDIS_SOCKET_CONNECT_TIMEOUT_S
# .delay() from a request: one quick retry, then the caller logs and the beat catches up.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celery" / "beat-schedule")
# No result backend (every task ignores its result), so nothing for Celery's own daily
# celery.backend_cleanup to clean: without an expiry beat does not add it, and the schedule is
# exactly what controlplane/schedule.py lists.
CELERY_RESULT_EXPIRES = None

# Audit checkpoints: the chain head is signed every AUDIT_CHECKPOINT_INTERVAL_S and, when set,
# sent to AUDIT_CHECKPOINT_WEBHOOK_URL (a store the database's writers cannot reach).
AUDIT_CHECKPOINT_INTERVAL_S = env.int("AUDIT_CHECKPOINT_INTERVAL_S", default=300)
AUDIT_CHECKPOINT_WEBHOOK_URL = env("AUDIT_CHECKPOINT_WEBHOOK_URL", default="")
AUDIT_CHECKPOINT_WEBHOOK_TIMEOUT_S = env.float("AUDIT_CHECKPOINT_WEBHOOK_TIMEOUT_S", default=5.0)

# Every periodic task lives in controlplane/schedule.py (installed on the Celery app at finalize).

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # a 4xx is one line, without the traceback Django attaches (apps/core/log_filters.py)
    "filters": {"client_errors_one_line": {"()": "apps.core.log_filters.ClientErrorsOneLine"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "filters": ["client_errors_one_line"]}
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
# Structured events (`entity.action` with ids as fields) go through the standard logging
# above, so LOG_LEVEL and handlers apply to them too; JSON lines when LOG_FORMAT=json.
structlog.configure(
    processors=[
        structlog.stdlib.filter_by_level,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
        structlog.processors.JSONRenderer()
        if env("LOG_FORMAT", default="console") == "json"
        else structlog.dev.ConsoleRenderer(colors=False),
    ],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)

# Hostile input (apps/core/input_guards.py): the largest body read (JSON, forms) and the
# deepest JSON nesting accepted. Bundle files have their own, smaller limit.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2_621_440)
API_MAX_JSON_DEPTH = env.int("API_MAX_JSON_DEPTH", default=64)

# Runtimes: a runtime with no heartbeat for this long shows as stale and leaves convergence counts.
RUNTIME_STALE_AFTER_S = env.int("RUNTIME_STALE_AFTER_S", default=30)
# Webhook pushes: short timeouts (a push is a hint, the runtime also long-polls), retries with
# exponential backoff and jitter capped so a retry's wait stays inside the visibility timeout.
RUNTIME_WEBHOOK_CONNECT_TIMEOUT_S = env.float("RUNTIME_WEBHOOK_CONNECT_TIMEOUT_S", default=2.0)
RUNTIME_WEBHOOK_READ_TIMEOUT_S = env.float("RUNTIME_WEBHOOK_READ_TIMEOUT_S", default=3.0)
RUNTIME_WEBHOOK_RETRY_CAP_S = env.float("RUNTIME_WEBHOOK_RETRY_CAP_S", default=20.0)
# Networks push URLs may point into although they are not public (loopback, private, ...), as
# CIDRs separated by commas, e.g. "10.0.0.0/8,fd00::/8" for runtimes inside a private network.
# Empty (the default): only public addresses. Cloud metadata addresses are refused regardless.
RUNTIME_PUSH_ALLOWED_CIDRS = env.list("RUNTIME_PUSH_ALLOWED_CIDRS", default=[])
# The beat re-sends after-commit side effects (revision publishes, webhook pushes, token
# revocations) of the last this many seconds, so an outage of Redis or the broker delays them
# instead of losing them.
RUNTIME_RESEND_WINDOW_S = env.int("RUNTIME_RESEND_WINDOW_S", default=300)
RUNTIME_RESEND_EVERY_S = env.float("RUNTIME_RESEND_EVERY_S", default=15.0)
# The beat enqueues again alert deliveries a broker outage swallowed (docs/alerts.md).
ALERT_RESEND_EVERY_S = env.float("ALERT_RESEND_EVERY_S", default=60.0)
# Requests per runtime token and minute on the runtime-facing Django endpoints (a fleet shares
# its token: size it to the fleet); 429 with Retry-After beyond.
RUNTIME_TOKEN_REQUESTS_PER_MINUTE = env.int("RUNTIME_TOKEN_REQUESTS_PER_MINUTE", default=6000)
# One runtime token may register this many new instance ids per minute (429 beyond), runtime
# heartbeats and Unleash SDK registrations each.
RUNTIME_NEW_INSTANCES_PER_MINUTE = env.int("RUNTIME_NEW_INSTANCES_PER_MINUTE", default=60)
# New instances of one token are audited once per this many seconds (the first of a burst),
# so instance churn cannot flood the audit log; the Runtimes page lists every instance.
RUNTIME_REGISTRATION_AUDIT_INTERVAL_S = env.int(
    "RUNTIME_REGISTRATION_AUDIT_INTERVAL_S", default=600
)

# Telemetry (apps/telemetry, docs/decisions/0021): raw request records are kept this many days
# (on PostgreSQL whole day partitions are dropped), minute rollups this many, hour rollups
# forever. A record may start at most TELEMETRY_MAX_FUTURE_S in the future (clock skew) and no
# earlier than the raw retention window.
TELEMETRY_RAW_RETENTION_DAYS = env.int("TELEMETRY_RAW_RETENTION_DAYS", default=7)
TELEMETRY_MINUTE_RETENTION_DAYS = env.int("TELEMETRY_MINUTE_RETENTION_DAYS", default=90)
TELEMETRY_MAX_FUTURE_S = env.int("TELEMETRY_MAX_FUTURE_S", default=300)
# Day partitions created ahead of time by the retention task (and on demand by ingestion).
TELEMETRY_PARTITIONS_AHEAD_DAYS = env.int("TELEMETRY_PARTITIONS_AHEAD_DAYS", default=3)
# Items per POST /api/runtime/v1/records (records and buckets each); more is a 413.
TELEMETRY_MAX_BATCH_ITEMS = env.int("TELEMETRY_MAX_BATCH_ITEMS", default=1000)
# How often the retention task runs (seconds).
TELEMETRY_RETENTION_EVERY_S = env.float("TELEMETRY_RETENTION_EVERY_S", default=3600.0)
# How often the beat runs the canary analysis of every shadowing or canary rollout (seconds);
# the analysis records one tick per 30-second slot whatever this is.
ROLLOUT_ANALYSIS_EVERY_S = env.float("ROLLOUT_ANALYSIS_EVERY_S", default=30.0)
# Budgets (docs/budgets.md): a strict budget's reservation, or a settled amount waiting for its
# request's record, is released after this many seconds.
BUDGET_RESERVATION_TTL_S = env.float("BUDGET_RESERVATION_TTL_S", default=120.0)
# How often the beat releases expired reservations and re-announces budgets whose exhausted
# window ended (seconds); runtimes also stop enforcing at the window's end on their own.
BUDGET_ROLL_EVERY_S = env.float("BUDGET_ROLL_EVERY_S", default=10.0)
# Approvals (docs/approvals.md): how often the beat expires requests past their queue's
# timeout (deny) and escalates those waiting past its escalation time (seconds). A runtime
# long-polling a request sees its expiry at the moment it is due, whatever this is.
APPROVAL_SWEEP_EVERY_S = env.float("APPROVAL_SWEEP_EVERY_S", default=5.0)
# PostgreSQL: a reservation's transaction commits without waiting for its WAL flush (for that
# transaction only), so the hot counter's row lock is held a flush shorter. A database crash
# may then forget the reservations granted in its last ~0.6 s: their steps still run and their
# records still count, so a strict budget may pass its limit by at most those estimates
# (docs/decisions/0025). True waits for the flush.
BUDGET_SYNCHRONOUS_COMMIT = env.bool("BUDGET_SYNCHRONOUS_COMMIT", default=False)
# PostgreSQL: an ingest transaction commits without waiting for its WAL flush
# (synchronous_commit=off, for that transaction only). A database crash may then lose the
# batches acknowledged in its last ~0.6 s (3 x wal_writer_delay), whole: keys, raw rows and
# rollup sums go together, so nothing is half-counted or counted twice. It releases the hot
# rollup rows (a whole fleet reports the same minute) a flush earlier (decision 0021). True
# waits for the flush like every other write of the product.
TELEMETRY_SYNCHRONOUS_COMMIT = env.bool("TELEMETRY_SYNCHRONOUS_COMMIT", default=False)
# The records explorer flags a request as a cost outlier when it cost more than this multiple
# of its agent's median cost per request over the trailing window (docs/decisions/0022).
TELEMETRY_COST_OUTLIER_MULTIPLE = env.float("TELEMETRY_COST_OUTLIER_MULTIPLE", default=10.0)
TELEMETRY_COST_OUTLIER_WINDOW_HOURS = env.int("TELEMETRY_COST_OUTLIER_WINDOW_HOURS", default=24)
