"""Connection URLs (docs/PROTOCOL.md §1, "Connection URLs"):

    whizbang://[USER@]HOST[:PORT][/][?PARAMS]       TCP, plaintext or TLS
    whizbang+unix:///PATH                           the server's Unix socket

A strict parser that gives the same answers as libwhizbang's (client/wb_url.c)
for every row of the document's table, which tests/test_url.py reads. The text
is cut from the outside in: the scheme, a fragment (refused), the parameters,
then the authority or the path; what the parameters say together is checked
last. A refusal is ``InvalidURLError`` with a sentence naming the part at
fault; it never quotes the user part (it could hold a password) nor a
parameter's value.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Optional

from .errors import InvalidURLError

SCHEME = "whizbang://"
UNIX_SCHEME = "whizbang+unix://"
DEFAULT_PORT = 7411
USER_MAX = 255
HOST_MAX = 253
PATH_MAX = 107
FILE_MAX = 1024

PARAMS = ("tls", "tlsCaFile", "tlsCertFile", "tlsKeyFile", "tlsServerName", "authMechanism")
TLS_FILE_PARAMS = ("tlsCaFile", "tlsCertFile", "tlsKeyFile", "tlsServerName")
# Names other clients use, and what this one calls them.
OTHER_NAMES = {
    "ca": "tlsCaFile", "cert": "tlsCertFile", "key": "tlsKeyFile", "ssl": "tls",
    "sni": "tlsServerName", "tlsCAFile": "tlsCaFile", "servername": "tlsServerName",
}
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=")
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")


@dataclass(frozen=True)
class ServerURL:
    """What a URL says: where to connect, as whom, and how."""

    host: str = ""  # a name, an IPv4 address or an IPv6 address (no brackets); "" for Unix
    port: int = DEFAULT_PORT
    unix_path: str = ""  # whizbang+unix: the socket's path
    user: str = ""  # SCRAM-SHA-256 logs in as this user (the password is asked apart)
    tls: bool = False
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_server_name: str = ""  # the name the certificate must carry; by default host
    external: bool = False  # authMechanism=EXTERNAL: log in as the client certificate's user

    @property
    def address(self) -> str:
        """The address as libwhizbang's wb_connect() takes it: HOST:PORT,
        [V6]:PORT or unix:PATH."""
        if self.unix_path:
            return f"unix:{self.unix_path}"
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def _refuse(message: str) -> InvalidURLError:
    return InvalidURLError(message)


def _shown(name: str) -> str:
    """A name shown in a refusal: at most 32 characters, printable ASCII or '?'."""
    return "".join(c if " " < c < "\x7f" else "?" for c in name[:32])


def _decode(text: str, in_path: bool, cap: int, what: str) -> str:
    """Percent-decodes text: the result must be valid UTF-8 of at most cap
    bytes without control characters."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "%":
            hexdigits = text[i + 1:i + 3]
            if len(hexdigits) != 2 or not all(c in "0123456789abcdefABCDEF" for c in hexdigits):
                raise _refuse(f"a % in the {what} starts no escape of two hex digits")
            out.append(int(hexdigits, 16))
            i += 3
        else:
            if not (ch in _PLAIN or (in_path and ch in ":@/")):
                raise _refuse(f"a character in the {what} must be percent-encoded (%XX): "
                              f"character {ord(ch):#04x} at offset {i}")
            out.append(ord(ch))
            i += 1
        if len(out) > cap:
            raise _refuse(f"the {what} is longer than {cap} bytes")
    try:
        decoded = out.decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse(f"the {what} is not valid UTF-8") from None
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in decoded):
        raise _refuse(f"the {what} holds a control character")
    return decoded


def _is_ipv6(text: str) -> bool:
    if "%" in text:  # a zone index: not what inet_pton (and a certificate) takes
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _unknown_param(name: str) -> InvalidURLError:
    shown = _shown(name)
    for known in PARAMS:
        if known.lower() == name.lower():
            return _refuse(f"unknown parameter '{shown}' (names are case-sensitive: {known})")
    if name in OTHER_NAMES:
        return _refuse(f"unknown parameter '{shown}' (did you mean {OTHER_NAMES[name]}?)")
    return _refuse(f"unknown parameter '{shown}' (this client takes tls, tlsCaFile, "
                   "tlsCertFile, tlsKeyFile, tlsServerName and authMechanism)")


def _params(query: str) -> dict[str, str]:
    """The query (after '?'): NAME=VALUE pairs between '&', each name at most
    once, values decoded. An empty query holds none."""
    given: dict[str, str] = {}
    if query == "":
        return given
    for pair in query.split("&"):
        name, eq, value = pair.partition("=")
        if name == "":
            raise _refuse("a parameter of the URL has no name")
        if name not in PARAMS:
            raise _unknown_param(name)
        if name in given:
            raise _refuse(f"parameter '{name}' is given twice")
        if not eq or value == "":
            raise _refuse(f"parameter '{name}' has no value")
        given[name] = _param_value(name, value)
    return given


def _param_value(name: str, value: str) -> str:
    if name == "tls":
        if value not in ("true", "false"):
            raise _refuse("parameter 'tls' takes true or false")
        return value
    if name == "authMechanism":
        if value not in ("EXTERNAL", "SCRAM-SHA-256"):
            raise _refuse("parameter 'authMechanism' takes EXTERNAL or SCRAM-SHA-256")
        return value
    what = f"value of parameter '{name}'"
    if name == "tlsServerName":
        decoded = _decode(value, True, HOST_MAX, what)
        if len(decoded) >= 2 and decoded[0] == "[" and decoded[-1] == "]":
            decoded = decoded[1:-1]
        if _is_ipv6(decoded) or (decoded and all(c in _HOST_CHARS for c in decoded)):
            return decoded
        raise _refuse("parameter 'tlsServerName' is not a DNS name or an IP address")
    return _decode(value, True, FILE_MAX, what)


def _port(text: str) -> int:
    if text == "":
        raise _refuse("the port after ':' is empty")
    if len(text) > 5 or not all("0" <= c <= "9" for c in text) or not 1 <= int(text) <= 65535:
        raise _refuse("the port is not a number from 1 to 65535")
    return int(text)


def _authority(auth: str, rest: str) -> tuple[str, str, int]:
    """whizbang://: the authority and what follows it (nothing, or "/");
    returns user, host and port."""
    if rest not in ("", "/"):
        raise _refuse("a whizbang:// URL has no path: it ends after HOST[:PORT] (or one '/')")
    user = ""
    if "@" in auth:
        userpart, _, auth = auth.partition("@")
        if ":" in userpart:
            raise _refuse("a password does not belong in a URL: give the user alone and "
                          "the password apart")
        if userpart == "":
            raise _refuse("the user before '@' is empty")
        user = _decode(userpart, False, USER_MAX, "user")
    if auth == "":
        raise _refuse("the URL names no host: whizbang://HOST[:PORT]")
    if auth[0] == "[":
        close = auth.find("]")
        if close < 0:
            raise _refuse("the IPv6 address has no closing ']'")
        host = auth[1:close]
        if not _is_ipv6(host):
            raise _refuse("the host in brackets is not an IPv6 address")
        after = auth[close + 1:]
    else:
        if auth.count(":") > 1:
            raise _refuse("write an IPv6 address in brackets: whizbang://[::1]:7411")
        host, colon, port_text = auth.partition(":")
        after = colon + port_text
        if host == "":
            raise _refuse("the URL names no host: whizbang://HOST[:PORT]")
        if len(host) > HOST_MAX:
            raise _refuse(f"the host is longer than {HOST_MAX} bytes")
        bad = next((c for c in host if c not in _HOST_CHARS), None)
        if bad is not None:
            raise _refuse("the host holds a character other than letters, digits, '-', '.' "
                          f"and '_' (character {ord(bad):#04x})")
    port = DEFAULT_PORT
    if after:
        if after[0] != ":":
            raise _refuse("after the IPv6 address comes ':PORT' or nothing")
        port = _port(after[1:])
    return user, host, port


def parse_url(text: str) -> ServerURL:
    """Parses a connection URL; raises ``InvalidURLError`` saying why not."""
    lower = text[:len(UNIX_SCHEME)].lower()
    is_unix = lower.startswith(UNIX_SCHEME)
    if not is_unix and not lower.startswith(SCHEME):
        sep = text.find("://")
        if sep < 0:
            raise _refuse("not a URL: whizbang://[USER@]HOST[:PORT] or whizbang+unix:///PATH")
        raise _refuse(f"unknown scheme '{_shown(text[:sep])}': whizbang:// (TCP) or "
                      "whizbang+unix:// (a Unix socket)")
    rest = text[len(UNIX_SCHEME if is_unix else SCHEME):]
    if "#" in rest:
        raise _refuse("a connection URL has no fragment (#...)")
    body, _, query = rest.partition("?")
    params = _params(query)

    user, host, port, unix_path = "", "", DEFAULT_PORT, ""
    if is_unix:
        if not body.startswith("/"):
            raise _refuse("a whizbang+unix URL names no host: its path follows the scheme, "
                          "three slashes in all (whizbang+unix:///PATH)")
        if body == "/":
            raise _refuse("the URL names no socket path")
        unix_path = _decode(body, True, PATH_MAX, "socket path")
    else:
        cut = body.find("/")  # the query is off already
        if cut < 0:
            cut = len(body)
        user, host, port = _authority(body[:cut], body[cut:])

    tls_given = [k for k in TLS_FILE_PARAMS if k in params]
    if tls_given and params.get("tls") == "false":
        raise _refuse(f"tls=false contradicts parameter '{tls_given[0]}'")
    tls = params.get("tls") == "true" or bool(tls_given)
    if tls and is_unix:
        first = next(k for k in PARAMS if k in params)
        raise _refuse(f"parameter '{first}': TLS does not apply to a Unix socket (it never "
                      "leaves the machine)")
    if ("tlsCertFile" in params) != ("tlsKeyFile" in params):
        raise _refuse("tlsCertFile and tlsKeyFile go together: a client certificate and its key")
    mechanism = params.get("authMechanism")
    if mechanism == "EXTERNAL" and not tls:
        raise _refuse("authMechanism=EXTERNAL needs TLS with a client certificate "
                      "(tlsCertFile and tlsKeyFile)")
    if mechanism == "EXTERNAL" and user:
        raise _refuse("authMechanism=EXTERNAL takes its user from the client certificate: "
                      "leave USER@ out")
    if mechanism == "SCRAM-SHA-256" and not user:
        raise _refuse("authMechanism=SCRAM-SHA-256 needs a user: whizbang://USER@HOST")
    return ServerURL(
        host=host, port=port, unix_path=unix_path, user=user, tls=tls,
        tls_ca_file=params.get("tlsCaFile", ""), tls_cert_file=params.get("tlsCertFile", ""),
        tls_key_file=params.get("tlsKeyFile", ""),
        tls_server_name=params.get("tlsServerName", ""), external=mechanism == "EXTERNAL")
