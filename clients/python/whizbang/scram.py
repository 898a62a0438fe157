"""SCRAM-SHA-256, the client's side (RFC 5802 with RFC 7677's hash), as
docs/PROTOCOL.md §4.1 specifies it: no channel binding (gs2 header ``n,,``),
no SASLprep (names and passwords are used as their UTF-8 bytes), ``,`` and
``=`` in a user name written ``=2C`` and ``=3D``.

    client-first  n,,n=<user>,r=<client nonce>          (Hello.auth_data)
    server-first  r=<both nonces>,s=<salt>,i=<count>     (HelloResult.auth_data)
    client-final  c=biws,r=<both nonces>,p=<proof>       (Authenticate.auth_data)
    server-final  v=<server signature>                   (AuthenticateResult.auth_data)

Only hashlib, hmac and secrets: PBKDF2-HMAC-SHA-256 derives the keys, and
the client checks ``v=`` so that only a server holding the user's keys can
finish the exchange. ``make_credential`` makes the verifier ``PutUser`` stores.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Optional

from .errors import UnauthenticatedError

MECHANISM = "SCRAM-SHA-256"
ITERATIONS_MIN = 4096
ITERATIONS_MAX = 10_000_000
ITERATIONS_DEFAULT = 100_000
SALT_MIN = 16
SALT_MAX = 64
NONCE_LEN = 32
MESSAGE_MAX = 1024
_GS2 = "n,,"
# RFC 5802's "printable" minus ',': what a nonce is drawn from.
_NONCE_CHARS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != ",")


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _check_text(what: str, text: str, limit: int) -> bytes:
    raw = text.encode("utf-8")
    if not raw or len(raw) > limit:
        raise ValueError(f"the {what} must be 1 to {limit} bytes of UTF-8")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text):
        raise ValueError(f"the {what} holds a control character")
    return raw


def salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    """PBKDF2-HMAC-SHA-256 of the password: the expensive step (tens of
    milliseconds at 100 000 iterations); run it off an event loop."""
    return hashlib.pbkdf2_hmac("sha256", _check_text("password", password, 1024), salt,
                               iterations)


def make_credential(password: str, iterations: int = ITERATIONS_DEFAULT,
                    salt: Optional[bytes] = None) -> str:
    """The verifier ``PutUser.credential`` takes:
    ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``. The
    password never reaches the server; this can check a proof, not log in."""
    if not ITERATIONS_MIN <= iterations <= ITERATIONS_MAX:
        raise ValueError(f"iterations must be {ITERATIONS_MIN} to {ITERATIONS_MAX}")
    salt = secrets.token_bytes(16) if salt is None else salt
    salted = salted_password(password, salt, iterations)
    stored_key = hashlib.sha256(_hmac(salted, b"Client Key")).digest()
    server_key = _hmac(salted, b"Server Key")
    return f"{MECHANISM}${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def _failed(why: str) -> UnauthenticatedError:
    return UnauthenticatedError(f"SCRAM-SHA-256 failed here: {why}")


class ScramClient:
    """One exchange: ``first()``, then ``final(server_first)`` (PBKDF2 runs
    here), then ``verify(server_final)``. Each raises ``UnauthenticatedError``
    for what the server sent that does not hold; the exchange is then over."""

    def __init__(self, user: str, password: str, nonce: Optional[str] = None) -> None:
        _check_text("user name", user, 255)
        _check_text("password", password, 1024)
        self._password = password
        self._nonce = nonce if nonce is not None else "".join(
            secrets.choice(_NONCE_CHARS) for _ in range(NONCE_LEN))
        name = user.replace("=", "=3D").replace(",", "=2C")
        self._first_bare = f"n={name},r={self._nonce}"
        self._server_signature: Optional[bytes] = None

    def first(self) -> bytes:
        """The client-first message."""
        return (_GS2 + self._first_bare).encode("utf-8")

    def final(self, server_first: bytes) -> bytes:
        """The client-final message for the server-first message."""
        if len(server_first) > MESSAGE_MAX:
            raise _failed("the server-first message is too long")
        try:
            text = server_first.decode("utf-8")
        except UnicodeDecodeError:
            raise _failed("the server-first message is not UTF-8") from None
        parts = text.split(",")
        if (len(parts) < 3 or not parts[0].startswith("r=") or not parts[1].startswith("s=")
                or not parts[2].startswith("i=")):
            raise _failed("the server's answer to Hello is not a SCRAM-SHA-256 challenge "
                          "(r=...,s=...,i=...)")
        nonce = parts[0][2:]
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise _failed("the server's nonce does not continue this client's")
        try:
            salt = base64.b64decode(parts[1][2:], validate=True)
        except ValueError:
            raise _failed("the salt is not base64") from None
        if not SALT_MIN <= len(salt) <= SALT_MAX:
            raise _failed(f"a salt of {len(salt)} bytes (this client takes "
                          f"{SALT_MIN} to {SALT_MAX})")
        count = parts[2][2:]
        if not count.isdigit() or not ITERATIONS_MIN <= int(count) <= ITERATIONS_MAX:
            raise _failed(f"an iteration count outside {ITERATIONS_MIN} to {ITERATIONS_MAX}")
        salted = salted_password(self._password, salt, int(count))
        client_key = _hmac(salted, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self._first_bare},{text},{without_proof}".encode("utf-8")
        signature = _hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        self._server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={_b64(proof)}".encode("ascii")

    def verify(self, server_final: bytes) -> None:
        """Checks the server-final message's signature; raises when it does
        not prove that the server holds the user's keys."""
        if self._server_signature is None:
            raise _failed("verify() before final()")
        if server_final.startswith(b"e="):
            raise _failed(f"the server ended the exchange: {server_final[2:64]!r}")
        want = b"v=" + _b64(self._server_signature).encode("ascii")
        if not hmac.compare_digest(server_final, want):
            raise UnauthenticatedError(
                "the server's SCRAM-SHA-256 signature does not verify: it does not hold this "
                "user's keys (or the answer was tampered with)")
