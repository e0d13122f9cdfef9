"""Storages: URLs, opening them with a time limit, the dashboard command."""

from __future__ import annotations

import math
from typing import Optional

from advisor.act.search.constants import DEFAULT_JOURNAL, DEFAULT_STORAGE
from advisor.errors import InputError
from advisor.ingest.study import with_deadline


def storage_url(text: Optional[str], workers: int = 1) -> str:
    """--storage as given -> a URL, or a journal file path (several workers on one host)."""
    if not text:
        return DEFAULT_STORAGE if workers <= 1 else DEFAULT_JOURNAL
    text = text.strip()
    if "://" in text:
        return text
    low = text.lower()
    if low.endswith((".journal", ".log", ".jsonl")):
        return text
    if low.endswith((".db", ".sqlite", ".sqlite3")):
        return f"sqlite:///{text}"
    raise InputError(f"--storage {text}: give sqlite:///file.db (or a .db file), a .journal file "
                     "(several workers on one machine) or a database URL (postgresql://user@host/db)")


def is_journal(url: str) -> bool:
    return "://" not in url


def _hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _refuse_foreign_tables(url: str, path) -> None:
    """Optuna would add its tables to any SQLite database: refuse one that holds other data."""
    import sqlite3
    from urllib.parse import quote

    from optuna.storages._rdb.models import BaseModel  # the tables this Optuna creates

    ours = set(BaseModel.metadata.tables) | {"alembic_version"}
    try:
        con = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise InputError(f"--storage {url}: {path} is not a readable SQLite database ({exc})") from None
    other = sorted(t for t in tables - ours if not t.startswith("sqlite_"))
    if other:
        shown = ", ".join(other[:5]) + (", ..." if len(other) > 5 else "")
        raise InputError(f"--storage {url}: {path} holds tables that are not Optuna's ({shown}); "
                         "give a new .db file (nothing was written)")


def open_storage(url: str, timeout: float = 10.0):
    """An Optuna storage for `url`, or InputError in one line (no hanging on a dead server)."""
    import optuna

    shown = _hide_password(url)
    if is_journal(url):
        from pathlib import Path

        from optuna.storages.journal import JournalFileBackend

        path = Path(url)
        if not path.parent.exists():
            raise InputError(f"--storage {url}: folder {path.parent} does not exist")
        if path.is_dir():
            raise InputError(f"--storage {url}: is a directory; give a journal file")
        if path.exists() and path.stat().st_size:
            with path.open("rb") as fh:
                head = fh.read(64).lstrip()
            if not head.startswith(b"{"):
                raise InputError(f"--storage {url}: exists and is not an Optuna journal file")
        try:
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        except Exception as exc:
            raise InputError(f"--storage {url}: cannot open the journal ({_first_line(exc)})") from None
    scheme = url.split(":", 1)[0].split("+")[0].lower()
    if scheme == "sqlite":
        from pathlib import Path

        rest = url.split(":///", 1)[1] if ":///" in url else ""
        if not rest or rest.startswith(":memory:"):
            raise InputError(f"--storage {url}: give a SQLite file (sqlite:///path/to/file.db); "
                             "an in-memory database cannot be resumed")
        path = Path(rest.split("?", 1)[0])
        if not path.parent.exists():
            raise InputError(f"--storage {url}: folder {path.parent} does not exist")
        if path.is_dir():
            raise InputError(f"--storage {url}: {path} is a directory")
        if path.exists() and path.stat().st_size:
            with path.open("rb") as fh:
                if fh.read(16) != b"SQLite format 3\x00":
                    raise InputError(f"--storage {url}: {path} exists and is not a SQLite database")
            _refuse_foreign_tables(url, path)
        kwargs = {"connect_args": {"timeout": max(1, int(math.ceil(timeout)) * 3)}}
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except Exception as exc:
            raise InputError(f"--storage {url}: cannot open the SQLite storage ({_first_line(exc)})") from None
    # a database server: look first, with a deadline, so a dead host fails fast in one line
    import sqlalchemy

    seconds = max(1, int(math.ceil(timeout)))
    connect_args = {"connect_timeout": seconds} if scheme in ("postgresql", "postgres", "mysql", "mariadb") else {}
    try:
        engine = sqlalchemy.create_engine(url, connect_args=connect_args)
    except ModuleNotFoundError as exc:
        hint = {"psycopg2": "pip install psycopg2-binary", "pymysql": "pip install pymysql",
                "MySQLdb": "pip install mysqlclient"}.get(exc.name or "", f"pip install {exc.name}")
        raise InputError(f"--storage {shown}: its database driver '{exc.name}' is not installed ({hint})") from None
    except Exception as exc:
        raise InputError(f"--storage {shown}: not a storage URL ({_first_line(exc)})") from None

    def probe() -> None:
        with engine.connect():
            pass

    try:
        with_deadline(probe, seconds + 1, f"--storage {shown}", hint="")
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"--storage {shown}: cannot connect to the storage ({_first_line(exc)})") from None
    finally:
        engine.dispose()
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": connect_args, "pool_pre_ping": True},
                                          heartbeat_interval=60, grace_period=180)
    except Exception as exc:
        raise InputError(f"--storage {shown}: cannot open the Optuna storage ({_first_line(exc)})") from None


def dashboard_command(url: str) -> str:
    return f"optuna-dashboard {_hide_password(url)}"
