"""What every command module of `rlo` shares: options and arguments declared as argparse declared them (no
`[default: ...]` appended to the help text), one place for a command's help, and mutually exclusive flags."""

from typing import Any

import typer

# Plain help (click's formatter, no rich panels), `-h` as well as `--help`, no shell-completion options.
APP_SETTINGS: dict[str, Any] = {
    "add_completion": False,
    "pretty_exceptions_enable": False,
    "rich_markup_mode": None,
    "no_args_is_help": True,
    "context_settings": {"help_option_names": ["-h", "--help"]},
}


def new_app(help_: str | None = None) -> typer.Typer:
    """A (sub-)app: a command group, or a set of top-level commands merged into `rlo`."""
    return typer.Typer(help=help_, **APP_SETTINGS)


def opt(*decls: str, help: str | None = None, **kw: Any) -> Any:  # noqa: A002 - typer's own keyword
    return typer.Option(*decls, help=help, show_default=False, **kw)


def arg(metavar: str, help: str | None = None, **kw: Any) -> Any:  # noqa: A002
    return typer.Argument(metavar=metavar, help=help, show_default=False, **kw)


def command(app: typer.Typer, name: str, help_: str, **kw: Any):
    """Register a command under `name`; its help is both the one-line summary and the description."""
    return app.command(name, help=help_, short_help=help_, **kw)


def exclusive(**flags: object) -> None:
    """At most one of `flags` (flag text -> its value) is given, as argparse's mutually exclusive group says."""
    given = [f for f, v in flags.items() if v not in (None, False)]
    if len(given) > 1:
        raise typer.BadParameter(f"argument {given[1]}: not allowed with argument {given[0]}")
