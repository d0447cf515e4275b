"""Per-provider authentication, on by default.

:func:`build_authenticator` returns an object with ``async authenticate(AuthRequest)``
that raises :class:`ingest.errors.AuthError` (401/403) or
:class:`TransientAuthError` (answered with the retry status). A provider without
credentials fails closed (403 ``not_configured``) unless ``unauthenticated: true``.
"""
from __future__ import annotations

import json

from ..errors import AuthError
from .basic import BasicOrBearerVerifier
from .common import AuthRequest, TransientAuthError
from .mailersend_hmac import MailerSendVerifier
from .mailgun_hmac import MailgunVerifier
from .mandrill_hmac import MandrillVerifier
from .sendgrid_ecdsa import SendGridVerifier
from .sns import Fetcher, SnsVerifier
from .svix import SvixVerifier

__all__ = ["AuthRequest", "TransientAuthError", "build_authenticator", "Authenticator"]

SIGNING_SCHEMES = {"sendgrid", "mailgun", "mandrill", "resend", "mailersend", "ses"}


class Authenticator:
    """Wraps one verifier; ``sns`` is set for SES so the server can run the handshake."""

    def __init__(self, provider: str, verifier=None, *, basic=None, sns: SnsVerifier | None = None,
                 disabled: bool = False, problem: str | None = None):
        self.provider = provider
        self.verifier = verifier
        self.basic = basic
        self.sns = sns
        self.disabled = disabled
        self.problem = problem

    async def authenticate(self, req: AuthRequest) -> dict | None:
        """Return the parsed SNS message for SES (already verified), else None."""
        if self.disabled:
            return None
        if self.problem:
            raise AuthError(403, "not_configured", f"{self.provider} authentication is not configured")
        if self.basic is not None:
            self.basic.verify(req)
        if self.sns is not None:
            try:
                msg = json.loads(req.body)
            except (ValueError, UnicodeDecodeError):
                raise AuthError(401, "missing_credentials", "body is not a signed SNS message") from None
            if not isinstance(msg, dict) or "Type" not in msg:
                raise AuthError(401, "missing_credentials",
                                "not an SNS envelope (raw message delivery cannot be authenticated)")
            await self.sns.verify(msg, req.now)
            return msg
        if self.verifier is not None:
            self.verifier.verify(req)
        return None


def build_authenticator(provider: str, config, fetcher: Fetcher | None = None) -> Authenticator:
    """Build from settings; configuration problems are kept (not raised) so one bad
    provider does not stop the others, and are reported via :attr:`Authenticator.problem`."""
    ps = config.provider(provider)
    if ps.unauthenticated:
        return Authenticator(provider, disabled=True)
    tol = config.timestamp_tolerance_seconds
    basic = None
    if (ps.basic_user and ps.basic_password) or ps.bearer_token:
        basic = BasicOrBearerVerifier(ps.basic_user, ps.basic_password, ps.bearer_token)
    try:
        if provider == "ses":
            if not ps.topic_arns:
                return Authenticator(provider, problem="topic_arns is empty")
            sns = SnsVerifier(ps.topic_arns, fetcher, region=ps.sns_region, max_age=config.sns_max_age_seconds,
                              cache_max=config.cert_cache_max_entries)
            return Authenticator(provider, basic=basic, sns=sns)
        verifier = None
        if ps.secret:
            if provider == "sendgrid":
                verifier = SendGridVerifier(ps.secret, tol)
            elif provider == "mailgun":
                verifier = MailgunVerifier(ps.secret, tol, config.replay_cache_max_entries)
            elif provider == "mandrill":
                if not ps.webhook_url:
                    return Authenticator(provider, problem="webhook_url is required for Mandrill signatures")
                verifier = MandrillVerifier(ps.secret, ps.webhook_url)
            elif provider == "resend":
                verifier = SvixVerifier(ps.secret, tol)
            elif provider == "mailersend":
                verifier = MailerSendVerifier(ps.secret)
        if verifier is None and basic is None:
            need = "secret" if provider in SIGNING_SCHEMES else "basic_user/basic_password or bearer_token"
            return Authenticator(provider, problem=f"no {need} configured")
        return Authenticator(provider, verifier, basic=basic)
    except ValueError as exc:
        return Authenticator(provider, problem=str(exc))
