"""Connect to a PostgreSQL store, and say in one sentence why a connection failed and what to do.

psycopg is an optional dependency (``pip install 'pytest-mitosis[postgresql]'``): it is imported
only here, only when a ``postgresql://`` URL is used. Whatever libpq answers, the user sees the
redacted URL, the server's first line (password scrubbed) and the fix, never a traceback.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .protocol import StoreError
from .url import StoreURL

#: seconds to wait for a server before saying it cannot be reached
CONNECT_TIMEOUT = 10


def driver(url: StoreURL) -> ModuleType:
    """The ``psycopg`` module, or a ``StoreError`` saying how to install it."""
    try:
        import psycopg
    except ImportError:
        raise StoreError(
            f"mitosis: the trial store {url} is a PostgreSQL database, which needs psycopg 3: "
            "pip install 'pytest-mitosis[postgresql]' (or pip install 'psycopg[binary]')."
        ) from None
    return psycopg


def _advice(text: str, url: StoreURL) -> str:
    low = text.lower()
    if "password authentication failed" in low or "no password supplied" in low or "authentication failed" in low:
        return (
            "The server refused the user or password: check them (put the password in ~/.pgpass or PGPASSWORD "
            "rather than in the URL, where shell history keeps it)."
        )
    if "does not exist" in low and "database" in low:
        return "The server has no such database: create it (createdb DATABASE, as a user allowed to) and run again."
    if "role" in low and "does not exist" in low:
        return "The server has no such user (role): create it (createuser USER) or name another in the URL."
    if "permission denied" in low:
        return "This user may not use that database: GRANT it the rights (CONNECT, CREATE) or use another user."
    return (
        "Check that the server is running and reachable from this host (host, port or ?host=/socket/dir in the "
        "URL; pg_isready -h HOST tells), then run again."
    )


def describe(err: BaseException, url: StoreURL) -> str:
    """One message for a failed connection: what the server said, and what to do."""
    said = url.scrub(str(err)).strip().splitlines()
    first = next((line.strip() for line in said if "FATAL" in line or "error" in line.lower()), said[0] if said else "")
    first = first.rstrip(".") + "."
    return f"mitosis: the trial store {url} cannot be reached: {first} {_advice(str(err), url)}"


def connect(url: StoreURL, read_only: bool = False, timeout: float = CONNECT_TIMEOUT) -> Any:
    """An autocommit connection (writers open explicit transactions); read-only ones refuse any write.
    ``timeout``: seconds to wait for the server (shorter while a writer waits for one that went away)."""
    psycopg = driver(url)
    try:
        db = psycopg.connect(
            url.conninfo,
            autocommit=not read_only,
            connect_timeout=max(1, round(timeout)),
            application_name="pytest-mitosis",
        )
    except psycopg.Error as err:
        raise StoreError(describe(err, url)) from None
    except ValueError as err:  # psycopg checks the URL's syntax before libpq does
        raise StoreError(f"mitosis: the store URL {url} cannot be used: {url.scrub(str(err))}.") from None
    if read_only:
        db.read_only = True  # every transaction: BEGIN READ ONLY; the server refuses any write in it
    return db
