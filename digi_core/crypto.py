"""Encryption at rest for secrets in the database, with keys derived from the platform secret."""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def derive_key(secret: str, purpose: str) -> bytes:
    """32 bytes for one ``purpose`` (``"env-vars"``, ``"sessions"``…) from the secret."""
    kdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"digi", info=purpose.encode())
    return kdf.derive(secret.encode())


class SecretBox:
    """Encrypts and decrypts short strings (env values, credentials) with Fernet."""

    def __init__(self, secret: str, purpose: str = "secrets-at-rest") -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(derive_key(secret, purpose)))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        """Raises ``ValueError`` when the value was not encrypted with this secret."""
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode()
        except InvalidToken:
            raise ValueError(
                "stored value cannot be decrypted: the platform secret (DIGI_SECRET) changed"
            ) from None


def token_hash(secret: str, token: str) -> str:
    """A keyed hash for looking up API tokens; the token itself is never stored."""
    key = derive_key(secret, "token-hash")
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()
