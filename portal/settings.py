"""Django settings for Sluice, read from the environment.

Every value has a safe local default for development so that `./sluice run` works on a fresh machine.
`SLUICE_ENV=production` turns on the settings that `manage.py check --deploy` expects, requires a real
SECRET_KEY and refuses documentation prefixes.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

BASE_DIR = Path(__file__).resolve().parent.parent
SLUICE_ENV = os.environ.get("SLUICE_ENV", "development")
PRODUCTION = SLUICE_ENV == "production"


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def database_from_url(url: str) -> dict[str, object]:
    """Turn postgres://user:pass@host:port/name (or ?host=/socket/dir) into a Django DATABASES entry."""
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql"}:
        raise ValueError(f"DATABASE_URL must be a postgres:// URL, not {parsed.scheme}://")
    options = dict(part.split("=", 1) for part in parsed.query.split("&") if "=" in part)
    return {
        "ENGINE": "django_tenants.postgresql_backend",
        "NAME": unquote(parsed.path.lstrip("/")) or "sluice",
        "USER": unquote(parsed.username or "postgres"),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": unquote(options.get("host", parsed.hostname or "127.0.0.1")),
        "PORT": str(parsed.port or options.get("port", "5432")),
        # Each process borrows from its own bounded pool (psycopg_pool) and gives the connection back at the end of
        # every request or task, so daphne's many threads never hold more than SLUICE_DB_POOL_MAX between them and
        # the processes of `./sluice run` together stay well under PostgreSQL's max_connections. Django has the pool
        # check a connection before lending it, so one that died with a PostgreSQL restart is replaced.
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": True,  # with a pool: each connection is checked as it is lent
        "OPTIONS": {"pool": {
            "min_size": 1,
            "max_size": int(os.environ.get("SLUICE_DB_POOL_MAX", "8")),
            "timeout": float(os.environ.get("SLUICE_DB_POOL_TIMEOUT_S", "5")),
            # A connection attempt that failed (PostgreSQL restarting) is retried with backoff (1, 2, 4 s ...) for
            # this long, then given up, so the next request starts a fresh attempt at once: a pool that tried while
            # the server was down waited up to 4 s more after it was back (bench/chaos.py, postgres_restart).
            "reconnect_timeout": float(os.environ.get("SLUICE_DB_RECONNECT_SECONDS", "2")),
        }} if os.environ.get("SLUICE_DB_POOL", "1") == "1" else {},
        "TEST": {"NAME": os.environ.get("DATABASE_TEST_NAME", "test_sluice")},
    }


_DEV_SECRET = "sluice-development-only-secret-key-never-use-in-production-0123456789"
SECRET_KEY = os.environ.get("SECRET_KEY", "" if PRODUCTION else _DEV_SECRET)
if PRODUCTION and (not SECRET_KEY or SECRET_KEY == _DEV_SECRET):
    raise RuntimeError("SECRET_KEY must be set in production")
DEBUG = env_bool("DEBUG", not PRODUCTION)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", ".localhost", "127.0.0.1", "testserver"])

# The public domain serves the provider's operators; every other domain is a tenant's.
SLUICE_PUBLIC_DOMAIN = os.environ.get("SLUICE_PUBLIC_DOMAIN", "localhost")
# Documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) are bogons, yet the demo,
# the tests and development use them. Production never accepts them.
SLUICE_ALLOW_DOCUMENTATION_PREFIXES = (not PRODUCTION) and env_bool("SLUICE_ALLOW_DOCUMENTATION_PREFIXES", True)
# Whether `--allow-bogons` may be used at all (private space for a lab); never in production.
SLUICE_ALLOW_BOGON_FLAG = not PRODUCTION
# Key for credentials encrypted at rest (Fernet, urlsafe base64 of 32 bytes); derived from SECRET_KEY when unset.
# Keys for credentials at rest, comma-separated: the first encrypts, every one decrypts (MultiFernet), so a key is
# rotated without downtime: put the new key first, run `manage.py rotate_credentials_key`, then drop the old one.
SLUICE_CREDENTIALS_KEY = os.environ.get("SLUICE_CREDENTIALS_KEY", "")
# Reverse proxies whose X-Forwarded-For is believed (networks, comma-separated); empty: the peer is the client.
SLUICE_TRUSTED_PROXIES = env_list("SLUICE_TRUSTED_PROXIES", [])
if PRODUCTION and not SLUICE_CREDENTIALS_KEY.strip():
    raise RuntimeError("SLUICE_CREDENTIALS_KEY must be set in production (credentials must not hang on SECRET_KEY)")
SLUICE_DATA_DIR = Path(os.environ.get("SLUICE_DATA_DIR", BASE_DIR / "var"))
# An attack whose detector falls silent without an end signal is treated as ended after this long.
SLUICE_SIGNAL_EXPIRY_MINUTES = int(os.environ.get("SLUICE_SIGNAL_EXPIRY_MINUTES", "30"))
# Detection (the flow collector): a prefix-wide (carpet-bombing) threshold is the host threshold times the square
# root of the prefix's size, at most this; a prefix also alarms at this factor of its learned baseline (0: off),
# once each hour of week (or, until then, all hours together) has learned this many seconds.
SLUICE_CARPET_MULTIPLIER_MAX = float(os.environ.get("SLUICE_CARPET_MULTIPLIER_MAX", "64"))
SLUICE_BASELINE_FACTOR = float(os.environ.get("SLUICE_BASELINE_FACTOR", "4"))
SLUICE_BASELINE_WARMUP_SECONDS = int(os.environ.get("SLUICE_BASELINE_WARMUP_SECONDS", "900"))
# The bounds within which customers may set their per-prefix detection thresholds, unless the provider sets a
# tenant's own (Tenant.threshold_min_bps and the like). Prefix-wide thresholds may go up to the maximum times the
# prefix's carpet multiplier.
SLUICE_THRESHOLD_MIN_BPS = int(os.environ.get("SLUICE_THRESHOLD_MIN_BPS", "10000000"))
SLUICE_THRESHOLD_MAX_BPS = int(os.environ.get("SLUICE_THRESHOLD_MAX_BPS", "100000000000"))
SLUICE_THRESHOLD_MIN_PPS = int(os.environ.get("SLUICE_THRESHOLD_MIN_PPS", "1000"))
SLUICE_THRESHOLD_MAX_PPS = int(os.environ.get("SLUICE_THRESHOLD_MAX_PPS", "50000000"))
# Web and worker processes check their idle pooled database connections this often (core.dbpool); 0 turns it off.
SLUICE_DB_POOL_CHECK_SECONDS = float(os.environ.get("SLUICE_DB_POOL_CHECK_SECONDS", "2"))
SLUICE_RECONCILE_SECONDS = float(os.environ.get("SLUICE_RECONCILE_SECONDS", "5"))
# A signal plans only its own attack (and those sharing its diversion prefix) around the others; the reconcile loop
# plans every live attack together this often, which takes in drifting center loads. A change of the network's
# health or capacities makes the next planning run a full one at once.
SLUICE_FULL_PLAN_SECONDS = float(os.environ.get("SLUICE_FULL_PLAN_SECONDS", "60"))
# A network element that failed its push is retried after RETRY_BASE * 2^(failures-1) seconds, at most RETRY_MAX.
# The longest one convergence waits for a router's push; a router slower than that (hung mid-RPC) is marked timed
# out and retried with backoff, and the other elements are not held up.
SLUICE_PUSH_TIMEOUT_S = float(os.environ.get("SLUICE_PUSH_TIMEOUT_S", "45"))
SLUICE_RETRY_BASE_SECONDS = float(os.environ.get("SLUICE_RETRY_BASE_SECONDS", "5"))
SLUICE_RETRY_MAX_SECONDS = float(os.environ.get("SLUICE_RETRY_MAX_SECONDS", "300"))
# Each tenant's cap on live actions per kind, checked when the desired state is built (mitigation.services.gate).
# Signal records and decisions of finished mitigations older than this are pruned daily.
SLUICE_RETENTION_DAYS = float(os.environ.get("SLUICE_RETENTION_DAYS", "180"))
# Live mitigations one tenant may have at once; attacks past it are recorded and shown, and mitigated once under.
# The closed loop (mitigation/services/verdicts.py): FlowSpec counters are read this often, a mitigation is judged
# once it has been in place this long, escalated when non-effective verdicts held this long, and not withdrawn while
# what it drops is this share of the target's detection threshold. A returning attack remembers an escalation
# that proved effective this long.
SLUICE_COUNTER_POLL_SECONDS = float(os.environ.get("SLUICE_COUNTER_POLL_SECONDS", "2"))
SLUICE_VERDICT_SETTLE_SECONDS = float(os.environ.get("SLUICE_VERDICT_SETTLE_SECONDS", "10"))
SLUICE_ESCALATE_CONFIRM_SECONDS = float(os.environ.get("SLUICE_ESCALATE_CONFIRM_SECONDS", "4"))
SLUICE_HOLDING_SHARE = float(os.environ.get("SLUICE_HOLDING_SHARE", "0.5"))
SLUICE_CENTER_REPORT_FRESH_SECONDS = float(os.environ.get("SLUICE_CENTER_REPORT_FRESH_SECONDS", "30"))
SLUICE_EFFECTIVE_MEMORY_HOURS = float(os.environ.get("SLUICE_EFFECTIVE_MEMORY_HOURS", "24"))
SLUICE_COUNTER_RETENTION_DAYS = float(os.environ.get("SLUICE_COUNTER_RETENTION_DAYS", "7"))
SLUICE_TENANT_MAX_ATTACKS = int(os.environ.get("SLUICE_TENANT_MAX_ATTACKS", "500"))
SLUICE_TENANT_QUOTAS = {"flowspec": 200, "diversion": 50, "rtbh": 50}
# Outbound requests on a tenant's behalf (webhooks, Slack; tenants/outbound.py). The deny list adds the provider's
# own networks (management, routers, collectors) to the address classes always refused. The allow list exempts
# networks from those classes (never from metadata or the deny list): always empty in production; a lab can set it.
SLUICE_WEBHOOK_DENY_NETWORKS = env_list("SLUICE_WEBHOOK_DENY_NETWORKS", [])
SLUICE_WEBHOOK_ALLOW_NETWORKS: list[str] = [] if PRODUCTION else env_list("SLUICE_WEBHOOK_ALLOW_NETWORKS", [])
SLUICE_WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("SLUICE_WEBHOOK_TIMEOUT_SECONDS", "3"))
SLUICE_NOTIFICATION_CHANNELS_PER_TENANT = int(os.environ.get("SLUICE_NOTIFICATION_CHANNELS_PER_TENANT", "10"))

SHARED_APPS = [
    "django_tenants",
    "tenants.apps.TenantsConfig",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "core.apps.CoreConfig",
    "core.accounts.apps.AccountsConfig",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_filters",
    "netfields",
    "channels",
    "portal.apps.PortalConfig",
    "devices.apps.DevicesConfig",
    "mitigation.apps.MitigationConfig",
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "core.accounts.apps.AccountsConfig",
    "django.contrib.sessions",
    "tenants.customer.apps.CustomerConfig",
]
INSTALLED_APPS = list(SHARED_APPS) + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "tenants.Tenant"
TENANT_LIMIT_SET_CALLS = True  # one SET search_path per connection and tenant, not one per statement
TENANT_DOMAIN_MODEL = "tenants.Domain"
PUBLIC_SCHEMA_URLCONF = "portal.urls_public"
ROOT_URLCONF = "portal.urls_tenant"
DATABASE_ROUTERS = ("django_tenants.routers.TenantSyncRouter",)

MIDDLEWARE = [
    "django_tenants.middleware.main.TenantMainMiddleware",
    "portal.accounts.middleware.SuspendedTenantMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "portal.accounts.middleware.TwoFactorMiddleware",
    "portal.accounts.middleware.IdleSessionMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

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
            ],
        },
    },
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "portal.asgi.application"

DATABASES = {
    "default": database_from_url(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/sluice")),
}
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# Where the flow collectors' per-second aggregates live in that Redis (collector/store.py): the collector writes there
# (run_collector's --namespace defaults to it), the traffic graphs and the closed loop read there.
SLUICE_FLOW_NAMESPACE = os.environ.get("SLUICE_FLOW_NAMESPACE", "sluice:flow")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    # Counters every web process must share (API rate limits), with short socket timeouts.
    "throttle": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "sluice-throttle",
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    },
}
# Signals one API token (or user) may post, as DRF writes a rate ("600/min"); past it the API answers 429.
SLUICE_SIGNAL_RATE = os.environ.get("SLUICE_SIGNAL_RATE", "600/min")

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# A session lives at most SESSION_MAX_SECONDS, and ends sooner after SESSION_IDLE_SECONDS without a person's
# action (see core.accounts.sessions: pages refreshing themselves do not count).
SESSION_COOKIE_AGE = int(os.environ.get("SESSION_MAX_SECONDS", str(12 * 3600)))
SLUICE_SESSION_IDLE_SECONDS = int(os.environ.get("SESSION_IDLE_SECONDS", str(30 * 60)))
# How often an open websocket checks that its session still stands (signed out elsewhere, or idle too long).
SLUICE_SESSION_CHECK_SECONDS = float(os.environ.get("SLUICE_SESSION_CHECK_SECONDS", "30"))
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "portal.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Sluice API",
    "DESCRIPTION": "DDoS-mitigation route engineering: signals, attacks, mitigations, inventory.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 reads with a 5 s socket timeout, as long as channels-redis blocks in BZPOPMIN.
            # Each consumer's group_add and send takes a pooled connection: a burst of reconnecting browsers needs many.
            "hosts": [{"address": REDIS_URL, "socket_timeout": 30, "socket_connect_timeout": 5, "max_connections": 5000}],
            "capacity": 1000,
            "expiry": 30,
            "prefix": "sluice:ch:",
        },
    },
}

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", REDIS_URL)
# Jobs are acknowledged as they start. Every job here brings the network to a desired state read from PostgreSQL
# and the beat's reconcile loop runs them again within SLUICE_RECONCILE_SECONDS, so a job lost with its worker
# costs nothing; acknowledging late instead left a worker that finished a job while Redis restarted unable to ack
# it and stuck for good (kombu 5.7), found by bench/chaos.py.
CELERY_TASK_ACKS_LATE = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "engine"
# Jobs that wait on network elements (convergence holds element locks through a router's commit cycle) run on
# their own queue and worker pool, so that planning is never stuck behind them during a burst of attacks.
CELERY_TASK_ROUTES = {
    "mitigation.tasks.converge_network_task": {"queue": "devices"},
    "mitigation.tasks.reconcile_task": {"queue": "devices"},
    "devices.tasks.*": {"queue": "devices"},
    "mitigation.tasks.*": {"queue": "engine"},
    "tenants.tasks.*": {"queue": "telemetry"},
    "devices.telemetry.*": {"queue": "telemetry"},
}
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULE = {
    "mitigation.prune_history": {"task": "mitigation.tasks.prune_history_task", "schedule": 24 * 3600.0},
    "mitigation.closed_loop": {
        "task": "mitigation.tasks.closed_loop_task",
        "schedule": SLUICE_COUNTER_POLL_SECONDS,
        "options": {"queue": "telemetry", "expires": SLUICE_COUNTER_POLL_SECONDS * 2},
    },
    "mitigation.reconcile": {
        "task": "mitigation.tasks.reconcile_task",
        "schedule": SLUICE_RECONCILE_SECONDS,
        "options": {"expires": SLUICE_RECONCILE_SECONDS * 2},
    },
}

from devices.beat import BEAT_SCHEDULE as _DEVICES_BEAT  # noqa: E402

CELERY_BEAT_SCHEDULE.update(_DEVICES_BEAT)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
