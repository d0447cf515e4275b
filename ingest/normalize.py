"""``ddetect normalize --provider NAME FILE``: what a raw payload file would produce, no Kafka.

Users check their campaign mapping with it; tests use it on the published samples. The
content type is the provider's usual one; a Mandrill file holding the JSON array (rather
than the form body) is wrapped into ``mandrill_events=`` first.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from urllib.parse import urlencode

from detector.event import dumps

from .config import PROVIDER_NAMES, ConfigError, IngestConfig, load_config
from .errors import PayloadError
from .providers import get_provider


def body_for_file(provider: str, raw: bytes) -> tuple[bytes, str]:
    module = get_provider(provider)
    content_type = module.CONTENT_TYPES[0]
    if provider == "mandrill" and raw.lstrip()[:1] in (b"[", b"{"):
        raw = urlencode({"mandrill_events": raw.decode("utf-8")}).encode()
    return raw, content_type


def normalize_file(provider: str, path: str | os.PathLike, config: IngestConfig) -> list[dict]:
    """Canonical events from one payload file; raises PayloadError naming the problem."""
    with open(path, "rb") as fh:
        raw = fh.read()
    body, content_type = body_for_file(provider, raw)
    return get_provider(provider).parse(body, content_type, config)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ddetect normalize``."""
    parser.add_argument("--provider", required=True, choices=PROVIDER_NAMES, help="ESP that sent the payload")
    parser.add_argument("--config", help="ingest YAML config (campaign mapping); env vars apply too")
    parser.add_argument("file", help="raw webhook body as the ESP posts it")


def run(args: argparse.Namespace, out=sys.stdout, err=sys.stderr) -> int:
    """Print one canonical event per line (JSON); exit 1 with the error on bad input.

    Without a recipient hash key a random one is used (hashes then differ between runs).
    """
    try:
        config = load_config(args.config, require_hash_key=False)
    except (ConfigError, OSError) as exc:
        print(f"config error: {exc}", file=err)
        return 2
    if not config.recipient_hash_key:
        config.recipient_hash_key = os.urandom(32)
        print("note: no DDETECT_RECIPIENT_HASH_KEY set; using a random key for this run", file=err)
    try:
        events = normalize_file(args.provider, args.file, config)
    except PayloadError as exc:
        print(f"error: {exc}", file=err)
        return 1
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror}", file=err)
        return 1
    for ev in events:
        out.write(dumps(ev) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ddetect normalize", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
