"""Secrets at rest: encrypted with a key derived from the platform secret."""

from __future__ import annotations

import pytest

from digi_core.crypto import SecretBox, token_hash


def test_round_trip_and_wrong_secret() -> None:
    box = SecretBox("a" * 40)
    ciphertext = box.encrypt("postgres://user:hunter2@db/app")
    assert "hunter2" not in ciphertext
    assert box.decrypt(ciphertext) == "postgres://user:hunter2@db/app"
    assert box.encrypt("same") != box.encrypt("same")  # a fresh IV each time
    with pytest.raises(ValueError, match="DIGI_SECRET"):
        SecretBox("b" * 40).decrypt(ciphertext)
    with pytest.raises(ValueError):
        SecretBox("a" * 40, purpose="other").decrypt(ciphertext)


def test_token_hash_is_keyed() -> None:
    assert token_hash("a" * 40, "digi_abc") == token_hash("a" * 40, "digi_abc")
    assert token_hash("a" * 40, "digi_abc") != token_hash("b" * 40, "digi_abc")
    assert len(token_hash("a" * 40, "digi_abc")) == 64
