"""Acting on the user's own model (optional, needs torch): the LR range test, the search.

Nothing here imports torch at module level; the functions that need it import it when called,
so `advisor diagnose` and friends stay fast.

    from advisor.act import Task, load_task, resolve_device, range_test, suggest
"""

from __future__ import annotations

from advisor.act.task import Task, load_task

__all__ = ["Task", "load_task", "range_test", "resolve_device", "suggest"]


def __getattr__(name: str):  # the torch-backed names load on first use
    if name == "resolve_device":
        from advisor.act.device import resolve_device

        return resolve_device
    if name in ("range_test", "suggest"):
        from advisor.act import lr_find

        return getattr(lr_find, name)
    raise AttributeError(f"module 'advisor.act' has no attribute {name!r}")
