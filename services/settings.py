"""The one Settings object: every knob is an environment variable with the ROUNDTABLE_ prefix."""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from functools import lru_cache
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET_KEY = "change-me-dev-secret-key-not-for-production"  # noqa: S105 - the refused default
MIN_SECRET_LENGTH = 32
MIN_SECRET_DISTINCT = 10
"""A secret of fewer distinct characters (32 times "a", "abab…") is a placeholder, not a random value."""
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
"""Hosts a production public URL may name over plain http: only this machine can reach them (the
benchmarks run production settings on loopback)."""
MIB = 1024 * 1024


class NotProductionReady(RuntimeError):
    """Production settings that must not serve: the message is the one line the command prints."""


class Environment(StrEnum):
    production = "production"
    development = "development"
    test = "test"


class SmtpTls(StrEnum):
    none = "none"
    starttls = "starttls"
    tls = "tls"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ROUNDTABLE_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="sqlite:///.roundtable/roundtable.db",
        description="SQLAlchemy URL; sqlite:///path (embedded) or postgresql://user@host/db (production).",
    )
    db_connect_timeout_seconds: float = Field(
        default=5.0, gt=0, le=300, description="Connecting to the database gives up after this (PostgreSQL)."
    )
    db_statement_timeout_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="A statement running longer is cancelled (PostgreSQL)."
    )
    db_lock_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=600,
        description="A write waiting longer for a lock (a row, or SQLite's write lock) gives up: 503.",
    )
    db_pool_timeout_seconds: float = Field(
        default=30.0, gt=0, le=600, description="A request waiting longer for a pooled connection gets 503."
    )
    temporal_address: str = Field(default="127.0.0.1:7233", description="host:port of the Temporal frontend.")
    temporal_namespace: str = Field(default="default", description="Temporal namespace the rounds run in.")
    task_queue: str = Field(default="roundtable", description="Temporal task queue of the worker.")
    workflow_id_prefix: str = Field(
        default="",
        description="Prefix of the round-{id} workflow ids, when deployments share a Temporal namespace.",
    )
    smtp_host: str = Field(default="127.0.0.1", description="SMTP relay host.")
    smtp_port: int = Field(default=1025, description="SMTP relay port.")
    smtp_username: str | None = Field(default=None, description="SMTP login; empty means no AUTH.")
    smtp_password: str | None = Field(default=None, description="SMTP password.")
    smtp_tls: SmtpTls = Field(default=SmtpTls.none, description="none, starttls or tls (implicit TLS).")
    smtp_connections: int = Field(default=8, ge=1, le=64, description="SMTP connections a batch reuses.")
    mail_from: str = Field(
        default="Roundtable <roundtable@localhost>",
        description="The address every email comes from (the From: header's and the envelope's).",
    )
    secretariat_name: str = Field(
        default="Consultation secretariat",
        min_length=1,
        max_length=300,
        description="The From: header's name on every email, and its signature; replies go to the round's "
        "contact (Reply-To), not to the mail_from address.",
    )
    public_base_url: str = Field(
        default="http://127.0.0.1:8000", description="Base URL in emailed links, without a trailing slash."
    )
    secret_key: str = Field(
        default=DEFAULT_SECRET_KEY,
        description="Signs review links and CSRF tokens. Rotating it invalidates every emailed link.",
    )
    environment: Environment = Field(
        default=Environment.production, description="production|development|test"
    )
    timezone: str = Field(
        default="Europe/Tirane", description="IANA zone in which the console shows times and reads them."
    )
    data_dir: str = Field(default=".roundtable", description="Run-time data of `roundtable dev`.")
    mail_batch_size: int = Field(
        default=200, ge=1, le=2000, description="Emails one delivery activity sends before re-planning."
    )
    delivery_turn_seconds: float = Field(
        default=30.0,
        ge=0,
        le=300,
        description="A delivery activity starts no new batch after this long (0: one batch a turn), so its "
        "scheduler hears of a wake-up (a close, a cancellation) between turns.",
    )
    outbox_lease_seconds: int = Field(
        default=60,
        ge=1,
        le=3600,
        description="How long a delivery attempt holds the emails it claimed (renewed while it lives).",
    )
    outbox_retry_start_seconds: float = Field(
        default=30, ge=0.1, le=3600, description="First wait after a temporary refusal; it doubles."
    )
    outbox_retry_max_seconds: int = Field(
        default=1800, ge=1, le=86_400, description="Longest wait between two attempts at one email."
    )
    outbox_give_up_hours: int = Field(
        default=48,
        ge=1,
        le=24 * 30,
        description="An email still refused this long after it was decided fails.",
    )
    trusted_proxies: str = Field(
        default="",
        description="Comma-separated addresses or networks (CIDR) of the reverse proxies in front of the "
        "app: only a request from one of them has its X-Forwarded-For believed. Empty: none.",
    )
    max_request_bytes: int = Field(
        default=1 * MIB,
        ge=1024,
        le=100 * MIB,
        description="Largest body of a form or JSON request; a larger one is refused (413) while it is read.",
    )
    max_upload_request_bytes: int = Field(
        default=15 * MIB,
        ge=1024,
        le=1024 * MIB,
        description="Largest body of an upload (a draft, a registry file, a registry preview confirmed).",
    )
    rate_limit_link_requests: int = Field(
        default=600,
        ge=1,
        le=1_000_000,
        description="Requests to review links (/t/...) one client address may make per minute; then 429. "
        "Generous: the focal points of many ministries may reach us from one government network's address.",
    )
    rate_limit_unknown_tokens: int = Field(
        default=20,
        ge=1,
        le=1_000_000,
        description="Review tokens that open nothing one client may try per 15 minutes; then every link "
        "request of that client gets 429 until the window ends.",
    )
    rate_limit_sign_ins: int = Field(
        default=30,
        ge=1,
        le=1_000_000,
        description="Console sign-in attempts one client may make per 15 minutes, whatever the email.",
    )
    reconcile_every_seconds: int = Field(
        default=60,
        ge=5,
        le=3600,
        description="How often the reconciler makes sure every open round's scheduler runs and acts.",
    )
    api_token_lifetime_days: int = Field(
        default=90,
        ge=1,
        le=3650,
        description="An API token expires this many days after it is issued (the longest one may ask for).",
    )
    console_idle_minutes: int = Field(
        default=30,
        ge=1,
        le=720,
        description="A console session not used for this long ends (it ends 12 hours after sign-in anyway).",
    )

    @model_validator(mode="after")
    def _normalise(self) -> Settings:
        self.public_base_url = self.public_base_url.rstrip("/")
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _known_networks(cls, value: str) -> str:
        for item in _listed(value):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an IP address or network (e.g. 10.0.0.0/8)") from exc
        return value

    @property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return _networks(self.trusted_proxies)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Tirane") from exc
        return value

    @property
    def is_production(self) -> bool:
        return self.environment == Environment.production

    def check_production_ready(self) -> None:
        """Production refuses to start on settings that would expose it: a secret anyone can guess, or a
        public address over plain http (cookies not Secure, review tokens sent in clear). Raises
        NotProductionReady with one line that says what to set."""
        if not self.is_production:
            return
        secret = self.secret_key
        if secret == DEFAULT_SECRET_KEY:
            problem = "is the well-known default"
        elif len(secret) < MIN_SECRET_LENGTH:
            problem = f"is shorter than {MIN_SECRET_LENGTH} characters"
        elif len(set(secret)) < MIN_SECRET_DISTINCT:
            problem = f"has fewer than {MIN_SECRET_DISTINCT} different characters"
        else:
            problem = ""
        if problem:
            raise NotProductionReady(
                f"ROUNDTABLE_SECRET_KEY {problem}; set a long random value "
                "(python -c 'import secrets; print(secrets.token_urlsafe(48))')."
            )
        address = urlsplit(self.public_base_url)
        scheme, host = address.scheme.lower(), (address.hostname or "").lower()
        if scheme == "https" and host:
            return
        if scheme == "http" and host in LOOPBACK_HOSTS:
            return
        raise NotProductionReady(
            f"ROUNDTABLE_PUBLIC_BASE_URL {self.public_base_url!r} is not an https:// address; production "
            "serves review links and sign-ins over https only (plain http only for 127.0.0.1, localhost "
            "or ::1)."
        )


def _listed(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


@lru_cache(maxsize=16)
def _networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Parsed once per setting's value: every request asks."""
    return tuple(ipaddress.ip_network(item, strict=False) for item in _listed(value))


@lru_cache
def get_settings() -> Settings:
    return Settings()
