"""Ingest settings: one dataclass, loaded from a YAML file and/or environment variables.

Environment wins over the file. Secrets (hash key, signing keys, passwords, tokens) come
only from environment variables or from files named in the YAML (``*_file`` keys); an
inline secret in YAML is rejected so config files can be committed. Secrets are excluded
from ``repr`` and never logged.

Global settings (YAML top level, or env ``DDETECT_INGEST_<NAME>`` upper-cased):

=============================  ==========================  ====================================================
setting                        default                     meaning
=============================  ==========================  ====================================================
host                           0.0.0.0                     listen address
port                           8080                        listen port
bootstrap_servers              127.0.0.1:9092              Kafka bootstrap (also env ``KAFKA_BOOTSTRAP_SERVERS``)
events_topic                   deliverability-events       canonical events topic: one message per request,
                                                           a JSON array of events, no key
dlq_topic                      deliverability-events-dlq   raw payload + reason of rejected input. SENSITIVE:
                                                           it holds raw payloads incl. recipient addresses;
                                                           restrict ACLs and retention
recipient_hash_key             (required)                  HMAC key for recipient_hash; env
                                                           ``DDETECT_RECIPIENT_HASH_KEY`` or
                                                           ``DDETECT_RECIPIENT_HASH_KEY_FILE`` / YAML
                                                           ``recipient_hash_key_file``
default_campaign               (none)                      campaign when no mapped field has a value
                                                           (keep it: the detector counts "(none)" as
                                                           unattributed volume for ip_pool_surge)
max_body_bytes                 5242880                     larger bodies get 413
timestamp_tolerance_seconds    300                         max clock skew for signed timestamps
                                                           (SendGrid, Mailgun, Svix)
sns_max_age_seconds            86400                       reject SNS messages older than this (0 = off)
dedup_window_seconds           86400                       redeliveries within this window are dropped
dedup_max_entries              500000                      memory bound of the dedup filter
replay_cache_max_entries       100000                      Mailgun token replay cache bound
produce_timeout_seconds        5.0                         broker ack wait before answering "retry"
max_events_per_message         1000                        a request with more events becomes several messages
max_message_bytes              921600                      ... and so does one whose JSON array is larger (900 KB,
                                                           under the broker's 1 MB message.max.bytes default)
cert_cache_max_entries         32                          SNS signing certificates kept
max_future_skew_seconds        3600                        events stamped further than this past our clock are
                                                           counted (``ddetect_ingest_events_future_total``) and
                                                           logged, still accepted: the worker dead-letters them
                                                           (env also ``DDETECT_MAX_FUTURE_SKEW``, the worker's)
=============================  ==========================  ====================================================

Per-provider settings (YAML ``providers: {<name>: {...}}``, or env ``DDETECT_<PROVIDER>_<NAME>``,
e.g. ``DDETECT_SENDGRID_SECRET_FILE``):

=====================  ==================================================================================
setting                meaning
=====================  ==================================================================================
enabled                false answers 404 for this provider (default true)
unauthenticated        true = explicit opt-out of authentication (default false: fail closed)
secret / secret_file   SendGrid: verification public key (base64 DER or PEM); Mailgun: webhook signing
                       key; Mandrill: webhook key; Resend: Svix secret ``whsec_...``; MailerSend:
                       signing secret
basic_user             Basic-auth user (Postmark, SparkPost, Brevo, Mailjet, generic; any provider)
basic_password(_file)  Basic-auth password
bearer_token(_file)    Bearer token (``Authorization: Bearer``; SparkPost also
                       ``X-MessageSystems-Webhook-Token``)
webhook_url            Mandrill: the URL exactly as configured in Mandrill (it is signed)
campaign_fields        ordered field paths for the campaign (list, env: comma-separated)
sending_domain_fields  ordered field paths for the sending domain (or a From address), tried before
                       the provider's own field; needed where the ESP names no sender on every
                       outcome event (SendGrid, Postmark, Brevo, MailerSend, Mailjet): send a custom
                       arg / metadata key (e.g. ``sending_domain``) and list it here
sending_domain         constant sending domain for events that name none (e.g. an ESP subaccount
                       that sends from one domain)
ip_pool_fields         ordered field paths for the IP pool (a pool name, or an IP), tried before the
                       provider's own field; a list value yields its first element, an object its
                       ``name``. Pick a field every outcome event carries (README "ESP setup")
ip_pool                constant IP pool for events that name none
outage_status          HTTP status answered while the broker is down (default per provider: 503,
                       Brevo 429); must be one the provider retries
topic_arns             SES: allowed SNS topic ARNs (list; env comma-separated). Required for SES.
sns_region             SES: if set, SigningCertURL host must be ``sns.<region>.amazonaws.com``
=====================  ==================================================================================
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from detector.event import UNATTRIBUTED_CAMPAIGN

PROVIDER_NAMES = ("sendgrid", "mailgun", "postmark", "ses", "sparkpost", "mandrill", "brevo",
                  "resend", "mailersend", "mailjet", "generic")
_SECRET_FIELDS = ("secret", "basic_password", "bearer_token")


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the setting, never a secret."""


@dataclass
class ProviderSettings:
    name: str
    enabled: bool = True
    unauthenticated: bool = False
    secret: str | None = field(default=None, repr=False)
    basic_user: str | None = None
    basic_password: str | None = field(default=None, repr=False)
    bearer_token: str | None = field(default=None, repr=False)
    webhook_url: str | None = None
    campaign_fields: tuple[str, ...] | None = None
    sending_domain_fields: tuple[str, ...] | None = None
    sending_domain: str | None = None
    ip_pool_fields: tuple[str, ...] | None = None
    ip_pool: str | None = None
    outage_status: int | None = None
    topic_arns: tuple[str, ...] = ()
    sns_region: str | None = None


@dataclass
class IngestConfig:
    host: str = "0.0.0.0"
    port: int = 8080
    bootstrap_servers: str = "127.0.0.1:9092"
    events_topic: str = "deliverability-events"
    dlq_topic: str = "deliverability-events-dlq"
    recipient_hash_key: bytes = field(default=b"", repr=False)
    default_campaign: str = UNATTRIBUTED_CAMPAIGN   # the detector counts it as unattributed volume
    max_body_bytes: int = 5 * 1024 * 1024
    timestamp_tolerance_seconds: float = 300.0
    sns_max_age_seconds: float = 86400.0
    dedup_window_seconds: float = 86400.0
    dedup_max_entries: int = 500_000
    replay_cache_max_entries: int = 100_000
    produce_timeout_seconds: float = 5.0
    max_events_per_message: int = 1000
    max_message_bytes: int = 900 * 1024
    cert_cache_max_entries: int = 32
    max_future_skew_seconds: float = 3600.0
    providers: dict[str, ProviderSettings] = field(default_factory=dict)

    def provider(self, name: str) -> ProviderSettings:
        if name not in self.providers:
            self.providers[name] = ProviderSettings(name=name)
        return self.providers[name]


_GLOBAL_SCALARS = {f.name: f for f in dataclasses.fields(IngestConfig)
                   if f.name not in ("providers", "recipient_hash_key")}
_PROVIDER_FIELDS = {f.name: f for f in dataclasses.fields(ProviderSettings) if f.name != "name"}


def _coerce(name: str, ftype: Any, value: Any) -> Any:
    t = str(ftype)
    try:
        if "bool" in t:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError
        if "tuple" in t:
            if isinstance(value, str):
                return tuple(p.strip() for p in value.split(",") if p.strip())
            return tuple(str(p) for p in value)
        if t.startswith("int") or "int |" in t:
            return int(value)
        if "float" in t:
            return float(value)
        return None if value is None else str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: invalid value for type {t}") from None


def _read_secret_file(setting: str, path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read secret file {path!r}: {exc.strerror}") from None


def load_config(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None,
                *, require_hash_key: bool = True) -> IngestConfig:
    """Build the config from an optional YAML file, then environment overrides."""
    env = os.environ if env is None else env
    cfg = IngestConfig()
    doc: dict = {}
    if path is not None:
        with open(path) as fh:
            doc = yaml.safe_load(fh) or {}
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        doc = doc.get("ingest", doc)

    for key, value in doc.items():
        if key == "providers":
            continue
        if key == "recipient_hash_key":
            raise ConfigError("recipient_hash_key: put secrets in recipient_hash_key_file or the environment")
        if key == "recipient_hash_key_file":
            cfg.recipient_hash_key = _read_secret_file(key, value).encode()
            continue
        if key not in _GLOBAL_SCALARS:
            raise ConfigError(f"{key}: unknown setting (allowed: {', '.join(sorted(_GLOBAL_SCALARS))})")
        setattr(cfg, key, _coerce(key, _GLOBAL_SCALARS[key].type, value))

    providers = doc.get("providers") or {}
    if not isinstance(providers, dict):
        raise ConfigError("providers: must be a mapping of provider name to settings")
    for pname, settings in providers.items():
        if pname not in PROVIDER_NAMES:
            raise ConfigError(f"providers.{pname}: unknown provider (allowed: {', '.join(PROVIDER_NAMES)})")
        ps = cfg.provider(pname)
        for key, value in (settings or {}).items():
            where = f"providers.{pname}.{key}"
            if key in _SECRET_FIELDS:
                raise ConfigError(f"{where}: put secrets in {key}_file or the environment")
            if key.endswith("_file") and key[:-5] in _SECRET_FIELDS:
                setattr(ps, key[:-5], _read_secret_file(where, value))
                continue
            if key not in _PROVIDER_FIELDS:
                raise ConfigError(f"{where}: unknown setting")
            setattr(ps, key, _coerce(where, _PROVIDER_FIELDS[key].type, value))

    # Environment overrides.
    for key, f in _GLOBAL_SCALARS.items():
        name = f"DDETECT_INGEST_{key.upper()}"
        if name in env:
            setattr(cfg, key, _coerce(name, f.type, env[name]))
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "DDETECT_KAFKA_BOOTSTRAP_SERVERS"):
        if env.get(name):
            cfg.bootstrap_servers = env[name]
    if env.get("DDETECT_MAX_FUTURE_SKEW") and "DDETECT_INGEST_MAX_FUTURE_SKEW_SECONDS" not in env:
        cfg.max_future_skew_seconds = _coerce("DDETECT_MAX_FUTURE_SKEW", float, env["DDETECT_MAX_FUTURE_SKEW"])
    if env.get("DDETECT_RECIPIENT_HASH_KEY"):
        cfg.recipient_hash_key = env["DDETECT_RECIPIENT_HASH_KEY"].encode()
    elif env.get("DDETECT_RECIPIENT_HASH_KEY_FILE"):
        cfg.recipient_hash_key = _read_secret_file(
            "DDETECT_RECIPIENT_HASH_KEY_FILE", env["DDETECT_RECIPIENT_HASH_KEY_FILE"]).encode()
    for pname in PROVIDER_NAMES:
        prefix = f"DDETECT_{pname.upper()}_"
        for key, f in _PROVIDER_FIELDS.items():
            name = prefix + key.upper()
            if key in _SECRET_FIELDS and env.get(name + "_FILE"):
                setattr(cfg.provider(pname), key, _read_secret_file(name + "_FILE", env[name + "_FILE"]))
            if name in env:
                value = env[name] if key in _SECRET_FIELDS else _coerce(name, f.type, env[name])
                setattr(cfg.provider(pname), key, value)

    if require_hash_key and not cfg.recipient_hash_key:
        raise ConfigError("recipient_hash_key: required (set DDETECT_RECIPIENT_HASH_KEY or "
                          "DDETECT_RECIPIENT_HASH_KEY_FILE)")
    for pname in PROVIDER_NAMES:
        cfg.provider(pname)
    return cfg
