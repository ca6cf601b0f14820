"""Settings shared by every profile, read from the environment.

With nothing set, this is the embedded default: SQLite and a Celery broker on the
filesystem under ``var/``, so ``make run`` needs no external service.
"""

from __future__ import annotations

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

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "django_htmx",
    "apps.audit",
    "apps.accounts",
    "apps.tenancy",
    "apps.bundles",
    "apps.flags",
    "apps.rollouts",
    "apps.runtimes",
    "apps.dashboard",
    "controlplane.fastpath",
    "controlplane.input_guards.InputGuardsConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "apps.audit.middleware.RequestIdMiddleware",
    "controlplane.input_guards.HostileInputMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "controlplane.urls"
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
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
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
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:overview"
LOGOUT_REDIRECT_URL = "login"
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user row; anonymous visitors see nothing

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

REST_FRAMEWORK = {
    # Token first: DRF answers a failed or missing login with the first class's challenge,
    # so scripts get 401 + `WWW-Authenticate: Token` (the session has none, which gives 403).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "controlplane.api.AutoSchema",
    # Size, depth and NUL limits on every JSON body (controlplane/input_guards.py).
    "DEFAULT_PARSER_CLASSES": [
        "controlplane.input_guards.GuardedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "controlplane.api.exception_handler",
    # The token endpoint takes passwords from anonymous callers: slow down guessing.
    "DEFAULT_THROTTLE_RATES": {"anon": env("API_ANON_THROTTLE_RATE", default="30/minute")},
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
    # Every operation documents the error statuses it can answer (controlplane/api.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "controlplane.api.document_error_responses",
    ],
    # Two different choice sets are both called "mode" (flags import, kill switch mode).
    "ENUM_NAME_OVERRIDES": {
        "FlagImportModeEnum": ["merge", "replace"],
        "KillSwitchModeEnum": "apps.flags.models.AgentMode",
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
    }
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celery" / "beat-schedule")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
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

# Hostile input (controlplane/input_guards.py): the largest body read (JSON, forms) and the
# deepest JSON nesting accepted. Bundle files have their own, smaller limit.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2_621_440)
API_MAX_JSON_DEPTH = env.int("API_MAX_JSON_DEPTH", default=64)

# Runtimes: a runtime with no heartbeat for this long shows as stale and leaves convergence counts.
RUNTIME_STALE_AFTER_S = env.int("RUNTIME_STALE_AFTER_S", default=30)
RUNTIME_WEBHOOK_TIMEOUT_S = env.float("RUNTIME_WEBHOOK_TIMEOUT_S", default=5.0)
