"""Switchboard settings.

Two shapes, chosen by the environment (12-factor):

* Embedded default (no environment set): SQLite file, in-memory channel layer,
  DEBUG on, the built-in simulator as the default upstream, and a dev
  SECRET_KEY / encryption key generated once and kept in ``var/dev-secrets.json``.
* Production: ``DATABASE_URL`` (PostgreSQL), ``REDIS_URL`` (channels-redis),
  ``SECRET_KEY``, ``SWITCHBOARD_ENCRYPTION_KEY``, ``ALLOWED_HOSTS``,
  ``CSRF_TRUSTED_ORIGINS`` and ``DEBUG=false``.

Every variable is documented in README.md ("Configuration reference").
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from pathlib import Path

import environ
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("SWITCHBOARD_VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()

DEBUG = env.bool("DEBUG", default=not env.str("SECRET_KEY", default=""))


def _dev_secrets() -> dict[str, str]:
    """Secrets for the embedded default: generated once, then reused across restarts."""
    path = VAR_DIR / "dev-secrets.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        values = {
            "SECRET_KEY": secrets.token_urlsafe(50),
            "SWITCHBOARD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        }
        path.write_text(json.dumps(values))
        path.chmod(0o600)
        return values


def _secret(name: str) -> str:
    value = env.str(name, default="")
    if value:
        return value
    if not DEBUG:
        raise ImproperlyConfigured(f"{name} must be set when DEBUG is off.")
    return _dev_secrets()[name]


SECRET_KEY = _secret("SECRET_KEY")
# Comma-separated; several keys allow rotation (first encrypts, all decrypt).
SWITCHBOARD_ENCRYPTION_KEYS = [k.strip() for k in _secret("SWITCHBOARD_ENCRYPTION_KEY").split(",") if k.strip()]

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "axes",
    "channels",
    "csp",
    "sessions_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "sessions_app.content_policy.SocketConnectSrcMiddleware",  # after CSPMiddleware: adds the ws origin
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "sessions_app.outage.DatabaseOutageMiddleware",  # before LoginRequired: a failed user lookup is a 503
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a lockout into the locked-out page
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"
WSGI_APPLICATION = None

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
                "sessions_app.context_processors.switchboard",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'switchboard.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The relay's writer and the pages share one file: wait for locks instead of failing.
    # WAL: readers never block the writer (nor it them), and a commit appends to the log instead of
    # rewriting pages; synchronous=NORMAL then syncs at checkpoints rather than on every commit, which
    # is safe with WAL (a power loss can drop the last commits, never corrupt the file).
    DATABASES["default"].setdefault("OPTIONS", {}).update({
        "timeout": 20, "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
    })
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-switchboard.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
# Persistent connections on both: a new SQLite connection costs more than the query it serves (Django
# registers its SQL functions and runs init_command on each), and every page and every socket's
# lookups (token, conversation) would pay it, one at a time on the thread-sensitive database thread.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # socket_timeout=None: redis-py 8 defaults it to 5 s, which kills the layer's
            # blocking reads (and with them every idle socket) after 5 s.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": None}], "capacity": 1500, "expiry": 30},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Cache ----------------------------------------------------------------------
# Short-lived shared counters (sessions_app/throttle.py: failed token authentications). With REDIS_URL
# every Daphne process counts into the same Redis (keys prefixed, apart from the channel layer's);
# without it each process counts alone, in memory, which fits the single-process embedded default.
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                          "KEY_PREFIX": "switchboard"}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "switchboard"}}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# --- Login throttling (django-axes) -----------------------------------------------
# Failed sign-ins (sign-in page and admin) are counted per (username, client address) and per address:
# SWITCHBOARD_LOGIN_FAILURE_LIMIT failures lock the pair, SWITCHBOARD_LOGIN_ADDRESS_FAILURE_LIMIT lock the
# address, for SWITCHBOARD_LOGIN_COOLOFF_MINUTES; a success clears only its own pair
# (sessions_app/login_throttle.py). Locked out: templates/registration/lockout.html, status 429.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("SWITCHBOARD_LOGIN_FAILURE_LIMIT", default=5)
SWITCHBOARD_LOGIN_ADDRESS_FAILURE_LIMIT = env.int("SWITCHBOARD_LOGIN_ADDRESS_FAILURE_LIMIT", default=20)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("SWITCHBOARD_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]  # login_throttle.py relies on this order
AXES_HANDLER = "sessions_app.login_throttle.PairAndAddressHandler"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/lockout.html"
AXES_HTTP_RESPONSE_CODE = 429
# The client address for axes and the token throttle (sessions_app/client_address.py): the peer, or,
# behind this many reverse proxies that append to X-Forwarded-For, the address the first of them saw.
# 0 (default): no proxy, X-Forwarded-For is ignored. Behind one nginx: 1.
SWITCHBOARD_TRUSTED_PROXIES = env.int("SWITCHBOARD_TRUSTED_PROXIES", default=0)
AXES_CLIENT_IP_CALLABLE = "sessions_app.client_address.request_client_address"

# --- Token throttling -----------------------------------------------------------
# Failed personal-token authentications (gateway handshake, HTTP API) per client address and per token
# prefix, in fixed windows; at the limit the client is refused before any lookup (sessions_app/throttle.py).
SWITCHBOARD_THROTTLE_WINDOW_SECONDS = env.int("SWITCHBOARD_THROTTLE_WINDOW_SECONDS", default=300)
SWITCHBOARD_THROTTLE_ADDRESS_FAILURES = env.int("SWITCHBOARD_THROTTLE_ADDRESS_FAILURES", default=20)
SWITCHBOARD_THROTTLE_PREFIX_FAILURES = env.int("SWITCHBOARD_THROTTLE_PREFIX_FAILURES", default=10)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every request otherwise
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Content-Security-Policy ----------------------------------------------------
# django-csp writes the header on every response (pages, admin, static). No inline script, style
# or event handler anywhere: everything is a static file, so no 'unsafe-inline' / 'unsafe-eval'.
# connect-src also gets the page's own ws:/wss: origin per request (sessions_app/content_policy.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# Security: sensible in both shapes, strict when DEBUG is off.
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the chat page reads it for fetch() calls
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
    if not SECURE_HSTS_PRELOAD:
        # Accepted: joining the browsers' preload list is a one-way, domain-wide
        # decision for the operator, not a default an app should take (README).
        SILENCED_SYSTEM_CHECKS = ["security.W021"]

DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# One JSON object per line (json, the default without DEBUG) or plain text (text, the default with it);
# no key, token or message text in either (sessions_app/logs.py) unless SWITCHBOARD_LOG_MESSAGE_TEXT
# lets the DEBUG lines that carry it through, for debugging.
SWITCHBOARD_LOG_FORMAT = env.str("SWITCHBOARD_LOG_FORMAT", default="text" if DEBUG else "json")
if SWITCHBOARD_LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured("SWITCHBOARD_LOG_FORMAT must be json or text.")
SWITCHBOARD_LOG_MESSAGE_TEXT = env.bool("SWITCHBOARD_LOG_MESSAGE_TEXT", default=False)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "sessions_app.logs.JsonFormatter"}, "text": {"()": "sessions_app.logs.TextFormatter"}},
    "filters": {"redact": {"()": "sessions_app.redaction.RedactSecretsFilter"},
                "message_text": {"()": "sessions_app.logs.MessageTextFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["redact", "message_text"],
                             "formatter": SWITCHBOARD_LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}

# --- Switchboard --------------------------------------------------------------
# The default upstream profile is created/updated from these by `manage.py bootstrap`.
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
SIMULATOR_HOST = env.str("SIMULATOR_HOST", default="127.0.0.1")
SIMULATOR_PORT = env.int("SIMULATOR_PORT", default=8765)
SIMULATOR_URL = f"ws://{SIMULATOR_HOST}:{SIMULATOR_PORT}/v1/responses"
OPENAI_WEBSOCKET_URL = env.str(
    "OPENAI_WEBSOCKET_URL",
    default="wss://api.openai.com/v1/responses" if OPENAI_API_KEY else SIMULATOR_URL,
)
SWITCHBOARD_DEFAULT_MODEL = env.str("SWITCHBOARD_DEFAULT_MODEL", default="gpt-5.5")
SWITCHBOARD_SIGNUP_ENABLED = env.bool("SWITCHBOARD_SIGNUP_ENABLED", default=False)
SWITCHBOARD_DEMO_USERNAME = "demo"
SWITCHBOARD_DEMO_PASSWORD = "switchboard-demo"
# Largest client frame the relay accepts (bytes).
SWITCHBOARD_MAX_FRAME_BYTES = env.int("SWITCHBOARD_MAX_FRAME_BYTES", default=1024 * 1024)
# On SIGTERM, how long in-flight responses may run before they are marked interrupted.
SWITCHBOARD_DRAIN_SECONDS = env.float("SWITCHBOARD_DRAIN_SECONDS", default=20.0)
# How long a conversation's upstream socket stays open after its last browser left (and nothing is in
# flight), so a reload finds the connection-local cache still warm; then it closes with reason `idle`.
SWITCHBOARD_UPSTREAM_IDLE_SECONDS = env.float("SWITCHBOARD_UPSTREAM_IDLE_SECONDS", default=60.0)
# Upstream sockets (relay/link.py): how long a handshake may take; how long an upstream socket may stay
# silent while a request is open on it before it is closed and its open requests fail with
# `upstream_timeout` (0: never; long reasoning can be silent for minutes, so keep it generous); the
# largest upstream frame accepted (over it: the socket is closed, `upstream_frame_too_large`; 0: no cap).
SWITCHBOARD_UPSTREAM_OPEN_TIMEOUT_SECONDS = env.float("SWITCHBOARD_UPSTREAM_OPEN_TIMEOUT_SECONDS", default=10.0)
SWITCHBOARD_UPSTREAM_STALL_SECONDS = env.float("SWITCHBOARD_UPSTREAM_STALL_SECONDS", default=600.0)
SWITCHBOARD_MAX_UPSTREAM_FRAME_BYTES = env.int("SWITCHBOARD_MAX_UPSTREAM_FRAME_BYTES", default=64 * 1024 * 1024)
# A gateway socket opens its upstream socket as soon as it is admitted, so its first turn does not wait
# for the handshake (relay/warm.py); one its client leaves unused is closed after this long (0: off).
SWITCHBOARD_UPSTREAM_WARM_SECONDS = env.float("SWITCHBOARD_UPSTREAM_WARM_SECONDS", default=30.0)
# A process holding upstream sockets marks them alive this often (0: off); a socket whose holder has
# not beaten for 3 intervals is dead, and its in-flight responses are ended `interrupted` (liveness.py).
SWITCHBOARD_HEARTBEAT_SECONDS = env.float("SWITCHBOARD_HEARTBEAT_SECONDS", default=2.0)
# PostgreSQL: the relay's per-turn input statement is a server-side prepared statement on its own
# connections (recording/pg.py), which halves its cost; so are the handshake's token and profile reads
# (models/rows.py). Turn off behind a transaction-mode pooler
# that cannot carry prepared statements (PgBouncer before 1.21).
SWITCHBOARD_PG_PREPARE = env.bool("SWITCHBOARD_PG_PREPARE", default=True)
# The recorder (recording/writer.py, docs/recording.md): how many ops one process's queue holds while the
# database is slow or unavailable (past it new records are dropped, loudly), and how long a stopping process
# waits for the database to take what the queue still holds before it logs those records as lost.
SWITCHBOARD_RECORDER_MAX_PENDING = env.int("SWITCHBOARD_RECORDER_MAX_PENDING", default=1000)
SWITCHBOARD_RECORDER_SHUTDOWN_SECONDS = env.float("SWITCHBOARD_RECORDER_SHUTDOWN_SECONDS", default=5.0)
# Per-user limits (limits.py); a user's `UserLimits` row in the admin overrides each. 0: no limit.
SWITCHBOARD_LIMIT_SOCKETS = env.int("SWITCHBOARD_LIMIT_SOCKETS", default=32)
SWITCHBOARD_LIMIT_UPSTREAM_SOCKETS = env.int("SWITCHBOARD_LIMIT_UPSTREAM_SOCKETS", default=16)
SWITCHBOARD_LIMIT_RESPONSES_PER_HOUR = env.int("SWITCHBOARD_LIMIT_RESPONSES_PER_HOUR", default=1200)
SWITCHBOARD_LIMIT_TOKENS_PER_DAY = env.int("SWITCHBOARD_LIMIT_TOKENS_PER_DAY", default=5_000_000)
# How often each process re-checks the credentials of its open sockets (revocation.py): a logout,
# password change, deactivation, token revocation or lost staff flag closes them within this time.
SWITCHBOARD_REVOCATION_SECONDS = env.float("SWITCHBOARD_REVOCATION_SECONDS", default=2.0)
# /metrics (sessions_app/metrics.py): its time-to-first-text histogram covers responses sent this recently.
SWITCHBOARD_METRICS_TTFT_WINDOW_SECONDS = env.int("SWITCHBOARD_METRICS_TTFT_WINDOW_SECONDS", default=3600)
