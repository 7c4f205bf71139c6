"""Typed errors. A `UserError` is a mistake the user can fix: the CLI prints it as one paragraph, without a
traceback (set ``RLO_DEBUG=1`` to see the stack), and exits with code 2."""

from __future__ import annotations

import contextlib
import difflib
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence


class RloError(Exception):
    """Base of every error this project raises on purpose."""

    exit_code = 1


class UserError(RloError):
    """Bad input: a spec, a flag, a resource request that cannot be met. Exit code 2."""

    exit_code = 2

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.fix}" if self.fix else self.message


class SpecError(UserError):
    """A spec that does not validate. Carries where (file, field path) and every problem found.

    The message lists the first `MAX_LISTED` problems and says how many more there are, and cuts every path,
    description and fix to `MAX_TEXT` characters: a huge bad spec must not print a huge message."""

    MAX_LISTED = 20
    MAX_TEXT = 500

    def __init__(self, source: str, problems: Sequence[tuple[str, str, str | None]]) -> None:
        # problems: (field path, what is wrong, fix)
        self.source = source
        self.problems = problems
        n = len(problems)
        lines = [f"{shorten(source, self.MAX_TEXT)}: the spec is not valid ({n} problem{'s' if n != 1 else ''})"]
        for path, what, fix in problems[: self.MAX_LISTED]:
            what = shorten(what, self.MAX_TEXT)
            lines.append(f"  at `{shorten(path, self.MAX_TEXT)}`: {what}" if path else f"  {what}")
            if fix:
                lines.append(f"    fix: {shorten(fix, self.MAX_TEXT)}")
        if n > self.MAX_LISTED:
            more = n - self.MAX_LISTED
            lines.append(f"  ... and {more} more problem{'s' if more != 1 else ''} (fix these first)")
        self.message = "\n".join(lines)
        self.fix = None
        Exception.__init__(self, self.message)


def shorten(text: object, limit: int = 60) -> str:
    """`text` cut to about `limit` characters, for echoing what a user gave inside a message."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


class PlanError(UserError):
    """A cluster/job combination that can never run (checked before anything is submitted)."""


class RunNotFound(UserError):
    pass


class EngineError(RloError):
    """The engine (Ray) could not be reached or did something unexpected."""


class JobFailed(RloError):
    """The job ended in a state other than SUCCEEDED."""


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A "did you mean `x`?" hint, or None when nothing is close."""
    match = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean `{match[0]}`?" if match else None


# --- what a command shows of an error ---------------------------------------------------------------------------


def run_main(fn: Callable[[], int]) -> int:
    """Run `fn`, turning errors into one clear message and an exit code (RLO_DEBUG=1 shows the stack)."""
    debug = os.environ.get("RLO_DEBUG") not in (None, "", "0")
    try:
        return fn() or 0
    except KeyboardInterrupt:
        print("\n[rlo] interrupted", file=sys.stderr)
        return 130
    except RloError as e:
        if debug:
            traceback.print_exc()
        kind = "error" if isinstance(e, UserError) else type(e).__name__
        print(f"rlo: {kind}: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        quiet_stdout()  # `rlo list | head`: the reader had enough; not an error
        return 0
    except OSError as e:
        if e.filename is None:
            return _internal_error(e, debug)
        # A file or folder the user named (or one of the tool's own) cannot be used: say which and why.
        if debug:
            traceback.print_exc()
        target = e.filename if e.filename2 is None else f"{e.filename} -> {e.filename2}"
        print(
            f"rlo: error: cannot use {target}: {e.strerror or e}\n  fix: check the path and its permissions "
            "(an output must be a file in a writable folder)",
            file=sys.stderr,
        )
        return 2
    except Exception as e:  # a bug of ours: say so, briefly
        return _internal_error(e, debug)


def _internal_error(e: Exception, debug: bool) -> int:
    if debug:
        raise e
    print(f"rlo: internal error: {type(e).__name__}: {e}\n  (set RLO_DEBUG=1 to see the traceback)", file=sys.stderr)
    return 1


def quiet_stdout() -> None:
    """After a closed pipe, point stdout at /dev/null so that Python's flush at exit raises nothing."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
