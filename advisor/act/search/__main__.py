"""`python -m advisor.act.search worker URL STUDY INDEX DEVICE`: one worker process of --workers."""

from __future__ import annotations

import sys

from advisor.act.search.run import run_worker
from advisor.errors import AdvisorError


def _main(argv: list[str]) -> int:
    """`python -m advisor.act.search worker URL STUDY INDEX DEVICE`: a worker process of --workers."""
    if len(argv) != 5 or argv[0] != "worker":
        print("usage: python -m advisor.act.search worker URL STUDY INDEX DEVICE", file=sys.stderr)
        return 2
    _, url, name, index, device = argv
    try:
        run_worker(url, name, index=int(index), device_name=device)
    except AdvisorError as exc:
        print(f"advisor worker: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main(sys.argv[1:]))
