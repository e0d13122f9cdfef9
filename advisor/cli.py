"""The command line: one Typer app, one module per command in advisor/commands/.

Domain errors become one line on stderr and exit code 2 here, and only here.
"""

from __future__ import annotations

import os
import sys

# The advisor process loads no pydantic plugins; not scanning the installed packages for them
# saves ~10 ms of the start-up that `diagnose` and `check` must keep short.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import typer  # noqa: E402

from advisor.act import cli_lr_find  # noqa: E402
from advisor.commands import audit, check, diagnose, knowledge, plan, search  # noqa: E402
from advisor.errors import AdvisorError  # noqa: E402

app = typer.Typer(
    name="advisor",
    help="An expert system for hyperparameter tuning: what is wrong with this run, what to tune first.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

app.command(epilog=diagnose.EPILOG)(diagnose.diagnose)
app.command(epilog=plan.EPILOG)(plan.plan)
app.command(epilog=check.EPILOG)(check.check)
app.command(epilog=audit.EPILOG)(audit.audit)
app.command(name="lr-find", epilog=cli_lr_find.EPILOG)(cli_lr_find.lr_find)
app.command(epilog=search.EPILOG)(search.search)
app.command(epilog=search.WORKER_EPILOG)(search.worker)
app.command(epilog=plan.HARDWARE_EPILOG)(plan.hardware)
app.command(epilog="Examples:\n\n  advisor explain D301\n\n  advisor explain overfitting")(knowledge.explain)
app.command(name="rules", epilog="Examples:\n\n  advisor rules\n\n  advisor rules --json")(knowledge.list_rules)


def main() -> None:
    try:
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except AdvisorError as exc:
        print(f"advisor: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("advisor: aborted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # usage errors and anything unforeseen: a short message, exit 2
        if isinstance(exc, typer.TyperException) and hasattr(exc, "show"):
            exc.show()
            sys.exit(getattr(exc, "exit_code", 2))
        if os.environ.get("ADVISOR_DEBUG"):
            raise
        print(f"advisor: internal error: {type(exc).__name__}: {exc} "
              "(set ADVISOR_DEBUG=1 for the traceback)", file=sys.stderr)
        sys.exit(2)
