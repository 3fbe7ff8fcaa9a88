"""The trial store: the ``TrialStore`` protocol, its SQLite and PostgreSQL implementations, every reader.

Writers (the pytest session, reproductions) go through :class:`TrialStore`; readers (the CLI,
the Python API, the report, reproductions) through :class:`Reader`, whichever backend a store
URL names (:mod:`.url`: ``sqlite:///PATH``, ``postgresql://...``). Nothing outside this
package opens a database, so a new backend is a new module here plus a
``pytest_mitosis_make_store`` implementation. The names below are the package's public face:
import them from ``pytest_mitosis.store``, not from its modules.

May import: :mod:`pytest_mitosis.core`, :mod:`pytest_mitosis.identity`, :mod:`pytest_mitosis.config`
(for a path default). Never pytest, execution, checks or views.
"""

from __future__ import annotations

from ..identity.locks import Lock
from .backends import make_store, readable
from .protocol import (
    JOB_FIELDS,
    Acceptance,
    KeyTaken,
    NewSession,
    NewTrial,
    NotAcceptable,
    Previous,
    SessionStore,
    StoreError,
    TrialStore,
    VariantRedefined,
    job_problem,
    new_key,
    start,
)
from .readers import Reader
from .records import (
    Accepted,
    NoMatch,
    RecordsError,
    TrialRecord,
    TrialRecords,
    cell,
    decode,
    default_store,
    default_trials_folder,
    job_id,
    job_short,
    job_text,
    new_file,
    printable,
    valid_commit,
    valid_key,
)
from .sessions import SessionRecord
from .sqlite import SQLiteStore
from .sqlite_file import FILENAME
from .tables import SCHEMA_VERSION
from .url import StoreURL, redact
from .url import parse as parse_url

__all__ = [
    "FILENAME",
    "JOB_FIELDS",
    "SCHEMA_VERSION",
    "Accepted",
    "Acceptance",
    "KeyTaken",
    "Lock",
    "NewSession",
    "NewTrial",
    "NoMatch",
    "NotAcceptable",
    "Previous",
    "Reader",
    "RecordsError",
    "SQLiteStore",
    "SessionRecord",
    "SessionStore",
    "StoreError",
    "StoreURL",
    "TrialRecord",
    "TrialRecords",
    "TrialStore",
    "VariantRedefined",
    "cell",
    "decode",
    "default_store",
    "default_trials_folder",
    "job_id",
    "job_problem",
    "job_short",
    "job_text",
    "make_store",
    "new_file",
    "new_key",
    "parse_url",
    "printable",
    "readable",
    "redact",
    "start",
    "valid_commit",
    "valid_key",
]
