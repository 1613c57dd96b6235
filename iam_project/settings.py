"""Django settings for iam-service, read from environment variables (see README "Configuration").

``IAM_ENV=production`` (the default) demands every URL and a real ``SECRET_KEY``; a missing or
malformed value stops the process with one FATAL line naming the variable (:mod:`iam_project.startup`).
``IAM_ENV=development`` falls back to the embedded PostgreSQL / NATS / filesystem broker.
"""

from __future__ import annotations

import os
from datetime import timedelta

import environ

from core.config import (
    BASE_DIR,
    DATA_DIR,
    DEVELOPMENT,
    ConfigError,
    broker_url,
    connection_settings,
    database_config,
    event_bus_config,
    iam_env,
    redis_url,
)
from iam_project import startup

env = environ.Env()

ROLE = os.environ.get("IAM_ROLE", "web")
BUILDING_IMAGE = env.bool("IAM_BUILD", default=False)

try:
    IAM_ENV = iam_env()
    DEVELOPMENT_MODE = IAM_ENV == DEVELOPMENT
    DEBUG = env.bool("DEBUG", default=DEVELOPMENT_MODE)

    if DEVELOPMENT_MODE or BUILDING_IMAGE:
        SECRET_KEY = env.str("SECRET_KEY", default="development-only-secret-key-not-for-production-use-0123456789")
    else:
        SECRET_KEY = env.str("SECRET_KEY", default="")
        if len(SECRET_KEY) < 50:
            raise ConfigError("SECRET_KEY", "must be set to at least 50 random characters")

    _database_url = os.environ.get("DATABASE_URL", "")
    if not _database_url and (DEVELOPMENT_MODE or BUILDING_IMAGE):
        _url_file = DATA_DIR / "postgres.url"
        _database_url = _url_file.read_text() if _url_file.exists() else "postgres://postgres@/iam?host=/nonexistent"
    if not _database_url:
        raise ConfigError("DATABASE_URL", "is not set")
    _database = database_config(_database_url, application_name=f"iam-{ROLE}", **connection_settings(env, ROLE))

    _event_bus_url = os.environ.get("EVENT_BUS_URL", "")
    if not _event_bus_url and (DEVELOPMENT_MODE or BUILDING_IMAGE):
        _url_file = DATA_DIR / f"{os.environ.get('IAM_DEV_EVENT_BUS', 'nats')}.url"
        _event_bus_url = _url_file.read_text() if _url_file.exists() else "nats://127.0.0.1:4222"
    if not _event_bus_url:
        raise ConfigError("EVENT_BUS_URL", "is not set")
    EVENT_BUS = event_bus_config(_event_bus_url)
    _kafka_cloudevents_mode = os.environ.get("KAFKA_CLOUDEVENTS_MODE", "binary").strip().lower() or "binary"
    if _kafka_cloudevents_mode not in ("binary", "structured"):
        raise ConfigError("KAFKA_CLOUDEVENTS_MODE", "must be binary or structured", _kafka_cloudevents_mode)

    _broker = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL", "")
    if not _broker and (DEVELOPMENT_MODE or BUILDING_IMAGE):
        _broker = "filesystem://"
    if not _broker:
        raise ConfigError("CELERY_BROKER_URL", "is not set (nor REDIS_URL)")
    CELERY_BROKER_URL = broker_url(_broker)
    _cache_url = os.environ.get("REDIS_URL", "")
    if _cache_url:
        redis_url(_cache_url)
except ConfigError as error:
    startup.fatal(error)

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["*"] if DEVELOPMENT_MODE else [])

INSTALLED_APPS = [
    "console",  # before django.contrib.admin: its templates override the admin's
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "axes",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc served from our own static files, not a CDN
    "tenants",
    "attributes",
    "users",
    "groups",
    "outbox",
    "iam_project",
    "access",
    "audit",
    "resolver",
    "imports",
    "api",
    "devtools",
]

MIDDLEWARE = [
    # The PIP's hot paths answer here (api/lean.py), with the observability and security headers of the
    # middleware below, without session, CSRF, messages or DRF; other requests and refusals go on through.
    "api.lean.LeanApiMiddleware",
    "core.observability.ObservabilityMiddleware",
    "core.observability.ProbesMiddleware",
    "core.middleware.ApiProblemMiddleware",
    "core.db.consistency.ConsistencyMiddleware",  # Consistency-Token: reads on replicas, tokens of writes
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "core.middleware.BodySizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "core.middleware.ApiCommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks: turns a lockout into its 429 page
]

ROOT_URLCONF = "iam_project.urls"
WSGI_APPLICATION = "iam_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_database.update(
    {
        "CONN_MAX_AGE": env.int("DB_CONN_MAX_AGE", default=60),
        "CONN_HEALTH_CHECKS": True,
        "ATOMIC_REQUESTS": False,
    }
)
DATABASES = {"default": _database}
from iam_project.settings_replicas import *  # noqa: E402, F403 - the section module: read replicas, the router

DATABASES.update(REPLICA_DATABASES)  # noqa: F405 - DATABASE_REPLICA_URLS, as replica_1 …
# How long web, worker and beat wait at start for the database before the FATAL line and exit 3.
DB_STARTUP_WAIT_SECONDS = env.float("DB_STARTUP_WAIT_SECONDS", default=10.0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEVELOPMENT_MODE  # development serves the admin's files without collectstatic

# --- request limits -------------------------------------------------------------------------------
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAX_REQUEST_BODY_BYTES", default=1024 * 1024)
IAM_MAX_ATTRIBUTES_PER_SUBJECT = env.int("MAX_ATTRIBUTES_PER_SUBJECT", default=64)
IAM_MAX_ATTRIBUTE_VALUE_BYTES = env.int("MAX_ATTRIBUTE_VALUE_BYTES", default=4096)
IAM_MAX_PAGE_SIZE = 500
IMPORT_MAX_BYTES = env.int("IMPORT_MAX_BYTES", default=64 * 1024 * 1024)

# --- REST API -------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "access.authentication.ApiKeyAuthentication",  # first: its challenge is the API's (Bearer)
        "access.authentication.BasicAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["access.permissions.ScopePermission"],
    "DEFAULT_THROTTLE_CLASSES": ["access.throttling.PrincipalRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "principal": env.str("API_THROTTLE_RATE", default="6000/min"),
        "pip": env.str("PIP_THROTTLE_RATE", default="2000/s"),  # per key: machines asking many times a second
    },
    "DEFAULT_PARSER_CLASSES": ["core.api.parsers.LimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "core.api.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "EXCEPTION_HANDLER": "core.api.problems.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "URL_FORMAT_OVERRIDE": None,  # ?format= is the PIP's response shape (native | authzen)
}

SPECTACULAR_SETTINGS = {
    "TITLE": "iam-service API",
    "DESCRIPTION": "Tenants, policy subjects (users) and their typed attributes; the Policy Information Point.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # /api/docs/ and /api/redoc/ load their JavaScript from our static files (drf-spectacular-sidecar,
    # a pinned build), never from a public CDN at whatever version it serves today.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "TenantStatusEnum": "tenants.models.Tenant.Status",
        "UserStatusEnum": "users.models.User.Status",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.api.schema.add_problem_responses",
    ],
}

# --- events, relay and Celery: iam_project/settings_events.py --------------------------------------
from iam_project.settings_events import *  # noqa: E402, F403 - the section module, read in order
from iam_project.settings_scim import *  # noqa: E402, F403 - the SCIM section (docs/scim.md)

KAFKA_CLOUDEVENTS_MODE = _kafka_cloudevents_mode  # validated at the top, with the other start-up values

if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT = "iam_project.broker:Transport"
    _broker_queue = DATA_DIR / "broker" / "queue"
    _broker_queue.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_queue),
        "data_folder_out": str(_broker_queue),
        "control_folder": str(DATA_DIR / "broker" / "control"),
    }
    (DATA_DIR / "broker" / "control").mkdir(parents=True, exist_ok=True)

# --- metrics --------------------------------------------------------------------------------------
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=[])  # empty: served to anyone
WORKER_METRICS_PORT = env.int("WORKER_METRICS_PORT", default=9100)

# --- logging --------------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "filters": {
        "request_id": {"()": "core.observability.RequestIdFilter"},
        "routine_ticks": {"()": "core.observability.RoutineTickFilter"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "json",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "django.request": {"level": "ERROR"},  # our own request line replaces Django's 4xx warnings
        "celery": {"level": LOG_LEVEL},
        "celery.beat": {"level": LOG_LEVEL, "filters": ["routine_ticks"]},
        "pgserver": {"level": "WARNING"},
        "celery.app.trace": {"level": "WARNING"},
        "axes": {"level": "ERROR"},  # iam.auth logs each failure once, as JSON, without axes' own lines
        "celery.worker.strategy": {"level": "WARNING"},
        "kombu.connection": {"level": "ERROR"},
    },
}

# --- security -------------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEVELOPMENT_MODE:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# --- brute-force protection of password logins (django-axes; access/login_guard.py) ---------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out pair before any password hashing
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]  # the pair: nobody can lock a user out for everyone
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True  # our own log line and auth_failures_total record failures; no row per login
AXES_CLIENT_IP_CALLABLE = "access.login_guard.client_address"
AXES_LOCKOUT_CALLABLE = "access.login_guard.lockout_response"
AXES_VERBOSE = False
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

# --- cache (throttling; the PIP cache when shared) ------------------------------------------------
if _cache_url:
    CACHES = {
        "default": {
            "BACKEND": "core.redis_cache.RedisCache",  # one redis-py client per process
            "LOCATION": _cache_url,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
SHARED_CACHE = bool(_cache_url)
API_KEY_CACHE_SECONDS = env.int("API_KEY_CACHE_SECONDS", default=60)
PIP_CACHE_SECONDS = env.int("PIP_CACHE_SECONDS", default=300)
# With REDIS_URL: web workers answer cached lookups from memory, every change acknowledged by each
# worker before its write returns (core/near_cache.py).
PIP_NEAR_CACHE = env.bool("PIP_NEAR_CACHE", default=True)
PIP_NEAR_CACHE_ENTRIES = env.int("PIP_NEAR_CACHE_ENTRIES", default=50_000)  # per worker, ~2.6 KB each (10 attributes)
PIP_CACHE_CONTROL = env.str("PIP_CACHE_CONTROL", default="private, max-age=0, must-revalidate")
PIP_BATCH_MAX = env.int("PIP_BATCH_MAX", default=100)
LEAN_ROUTES = [
    "api.resolver.lean.ROUTES",
    "api.users.lean.ROUTES",
    "iam_project.lean_routes.SCIM_ROUTES",
]  # api/lean.py

# --- audit ----------------------------------------------------------------------------------------
AUDIT_RETENTION_DAYS = env.int("AUDIT_RETENTION_DAYS", default=365)
TENANT_RETENTION_DAYS = env.int("TENANT_RETENTION_DAYS", default=30)
