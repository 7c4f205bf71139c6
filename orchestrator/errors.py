"""Typed errors. A `UserError` is a mistake the user can fix: the CLI prints it as one paragraph, without a
traceback (set ``RLO_DEBUG=1`` to see the stack), and exits with code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


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
    """A spec that does not validate. Carries where (file, field path) and every problem found."""

    def __init__(self, source: str, problems: list[tuple[str, str, str | None]]) -> None:
        # problems: (field path, what is wrong, fix)
        self.source = source
        self.problems = problems
        lines = [f"{source}: the spec is not valid ({len(problems)} problem{'s' if len(problems) != 1 else ''})"]
        for path, what, fix in problems:
            lines.append(f"  at `{path}`: {what}" if path else f"  {what}")
            if fix:
                lines.append(f"    fix: {fix}")
        self.message = "\n".join(lines)
        self.fix = None
        Exception.__init__(self, self.message)


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
