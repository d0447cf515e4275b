"""SendGrid signed Event Webhook: ECDSA P-256 / SHA-256 over timestamp header + raw body.

The raw bytes matter (the SDK vector's body ends in CRLF, which is signed). SendGrid
documents no tolerance; ours is the configured timestamp tolerance.
"""
from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from ..errors import AuthError
from .common import AuthRequest, b64decode, check_timestamp, missing

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """The key as SendGrid shows it (base64 DER SubjectPublicKeyInfo) or as PEM."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = load_pem_public_key(text.encode())
        else:
            import base64
            key = load_der_public_key(base64.b64decode(text))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"SendGrid public key is not a valid base64 DER or PEM key ({type(exc).__name__})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("SendGrid public key is not an EC key")
    return key


class SendGridVerifier:
    def __init__(self, public_key: str, tolerance: float):
        self.key = load_public_key(public_key)
        self.tolerance = tolerance

    def verify(self, req: AuthRequest) -> None:
        sig = req.headers.get(SIGNATURE_HEADER)
        ts = req.headers.get(TIMESTAMP_HEADER)
        if not sig:
            raise missing(f"{SIGNATURE_HEADER} header")
        check_timestamp(ts, req.now, self.tolerance, TIMESTAMP_HEADER)
        try:
            self.key.verify(b64decode(sig, SIGNATURE_HEADER), ts.encode() + req.body, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise AuthError(403, "bad_signature", "SendGrid signature does not match") from None
