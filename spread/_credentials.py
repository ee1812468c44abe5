"""The PB login proof: a random challenge and the MD5 response only a password holder can give.

Kept apart from the login machinery so ``spread.pb`` can offer these names without importing it.
"""

from __future__ import annotations

import hashlib
import secrets

from twisted.cred.credentials import ICredentials

__all__ = ["CHALLENGE_SIZE", "IUsernameMD5Password", "challenge", "respond"]

# Twisted sends an MD5 digest of random bytes, so every peer out there expects 16 bytes; ours
# are drawn straight from the OS generator.
CHALLENGE_SIZE = 16


def challenge() -> bytes:
    """Return fresh random bytes for one login attempt, so an old response never works twice."""
    return secrets.token_bytes(CHALLENGE_SIZE)


def respond(challenge: bytes, password: bytes | str) -> bytes:
    """Answer a login challenge: MD5(MD5(password) + challenge), the proof PB peers expect.

    A str password is encoded as UTF-8, which is what a Twisted peer's bytes usually hold.
    """
    return _md5(_md5(_as_bytes(password)) + challenge)


def _md5(data: bytes) -> bytes:
    # MD5 is fixed by the PB wire, not chosen for strength; say so, so FIPS builds allow it.
    return hashlib.md5(data, usedforsecurity=False).digest()


def _as_bytes(secret: bytes | str) -> bytes:
    if isinstance(secret, str):
        return secret.encode("utf-8")
    if isinstance(secret, bytes):
        return secret
    raise TypeError(f"a password must be bytes or str, not {type(secret).__name__}")


class IUsernameMD5Password(ICredentials):
    """Credentials a checker can verify against a plaintext password or its MD5 digest.

    The PB challenger provides this (and ``IUsernameHashedPassword``), so a checker that stores
    only ``MD5(password)`` can still verify a PB login.
    """

    username: bytes | str

    def checkPassword(password: bytes | str) -> bool:  # type: ignore[empty-body]  # noqa: N805
        """Return whether the client proved knowledge of this plaintext password."""

    def checkMD5Password(password: bytes) -> bool:  # type: ignore[empty-body]  # noqa: N805
        """Return whether the client proved knowledge of the password with this MD5 digest."""
