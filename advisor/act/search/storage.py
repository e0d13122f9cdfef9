"""Storages: URLs, opening them with a time limit, the dashboard command."""

from __future__ import annotations

import math
import time
from typing import Optional

from advisor.act.search.constants import DEFAULT_JOURNAL, DEFAULT_STORAGE
from advisor.deadline import with_deadline
from advisor.errors import InputError


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
        hint = {"psycopg": "pip install 'advisor[postgres]'", "psycopg2": "pip install 'advisor[postgres]' and "
                "write postgresql+psycopg://", "pymysql": "pip install pymysql",
                "MySQLdb": "pip install mysqlclient"}.get(exc.name or "", f"pip install {exc.name}")
        raise InputError(f"--storage {shown}: its database driver '{exc.name}' is not installed ({hint})") from None
    except Exception as exc:
        raise InputError(f"--storage {shown}: not a storage URL ({_first_line(exc)})") from None

    def probe() -> None:
        with engine.connect():
            pass

    settings = _settings()
    attempts = settings.connect_attempts if settings is not None else 3
    try:
        for attempt in range(attempts):  # a server restarting, a network blip: a short bounded retry
            try:
                with_deadline(probe, seconds + 1, f"--storage {shown}", hint="")
                break
            except InputError:
                raise
            except Exception as exc:
                if attempt + 1 >= attempts:
                    raise InputError(f"--storage {shown}: cannot connect to the storage at {_where(url)} after "
                                     f"{attempts} attempts ({_first_line(exc)})") from None
                time.sleep(0.5 * 2 ** attempt)
    finally:
        engine.dispose()
    interval, grace = heartbeat(settings)
    try:
        import warnings

        import optuna.storages

        def make():
            with warnings.catch_warnings():  # the heartbeat is "experimental" in Optuna's words
                warnings.simplefilter("ignore")
                return optuna.storages.RDBStorage(
                    url, engine_kwargs={"connect_args": connect_args, "pool_pre_ping": True},
                    heartbeat_interval=interval, grace_period=grace,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1))

        if scheme not in ("postgresql", "postgres"):
            return make()
        # N workers starting on a new database would each create Optuna's tables at once (and
        # collide): a server-side lock lets one create them, the others find them made
        lock = sqlalchemy.create_engine(url, connect_args=connect_args, poolclass=sqlalchemy.pool.NullPool)
        try:
            with lock.connect() as con:
                con.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
                try:
                    return make()
                finally:
                    con.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
        finally:
            lock.dispose()
    except Exception as exc:
        raise InputError(f"--storage {shown}: cannot open the Optuna storage ({_first_line(exc)})") from None


_LOCK_KEY = 0x61647669  # "advi": the advisory lock that serializes the creation of Optuna's tables


def _settings():
    try:
        from advisor.act.train import load_settings

        return load_settings().search
    except Exception:
        return None


def heartbeat(settings=None) -> tuple[int, int]:
    """(heartbeat interval, grace period) in seconds: rules/search.yaml, or ADVISOR_HEARTBEAT=i,g."""
    import os

    raw = os.environ.get("ADVISOR_HEARTBEAT", "")
    if raw:
        try:
            i, g = (int(x) for x in raw.split(","))
            if i >= 1 and g > i:
                return i, g
        except ValueError:
            pass
        raise InputError(f"ADVISOR_HEARTBEAT={raw}: expected two whole seconds, interval,grace (grace > interval)")
    if settings is None:
        return 60, 180
    return settings.heartbeat_s, settings.grace_s


def _where(url: str) -> str:
    """host:port of a server URL (never the user or the password)."""
    try:
        from sqlalchemy.engine import make_url

        u = make_url(url)
        return f"{u.host or 'localhost'}{f':{u.port}' if u.port else ''}"
    except Exception:
        return "the server"


def is_server(url: str) -> bool:
    """A database server storage (several machines): neither a journal file nor SQLite."""
    return not is_journal(url) and not url.lower().startswith("sqlite")


def dashboard_command(url: str) -> str:
    return f"optuna-dashboard {_hide_password(url)}"
