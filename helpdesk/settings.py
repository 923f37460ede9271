"""Every setting of the helpdesk, read from the environment in this one place.

With no environment at all this is the *embedded default*: SQLite, the in-memory channel
layer and Celery tasks executed in-process, so `make run` needs no services. Setting
DATABASE_URL and REDIS_URL switches to production: PostgreSQL (psycopg 3, pooled), Redis as
Celery broker and as the channel layer, separate worker and beat processes. README.md lists
every variable.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from exc


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env("SECRET_KEY", "")
if not SECRET_KEY:
    if not env_bool("HELPDESK_EMBEDDED", not env("DATABASE_URL")):
        raise ImproperlyConfigured("SECRET_KEY must be set when DATABASE_URL is set (production).")
    # Embedded default only: a fixed key so sessions survive restarts of the demo.
    SECRET_KEY = "embedded-demo-key-not-for-production-" + "x" * 20

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")
SITE_URL = env("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

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
    "channels",
    "tickets",
    "channels_in",
    "bots",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# Benchmarks (and curious operators) can ask for the number of SQL queries per request.
if env_bool("HELPDESK_QUERY_COUNT_HEADER", False):
    MIDDLEWARE.insert(0, "helpdesk.middleware.QueryCountMiddleware")

ROOT_URLCONF = "helpdesk.urls"
WSGI_APPLICATION = "helpdesk.wsgi.application"
ASGI_APPLICATION = "helpdesk.asgi.application"

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
                "tickets.context_processors.helpdesk",
            ],
        },
    }
]

# --- Database ---------------------------------------------------------------------------
EMBEDDED = not env("DATABASE_URL")
if EMBEDDED:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env("SQLITE_PATH", str(BASE_DIR / "var" / "helpdesk.sqlite3")),
            # IMMEDIATE takes the write lock at BEGIN: SQLite ignores SELECT ... FOR UPDATE,
            # so this is what serializes take-next and every other read-then-write action.
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30},
        }
    }
else:
    DATABASES = {"default": dj_database_url.parse(env("DATABASE_URL"))}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        pool_max = env_int("DB_POOL_MAX", 8)
        if pool_max > 0:
            # Django's psycopg pool: persistent connections failed requests under ASGI
            # (PERF-NOTES), the pool did not.
            DATABASES["default"]["OPTIONS"] = {
                "pool": {"min_size": env_int("DB_POOL_MIN", 1), "max_size": pool_max, "timeout": 10}
            }
            DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# SQLite cannot enforce "unique, NULLs equal" (canned responses per team or for all teams); the
# embedded demo lives with that, PostgreSQL enforces it.
SILENCED_SYSTEM_CHECKS = ["models.W047"] if EMBEDDED else []

# --- Redis, Celery, Channels ------------------------------------------------------------
REDIS_URL = env("REDIS_URL", "")
CELERY_BROKER_URL = env("CELERY_BROKER_URL", REDIS_URL)
# Embedded default: run tasks in the calling process, right after the transaction commits.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not CELERY_BROKER_URL)
CELERY_TASK_EAGER_PROPAGATES = env_bool("CELERY_TASK_EAGER_PROPAGATES", False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = env_int("CELERY_WORKER_PREFETCH_MULTIPLIER", 4)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_QUEUE", "helpdesk")
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "close-resolved-tickets": {
        "task": "tickets.tasks.close_resolved_tickets",
        "schedule": timedelta(minutes=10),
    },
    "sweep-inbound-events": {
        "task": "channels_in.tasks.sweep_inbound_events",
        "schedule": timedelta(seconds=15),
    },
    "sweep-deliveries": {
        "task": "channels_in.tasks.sweep_deliveries",
        "schedule": timedelta(seconds=30),
    },
    "escalate-sla": {
        "task": "tickets.tasks.escalate_sla",
        "schedule": timedelta(minutes=1),
    },
    "age-waiting-tickets": {
        "task": "tickets.priority.age_waiting_tickets",
        "schedule": timedelta(seconds=60),
    },
    "sweep-attachments": {
        "task": "channels_in.tasks.sweep_attachments",
        "schedule": timedelta(seconds=60),
    },
    "sweep-presence": {
        "task": "tickets.presence.sweep_presence",
        "schedule": timedelta(seconds=30),
    },
    "route-waiting-tickets": {
        "task": "tickets.tasks.route_waiting_tickets",
        "schedule": timedelta(seconds=30),
    },
    "reroute-stale-tickets": {
        "task": "tickets.tasks.reroute_stale_tickets",
        "schedule": timedelta(minutes=1),
    },
    "reconcile-open-counts": {
        "task": "tickets.tasks.reconcile_open_counts",
        "schedule": timedelta(minutes=10),
    },
    "recompute-agent-stats": {
        "task": "tickets.tasks.recompute_agent_stats",
        "schedule": timedelta(minutes=15),
    },
    "poll-imap-channels": {
        "task": "channels_in.email.tasks.poll_imap_channels",
        "schedule": timedelta(seconds=60),
    },
}

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # The pub/sub layer: the default channels_redis layer drops group messages
            # silently on overflow (PERF-NOTES); clients re-sync by version anyway.
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": env("CHANNEL_LAYER_PREFIX", "helpdesk")},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env("CACHE_PREFIX", "helpdesk"),
        }
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# --- Auth, sessions ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
AUTHENTICATION_BACKENDS = ["tickets.auth.AgentBackend"]
# Sessions read from the cache (Redis in production), written through to the database.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "queue"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_AGE = 60 * 60 * 12
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not EMBEDDED and not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# --- i18n ---------------------------------------------------------------------------------
LANGUAGE_CODE = "en"
TIME_ZONE = env("TIME_ZONE", "Europe/Vilnius")
USE_I18N = True
USE_TZ = True

# --- Files ------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env("STATIC_ROOT", str(BASE_DIR / "var" / "static")))
WHITENOISE_USE_FINDERS = True  # no collectstatic needed for the embedded default
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env("MEDIA_ROOT", str(BASE_DIR / "var" / "media")))
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 30 * 1024 * 1024)

# --- REST API ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["tickets.api.permissions.IsStaffMember"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG or EMBEDDED else []),
    "EXCEPTION_HANDLER": "tickets.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Helpdesk API",
    "DESCRIPTION": (
        "Every inbound message on every channel is a ticket in one prioritized queue. "
        "Authenticate with `Authorization: Token <key>` (POST /api/v1/auth/token/) or a session."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # One name for the priority levels, wherever an endpoint takes or returns them.
    "ENUM_NAME_OVERRIDES": {"PriorityEnum": ["low", "normal", "high", "urgent"]},
    # Swagger UI from our own static files: agents' networks may not reach a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- The helpdesk ---------------------------------------------------------------------------
# Languages the product answers in; detection is restricted to these.
HELPDESK_LANGUAGES = env_list("HELPDESK_LANGUAGES", "en,pt,ru,zh,lt")
# Region used to read phone numbers written without a country code.
HELPDESK_DEFAULT_REGION = env("HELPDESK_DEFAULT_REGION", "LT")
# A resolved ticket reopens when the customer writes again within this window; after it a
# new ticket starts (and the periodic job closes the old one).
HELPDESK_REOPEN_WINDOW = timedelta(hours=env_int("HELPDESK_REOPEN_WINDOW_HOURS", 72))
HELPDESK_MAX_ATTACHMENT_BYTES = env_int("HELPDESK_MAX_ATTACHMENT_MB", 25) * 1024 * 1024
HELPDESK_MAX_ATTACHMENTS_PER_MESSAGE = env_int("HELPDESK_MAX_ATTACHMENTS_PER_MESSAGE", 10)
# How long a link to a file we sent (a platform's media download, a customer's click in an
# email or the web chat) opens it. Files are never public by path.
HELPDESK_ATTACHMENT_LINK_DAYS = env_int("HELPDESK_ATTACHMENT_LINK_DAYS", 30)
HELPDESK_MAX_MESSAGE_CHARS = env_int("HELPDESK_MAX_MESSAGE_CHARS", 20000)
# Live pages and presence: an agent whose sockets have been gone this long is offline; the
# browser pings every HEARTBEAT seconds (written at most every HEARTBEAT_WRITE); idle for
# IDLE seconds is "away"; viewing/typing marks expire; ticket events are coalesced per socket.
HELPDESK_PRESENCE_GRACE_SECONDS = env_int("PRESENCE_GRACE_SECONDS", 120)
HELPDESK_HEARTBEAT_SECONDS = env_int("HEARTBEAT_SECONDS", 25)
HELPDESK_HEARTBEAT_WRITE_SECONDS = env_int("HEARTBEAT_WRITE_SECONDS", 30)
HELPDESK_IDLE_SECONDS = env_int("IDLE_SECONDS", 600)
HELPDESK_VIEWING_TTL_SECONDS = env_int("VIEWING_TTL_SECONDS", 60)
HELPDESK_TYPING_TTL_SECONDS = env_int("TYPING_TTL_SECONDS", 6)
# At most one frame per socket per window (20/s at 50 ms: a storm does not flood a browser);
# the window is added to most deliveries at storm rates, so it is also the latency floor
# (bench/live.py: 100 ms windows put the 100-agent p99 at 150 ms, 50 ms at ~75 ms).
HELPDESK_LIVE_COALESCE_MS = env_int("LIVE_COALESCE_MS", 50)
# ...widened in proportion above this many deliveries (events x sockets) a second in one ASGI
# process, up to LIVE_COALESCE_MAX_MS: fewer, fuller frames when frames are what costs.
HELPDESK_LIVE_BUSY_DELIVERIES = env_int("LIVE_BUSY_DELIVERIES", 5000)
HELPDESK_LIVE_COALESCE_MAX_MS = env_int("LIVE_COALESCE_MAX_MS", 100)
# Scoring: how often a process looks for a newer scoring dictionary (one cache read).
HELPDESK_SCORING_CHECK_SECONDS = env_int("HELPDESK_SCORING_CHECK_SECONDS", 5)
# Language detection: lingua's low-accuracy mode takes ~45 MB instead of ~450 MB per process.
HELPDESK_LANGUAGE_LOW_ACCURACY = env_bool("HELPDESK_LANGUAGE_LOW_ACCURACY", False)
# A conversation changes language only on a confident message at least this many letters long.
HELPDESK_LANGUAGE_SWITCH_LETTERS = env_int("HELPDESK_LANGUAGE_SWITCH_LETTERS", 20)
# Routing: an assigned ticket whose agent has not answered within this many minutes (or who
# went offline) goes back through routing; ranking weights; CSAT smoothing.
HELPDESK_REROUTE_AFTER_MINUTES = env_int("REROUTE_AFTER_MINUTES", 10)
HELPDESK_ROUTING_RULES_TTL = env_int("ROUTING_RULES_TTL", 5)
HELPDESK_ROUTING_WEIGHTS = {"capacity": 0.5, "speed": 0.25, "csat": 0.25}
HELPDESK_ROUTING_FRT_CAP_SECONDS = 1800
HELPDESK_NEGATIVE_SENTIMENT = 1
HELPDESK_FRT_WINDOW_DAYS = 7
HELPDESK_CSAT_WINDOW_DAYS = 90
HELPDESK_CSAT_PRIOR_WEIGHT = 5
# Default service targets (first response, resolution) per priority level, in minutes.
# Policies per team and channel with business hours refine these.
HELPDESK_SLA_MINUTES = {
    "urgent": (env_int("SLA_URGENT_FIRST_MIN", 15), env_int("SLA_URGENT_RESOLVE_MIN", 4 * 60)),
    "high": (env_int("SLA_HIGH_FIRST_MIN", 60), env_int("SLA_HIGH_RESOLVE_MIN", 8 * 60)),
    "normal": (env_int("SLA_NORMAL_FIRST_MIN", 4 * 60), env_int("SLA_NORMAL_RESOLVE_MIN", 24 * 60)),
    "low": (env_int("SLA_LOW_FIRST_MIN", 24 * 60), env_int("SLA_LOW_RESOLVE_MIN", 72 * 60)),
}
# Webhook bodies over these sizes are refused with 413 before they are read.
HELPDESK_WEBHOOK_MAX_BYTES = env_int("HELPDESK_WEBHOOK_MAX_KB", 1024) * 1024
HELPDESK_EMAIL_MAX_BYTES = env_int("HELPDESK_EMAIL_MAX_MB", 40) * 1024 * 1024
# Platform API base URLs (outbound sends, media downloads). Tests point these at a local fake.
HELPDESK_PLATFORM_URLS = {
    "telegram": env("TELEGRAM_API_BASE", "https://api.telegram.org"),
    "whatsapp": env("META_GRAPH_API_BASE", "https://graph.facebook.com/v21.0"),
    "messenger": env("META_GRAPH_API_BASE", "https://graph.facebook.com/v21.0"),
    "instagram": env("META_GRAPH_API_BASE", "https://graph.facebook.com/v21.0"),
    "x": env("X_API_BASE", "https://api.x.com"),
    "viber": env("VIBER_API_BASE", "https://chatapi.viber.com/pa"),
    "vk": env("VK_API_BASE", "https://api.vk.com/method"),
    "sms": env("TWILIO_API_BASE", "https://api.twilio.com/2010-04-01"),
}
HELPDESK_PLATFORM_TIMEOUT = float(env("HELPDESK_PLATFORM_TIMEOUT", "10"))
# The longest one media download (a customer's photo or voice note) may take.
HELPDESK_MEDIA_FETCH_SECONDS = float(env("HELPDESK_MEDIA_FETCH_SECONDS", "120"))
# SLA: the escalation applied when a policy says nothing; whether pending pauses the clock;
# how often processes look for changed policies and calendars; candidates per run.
HELPDESK_SLA_ESCALATION = {
    "at_risk_minutes": env_int("SLA_AT_RISK_MINUTES", 15),
    "on_at_risk": ["notify_supervisor"],
    "on_breach": ["notify_supervisor"],
}
HELPDESK_SLA_PAUSE_PENDING = env_bool("SLA_PAUSE_PENDING", True)
HELPDESK_SLA_CACHE_SECONDS = env_int("SLA_CACHE_SECONDS", 5)
HELPDESK_SLA_ESCALATION_BATCH = env_int("SLA_ESCALATION_BATCH", 1000)
HELPDESK_SLA_BUSINESS_HOURS_ONLY = env_bool("SLA_BUSINESS_HOURS_ONLY", False)
# Called (by dotted path) after commit with the id of each new outbound Delivery; the edge
# (channels_in) sends it. tickets never imports an adapter.
HELPDESK_DELIVERY_DISPATCHER = env(
    "HELPDESK_DELIVERY_DISPATCHER", "channels_in.outbound.dispatch_delivery"
)
# Asked (by dotted path) before a reply is written: why it cannot be sent now, or None.
HELPDESK_REPLY_CHECK = env("HELPDESK_REPLY_CHECK", "channels_in.outbound.check_reply")

# --- Outgoing email (replies on email channels) --------------------------------------------
# Embedded default: printed to the console. Production: SMTP (EMAIL_HOST and friends).
EMAIL_BACKEND = env(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if env("EMAIL_HOST")
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", EMAIL_PORT == 587)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", EMAIL_PORT == 465)
# Django's default is no timeout: a hung SMTP server would hold a worker forever.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30)
HELPDESK_EMAIL_MSGID_DOMAIN = env("HELPDESK_EMAIL_MSGID_DOMAIN", "")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "httpx": {"level": "WARNING"},
        # One line per task is a worker's log; in the embedded process it drowns the console.
        "celery.app.trace": {"level": "WARNING" if EMBEDDED else "INFO"},
    },
}
