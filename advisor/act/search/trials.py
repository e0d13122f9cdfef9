"""Trial bookkeeping: states, counts, epochs, trials a killed process left running."""

from __future__ import annotations

import contextlib
import os
import socket
import time


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


def counts(trials) -> dict[str, int]:
    """States of the search trials (the final re-runs left out)."""
    TS = _states()
    out = {"complete": 0, "pruned": 0, "failed": 0, "interrupted": 0, "running": 0, "total": 0}
    for t in trials:
        if is_final(t):
            continue
        if t.state == TS.COMPLETE:
            out["complete"] += 1
        elif t.state == TS.PRUNED:
            out["pruned"] += 1
        elif t.state == TS.FAIL:
            out["failed"] += 1
            if t.user_attrs.get("interrupted"):
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


def fail_stale(study, storage) -> list[int]:
    """Mark FAIL (interrupted) the RUNNING trials whose process is gone: on this host, the
    recorded pid is dead; elsewhere, a storage heartbeat older than its grace period."""
    TS = _states()
    host = socket.gethostname()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TS.RUNNING,)):
        owner = str(t.user_attrs.get("worker", ""))
        h, _, pid = owner.rpartition(":")
        started = t.datetime_start.timestamp() if t.datetime_start else 0.0
        dead = (h == host and pid.isdigit() and not _alive(int(pid))) or (not owner and time.time() - started > 60)
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
    if getattr(storage, "is_heartbeat_enabled", lambda: False)():
        import optuna

        with contextlib.suppress(Exception):
            before = {t.number for t in study.get_trials(deepcopy=False, states=(TS.RUNNING,))}
            optuna.storages.fail_stale_trials(study)
            after = {t.number for t in study.get_trials(deepcopy=False, states=(TS.RUNNING,))}
            failed += sorted(before - after)
    return failed
