"""SCRAM-SHA-256 against RFC 7677 §3's example, and the checks a client
makes of what the server sends."""
from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from whizbang import UnauthenticatedError, make_credential
from whizbang.scram import ScramClient

# RFC 7677 §3: user "user", password "pencil".
CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
SERVER_FIRST = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
CLIENT_FINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_rfc7677_example() -> None:
    c = ScramClient("user", "pencil", nonce=CLIENT_NONCE)
    assert c.first() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    assert c.final(SERVER_FIRST) == CLIENT_FINAL
    c.verify(SERVER_FINAL)


def test_wrong_server_signature() -> None:
    c = ScramClient("user", "pencil", nonce=CLIENT_NONCE)
    c.final(SERVER_FIRST)
    with pytest.raises(UnauthenticatedError, match="does not verify"):
        c.verify(SERVER_FINAL[:-2] + b"H=")


@pytest.mark.parametrize("server_first, why", [
    (b"r=someoneelse123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "nonce"),
    (b"r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "nonce"),
    (b"r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4095", "iteration"),
    (b"r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=10000001", "iteration"),
    (b"r=rOprNGfwEbeRWgbNEkqOx,s=AAAA,i=4096", "salt"),
    (b"e=other-error", "challenge"),
])
def test_refused_challenges(server_first: bytes, why: str) -> None:
    c = ScramClient("user", "pencil", nonce=CLIENT_NONCE)
    with pytest.raises(UnauthenticatedError, match=why):
        c.final(server_first)


def test_user_name_escapes() -> None:
    assert ScramClient("a,b=c", "pw", nonce="n" * 20).first() == b"n,,n=a=2Cb=3Dc,r=" + b"n" * 20


def test_credential_verifies_the_clients_proof() -> None:
    """The stored form is PostgreSQL's, and a server holding it checks the
    proof of the RFC's exchange: H(ClientProof xor ClientSignature) is
    StoredKey."""
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    cred = make_credential("pencil", 4096, salt)
    mech, rest = cred.split("$", 1)
    head, keys = rest.split("$")
    assert mech == "SCRAM-SHA-256" and head == "4096:W22ZaJ0SNY7soEsUEjb6gQ=="
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    auth_message = (b"n=user,r=" + CLIENT_NONCE.encode() + b"," + SERVER_FIRST + b","
                    + CLIENT_FINAL.rsplit(b",p=", 1)[0])
    proof = base64.b64decode(CLIENT_FINAL.rsplit(b",p=", 1)[1])
    signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
    client_key = bytes(a ^ b for a, b in zip(proof, signature))
    assert hashlib.sha256(client_key).digest() == stored_key
    assert SERVER_FINAL == b"v=" + base64.b64encode(
        hmac.new(server_key, auth_message, hashlib.sha256).digest())
    with pytest.raises(ValueError):
        make_credential("pencil", 1000)
