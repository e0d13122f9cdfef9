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

from advisor.errors import AdvisorError  # noqa: E402

# name, module, function, its examples: a command's module is imported only when the command
# is the one being run (or for --help), so `advisor diagnose` does not load plan or search.
COMMANDS = (
    ("diagnose", "advisor.commands.diagnose", "diagnose", "EPILOG"),
    ("plan", "advisor.commands.plan", "plan", "EPILOG"),
    ("check", "advisor.commands.check", "check", "EPILOG"),
    ("audit", "advisor.commands.audit", "audit", "EPILOG"),
    ("lr-find", "advisor.act.cli_lr_find", "lr_find", "EPILOG"),
    ("search", "advisor.commands.search", "search", "EPILOG"),
    ("worker", "advisor.commands.search", "worker", "WORKER_EPILOG"),
    ("tune", "advisor.commands.tune", "tune", "EPILOG"),
    ("hardware", "advisor.commands.plan", "hardware", "HARDWARE_EPILOG"),
    ("explain", "advisor.commands.knowledge", "explain", "EXPLAIN_EPILOG"),
    ("rules", "advisor.commands.knowledge", "list_rules", "RULES_EPILOG"),
    ("watch", "advisor.commands.watch", "watch", "EPILOG"),
)


def build_app(only: str | None = None) -> typer.Typer:
    """The Typer app with every command, or with just `only` (what this process runs)."""
    import importlib

    app = typer.Typer(
        name="advisor",
        help="An expert system for hyperparameter tuning: what is wrong with this run, what to tune first.",
        add_completion=False,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )

    @app.callback()
    def _group() -> None:
        """An expert system for hyperparameter tuning: what is wrong with this run, what to tune first."""

    for name, module, function, epilog in COMMANDS:
        if only is None or name == only:
            mod = importlib.import_module(module)
            app.command(name=name, epilog=getattr(mod, epilog))(getattr(mod, function))
    return app


def __getattr__(name: str):  # `advisor.cli.app`: the full app, built on first use
    if name == "app":
        globals()["app"] = build_app()
        return globals()["app"]
    raise AttributeError(f"module 'advisor.cli' has no attribute {name!r}")


def _requested() -> str | None:
    args = sys.argv[1:]
    names = {c[0] for c in COMMANDS}
    return args[0] if args and args[0] in names else None


def main() -> None:
    try:
        app = globals().get("app") or build_app(_requested())
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
