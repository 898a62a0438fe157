"""Connection URLs against the table every client must pass, read from
docs/PROTOCOL.md ("Connection URLs") as tests/test_url.c reads it: the table
the document shows is the table that runs. A row connects (user, TLS
settings, address) or is refused with a message holding the row's words.
The control: each row with its expectation changed must be caught."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Optional

import pytest

from whizbang import InvalidURLError, ServerURL, parse_url

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "..", "docs", "PROTOCOL.md")


@dataclass(frozen=True)
class Row:
    url: str
    user: str
    tls: str
    refused: bool
    want: str  # the address, or the words of the refusal


def cell(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == "`" and text[-1] == "`":
        text = text[1:-1]
    return text


def read_table() -> list[Row]:
    with open(DOC, encoding="utf-8") as f:
        doc = f.read()
    start = doc.index("\n### Connection URLs\n")
    end = doc.index("\n#", start + 1)
    rows = []
    for line in doc[start:end].splitlines():
        if not line.startswith("| `"):
            continue
        cells = line.split("|")
        assert len(cells) >= 6, f"a row without five '|': {line}"
        last = cell(cells[4])
        refused = last.startswith("refused: ")
        rows.append(Row(cell(cells[1]), cell(cells[2]), cell(cells[3]), refused,
                        last[len("refused: "):] if refused else last))
    return rows


ROWS = read_table()


def tls_text(u: ServerURL) -> str:
    """The TLS settings as the table's column shows them."""
    parts = ["tls"] if u.tls else []
    for key, v in (("ca", u.tls_ca_file), ("cert", u.tls_cert_file), ("key", u.tls_key_file),
                   ("name", u.tls_server_name)):
        if v:
            parts.append(f"{key}={v}")
    if u.external:
        parts.append("external")
    return " ".join(parts)


def mismatch(row: Row) -> Optional[str]:
    """Why parse_url() does not give what the row says; None when it does."""
    try:
        u = parse_url(row.url)
    except InvalidURLError as e:
        if not row.refused:
            return f"{row.url}: refused ({e.message}), not accepted"
        if row.want not in e.message:
            return f"{row.url}: refused with {e.message!r}, which lacks {row.want!r}"
        return None
    if row.refused:
        return f"{row.url}: accepted as {u.address}, not refused"
    got = (u.user, tls_text(u), u.address)
    if got != (row.user, row.tls, row.want):
        return f"{row.url}: gives {got}, the table says {(row.user, row.tls, row.want)}"
    return None


def test_the_table_is_read() -> None:
    assert len(ROWS) >= 50  # 55 when this was written, 37 of them refusals
    assert sum(r.refused for r in ROWS) >= 30


@pytest.mark.parametrize("row", ROWS, ids=[r.url for r in ROWS])
def test_row(row: Row) -> None:
    assert mismatch(row) is None


@pytest.mark.parametrize("row", ROWS, ids=[r.url for r in ROWS])
def test_row_with_a_changed_expectation_is_caught(row: Row) -> None:
    if row.refused:
        variants = [replace(row, want=row.want + " and more"), replace(row, refused=False)]
    else:
        variants = [replace(row, want=row.want + "0"), replace(row, user=row.user + "x"),
                    replace(row, tls=(row.tls + " name=x").strip()),
                    replace(row, refused=True, want="anything")]
    for v in variants:
        assert mismatch(v) is not None, v


@pytest.mark.parametrize("url", ["whizbang://alice:s3cret@db1",
                                 "whizbang://db1?tlsCaFile=s3cret%ZZ",
                                 "whizbang://db1?tlsServerName=s3cret%20"])
def test_refusals_never_repeat_a_secret(url: str) -> None:
    with pytest.raises(InvalidURLError) as e:
        parse_url(url)
    assert "s3cret" not in str(e.value)


def test_limits() -> None:
    assert parse_url("whizbang://" + "u" * 255 + "@db1").user == "u" * 255
    with pytest.raises(InvalidURLError, match="longer than 255"):
        parse_url("whizbang://" + "u" * 256 + "@db1")
    assert parse_url("whizbang://" + "h" * 253).host == "h" * 253
    with pytest.raises(InvalidURLError, match="longer than 253"):
        parse_url("whizbang://" + "h" * 254)
    assert parse_url("whizbang+unix:///" + "p" * 106).unix_path == "/" + "p" * 106
    with pytest.raises(InvalidURLError, match="longer than 107"):
        parse_url("whizbang+unix:///" + "p" * 107)
    assert parse_url("whizbang://db1?tlsCaFile=%C3%A9").tls_ca_file == "é"
    with pytest.raises(InvalidURLError, match="not valid UTF-8"):
        parse_url("whizbang://db1?tlsCaFile=%C3")
