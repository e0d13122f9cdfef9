"""A call with a time limit: a storage server that does not answer must not hang a command. Its
own module, free of heavy imports (pandas): every search worker process opens a storage with it."""

from __future__ import annotations

from typing import Any

from advisor.errors import InputError


def with_deadline(fn, seconds: float, source: str, hint: str = " (--timeout)"):
    """Run fn in a daemon thread and give up after `seconds`: a storage server that does not
    answer (or a name lookup that hangs) must not hang the command."""
    import threading

    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True, name="advisor-storage-probe")
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise InputError(f"{source}: no answer from the storage within {seconds:g} s{hint}")
    if "error" in box:
        raise box["error"]
    return box.get("value")
