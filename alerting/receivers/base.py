"""What every receiver shares: the error taxonomy that drives retries, and the HTTP POST that classifies replies.

Retry decisions live in one place: 408, 429 and 5xx (and network errors) are retryable, honouring
``Retry-After``; any other 4xx is permanent and goes straight to the dead-letter topic. Error messages name the
receiver and the status, never the URL, because a webhook URL can itself be the secret.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from alerting.config import Integration
from alerting.secrets import Secret


class DeliveryError(Exception):
    retryable = False

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class RetryableError(DeliveryError):
    retryable = True


class PermanentError(DeliveryError):
    retryable = False


@dataclass(frozen=True)
class RenderContext:
    """Settings from the routing file's ``global`` section that every message can use."""

    source: str = "ddetect"
    dashboard_url: str | None = None
    router_url: str | None = None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent or unparsable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    import time
    return max(0.0, when - (time.time() if now is None else now))


def classify(status: int, headers, kind: str, body_snippet: str = "") -> None:
    """Raise the right DeliveryError for a non-2xx status; return for 2xx."""
    if 200 <= status < 300:
        return
    detail = f"{kind}: HTTP {status}" + (f": {body_snippet[:200]}" if body_snippet else "")
    if status in (408, 429) or status >= 500:
        raise RetryableError(detail, status, parse_retry_after(headers.get("Retry-After")))
    raise PermanentError(detail, status)


class Notifier:
    """Sends one alert (firing or resolved) to one integration; raises DeliveryError on failure."""

    kind = "base"

    def __init__(self, integration: Integration, ctx: RenderContext, environ: dict[str, str] | None = None):
        self.integration = integration
        self.ctx = ctx
        self.timeout = float(integration.settings.get("timeout", 10.0))
        self.secrets: dict[str, Secret] = {
            name: ref.resolve(environ) for name, ref in integration.settings.items() if hasattr(ref, "resolve")}

    @property
    def id(self) -> str:
        return self.integration.id

    async def notify(self, alert: dict, session: aiohttp.ClientSession, group: str | None = None) -> None:
        """``group`` is the notification group key (route group_by values); receivers may show it."""
        raise NotImplementedError

    async def post_json(self, session: aiohttp.ClientSession, url: str, body: Any,
                        headers: dict[str, str] | None = None, data: bytes | None = None) -> str:
        """POST and classify; returns the response text. Network failures and timeouts are retryable."""
        payload = data if data is not None else json.dumps(body, separators=(",", ":")).encode()
        hdrs = {"Content-Type": "application/json", "User-Agent": "ddetect-router", **(headers or {})}
        try:
            async with session.post(url, data=payload, headers=hdrs,
                                    timeout=aiohttp.ClientTimeout(total=self.timeout)) as resp:
                text = await resp.text(errors="replace")
                classify(resp.status, resp.headers, self.kind, text)
                return text
        except DeliveryError:
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise RetryableError(f"{self.kind}: {type(exc).__name__}") from None
