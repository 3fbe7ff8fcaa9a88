"""Store URLs: ``sqlite:///path`` or ``postgresql://user@host/db``, parsed once, shown redacted.

A URL may carry a password (``postgresql://alice:secret@host/db``, or ``?password=...``). It
is used to connect and for nothing else: every message, record and report names the store by
:attr:`StoreURL.redacted` (``postgresql://alice:***@host/db``). Standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from .protocol import StoreError
from .sqlite_file import FILENAME

#: the query parameters that hold a secret (libpq's names)
_SECRET = ("password", "sslpassword")

EXPECTED = (
    "expected sqlite:///PATH (a relative PATH is read from the rootdir), sqlite:////ABSOLUTE/PATH, "
    "postgresql://USER@HOST[:PORT]/DATABASE or postgresql://USER@/DATABASE?host=/SOCKET/DIR"
)


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL; ``str()`` is the redacted form, never the password."""

    kind: str  # "sqlite" or "postgresql"
    redacted: str
    #: the SQLite file (``kind == "sqlite"``)
    path: Path | None = None
    #: what libpq is given, password included (``kind == "postgresql"``): never print it
    conninfo: str = field(default="", repr=False)
    #: the password, to strip it from any message a driver might echo
    secret: str = field(default="", repr=False)

    def __str__(self) -> str:
        return self.redacted

    def scrub(self, text: str) -> str:
        """``text`` with the password (if any) replaced by ``***``."""
        return text.replace(self.secret, "***") if self.secret else text


def redact(text: str) -> str:
    """A URL-like text with any password replaced by ``***`` (for a URL that does not even parse)."""
    text = re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", text)
    return re.sub(r"((?:^|[?&])(?:ssl)?password=)[^&]*", r"\1***", text)


def parse(text: str, base: Path | None = None) -> StoreURL:
    """Parse a store URL; a relative SQLite path is resolved against ``base`` (the cwd if ``None``).

    Raises :class:`StoreError` naming the (redacted) URL and the forms that are understood.
    """
    text = text.strip()
    if text.startswith("sqlite:"):
        if not text.startswith("sqlite:///") or len(text) == len("sqlite:///"):
            raise StoreError(f"mitosis: the store URL {redact(text)!r} names no file; {EXPECTED}.")
        rest = text[len("sqlite:///") :]
        path = Path(rest) if Path(rest).is_absolute() else (base or Path.cwd()) / rest
        path = path.resolve()
        return StoreURL("sqlite", f"sqlite:///{path}", path=path)
    scheme = text.split(":", 1)[0].lower() if ":" in text else ""
    if scheme not in ("postgresql", "postgres"):
        raise StoreError(f"mitosis: the store URL {redact(text)!r} is not one pytest-mitosis knows; {EXPECTED}.")
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a port that is not a number
    except ValueError as err:
        raise StoreError(f"mitosis: the store URL {redact(text)!r} cannot be parsed ({err}); {EXPECTED}.") from None
    database = parts.path.lstrip("/")
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not database and not any(k == "dbname" for k, _ in query):
        raise StoreError(f"mitosis: the store URL {redact(text)!r} names no database; {EXPECTED}.")
    secret = parts.password or next((v for k, v in query if k in _SECRET), "")
    netloc = parts.hostname or ""
    if parts.hostname and ":" in parts.hostname:  # an IPv6 address
        netloc = f"[{parts.hostname}]"
    if port is not None:
        netloc += f":{port}"
    user = quote(parts.username, safe="") if parts.username else ""
    shown_user = user + (":***" if parts.password is not None else "")
    shown_query = urlencode([(k, "***" if k in _SECRET else v) for k, v in query], safe="/*")
    redacted = urlunsplit(
        ("postgresql", (shown_user + "@" if shown_user else "") + netloc, parts.path, shown_query, "")
    )
    conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, ""))
    return StoreURL("postgresql", redacted, conninfo=conninfo, secret=secret)


def default(folder: Path) -> StoreURL:
    """The default store of a trials folder: ``<folder>/mitosis.sqlite``."""
    path = folder / FILENAME
    return StoreURL("sqlite", f"sqlite:///{path}", path=path)
