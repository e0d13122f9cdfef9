"""Trial bookkeeping: states, counts, epochs, trials a killed process left running."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from typing import Optional

from advisor.act.search.constants import OWNERLESS_GRACE_S, WORKER_ATTR


def _states():
    from optuna.trial import TrialState

    return TrialState


def is_final(t) -> bool:
    return bool(t.user_attrs.get("final"))


def trial_epochs(t) -> int:
    e = t.user_attrs.get("epochs")
    if isinstance(e, (int, float)) and not isinstance(e, bool):
        return int(e)
    return len(t.intermediate_values)


def is_extra(t) -> bool:
    """A trial another worker started once the budget (or its phase) was spent: not counted."""
    return bool(t.user_attrs.get("extra"))


def retried(trials) -> set[int]:
    """Numbers of the trials the heartbeat failed and Optuna re-queued (counted by their retry)."""
    out: set[int] = set()
    for t in trials:
        history = (getattr(t, "system_attrs", None) or {}).get("retry_history")
        if isinstance(history, list):
            out.update(n for n in history if isinstance(n, int))
    return out


def counts(trials) -> dict[str, int]:
    """States of the search trials (the final re-runs and the extras left out; a trial whose worker
    died and that was retried counts as interrupted: its retry counts)."""
    TS = _states()
    out = {"complete": 0, "pruned": 0, "failed": 0, "interrupted": 0, "running": 0, "total": 0, "extra": 0}
    again = retried(trials)
    for t in trials:
        if is_final(t):
            continue
        if is_extra(t):
            out["extra"] += 1
            continue
        if t.state == TS.COMPLETE:
            out["complete"] += 1
        elif t.state == TS.PRUNED:
            out["pruned"] += 1
        elif t.state == TS.FAIL:
            out["failed"] += 1
            if t.user_attrs.get("interrupted") or t.number in again:
                out["interrupted"] += 1
        elif t.state == TS.RUNNING:
            out["running"] += 1
        else:
            continue  # WAITING: enqueued, not started
        out["total"] += 1
    return out


def done_search(trials) -> int:
    """Search trials that count against the budget: finished, not interrupted, not final."""
    c = counts(trials)
    return c["complete"] + c["pruned"] + c["failed"] - c["interrupted"]


def worker_id() -> str:
    """This process as the owner of trials: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    try:  # a killed child not yet reaped by its parent is a zombie: dead for us
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().split(b")")[-1].split()[0] != b"Z"
    except OSError:
        return True


def has_heartbeat(storage) -> bool:
    """The storage beats for running trials (a database server opened with a heartbeat interval)."""
    try:
        from optuna.storages._heartbeat import is_heartbeat_enabled

        return bool(is_heartbeat_enabled(storage))
    except Exception:
        return False


def _study_storage(study, storage):
    return getattr(study, "_storage", None) or storage


def _workers(study, storage) -> Optional[dict[str, dict]]:
    """The processes registered as working on the study ({host:pid: record}), or None when the
    study has no register (made before advisor kept one, or by plain Optuna)."""
    try:
        attrs = _study_storage(study, storage).get_study_system_attrs(study._study_id)
    except Exception:
        return None
    found = {k[len(WORKER_ATTR):]: v for k, v in attrs.items() if k.startswith(WORKER_ATTR)}
    return {k: v for k, v in found.items() if isinstance(v, dict)} if found else None


def _nobody_else(study, storage, stopping: Optional[str]) -> bool:
    """True when no process other than `stopping` can still be running trials of the study: every
    registered process is on this host and has ended or is dead. A process on another host (its
    pid cannot be checked) or an unregistered study: False (its trials wait for the grace period)."""
    workers = _workers(study, storage)
    if workers is None:
        return False
    host = socket.gethostname()
    for key, record in workers.items():
        if key == stopping or record.get("ended"):
            continue
        h, _, pid = key.rpartition(":")
        if h != host or not pid.isdigit() or _alive(int(pid)):
            return False
    return True


def fail_stale(study, storage, stopping: Optional[str] = None) -> list[int]:
    """Mark FAIL (interrupted) the RUNNING trials whose process is gone: on this host, the
    recorded pid is dead; elsewhere, a storage heartbeat older than its grace period. A trial
    with no owner yet (its process stopped between creating it and recording itself) is gone when
    no registered process that could have created it is left (see `working`), else after
    OWNERLESS_GRACE_S. `stopping`: this process (host:pid), which is stopping: its trials are gone."""
    TS = _states()
    host = socket.gethostname()
    failed = []
    heartbeat = has_heartbeat(storage)
    # a storage with a heartbeat (a database server) fails the trials of dead workers itself and
    # retries each once (Optuna's heartbeat callback): only this process's own are marked here
    running = [] if heartbeat and stopping is None else study.get_trials(deepcopy=False, states=(TS.RUNNING,))
    if heartbeat and stopping is not None:
        running = [t for t in running if str(t.user_attrs.get("worker", "")) == stopping]
    # read after the trials: a process registers before it creates a trial, so whoever created
    # one of them is in the register read now
    orphaned = any(not t.user_attrs.get("worker") for t in running) and _nobody_else(study, storage, stopping)
    for t in running:
        owner = str(t.user_attrs.get("worker", ""))
        h, _, pid = owner.rpartition(":")
        started = t.datetime_start.timestamp() if t.datetime_start else 0.0
        if owner:
            dead = owner == stopping or (h == host and pid.isdigit() and not _alive(int(pid)))
        else:
            dead = orphaned or time.time() - started > OWNERLESS_GRACE_S
        if not dead:
            continue
        try:
            storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            storage.set_trial_user_attr(t._trial_id, "fail_reason",
                                        "interrupted: the process running it stopped (killed or crashed)")
            storage.set_trial_state_values(t._trial_id, TS.FAIL)
            failed.append(t.number)
        except Exception:  # another process finished it meanwhile
            continue
    if heartbeat:
        import optuna

        with contextlib.suppress(Exception):
            before = {t.number for t in study.get_trials(deepcopy=False, states=(TS.RUNNING,))}
            optuna.storages.fail_stale_trials(study)
            after = {t.number for t in study.get_trials(deepcopy=False, states=(TS.RUNNING,))}
            failed += sorted(before - after)
    return failed


@contextlib.contextmanager
def working(study, storage=None):
    """Run trials of the study as a registered worker (study system attribute
    `advisor_worker:host:pid`, written before the first trial is created, marked ended after). So
    that a trial never stays RUNNING for a process that is gone: when the block ends otherwise
    than normally (Ctrl-C, an error), the trials this process leaves running are marked FAIL
    (interrupted), and a resume knows whether the process that left a trial without owner can
    still be running."""
    me = worker_id()
    st = _study_storage(study, storage)
    key = WORKER_ATTR + me
    since = time.time()
    st.set_study_system_attr(study._study_id, key, {"since": since, "ended": False})
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            fail_stale(study, storage or st, stopping=me)
        raise
    finally:
        with contextlib.suppress(Exception):
            st.set_study_system_attr(study._study_id, key, {"since": since, "ended": True})
