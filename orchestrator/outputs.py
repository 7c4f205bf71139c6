"""Where a command writes what the user asked for (a plot, manifests, a report): checked before the work starts,
so that an evaluation of several minutes does not end in "permission denied", and every bad place gets one
message naming it and the fix."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import UserError

_FIX = "give a place you can write to (e.g. under your home or the current folder)"


def _probe(folder: Path, flag: str, given: str | os.PathLike) -> None:
    """Make `folder` if needed and prove a file can be written in it (permissions, read-only or special
    filesystems such as /proc, a full disk)."""
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"`{flag} {given}`: {parent} is a file, not a folder", fix="give a path in a folder")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"`{flag} {given}`: cannot make the folder {folder} ({e.strerror or e})", fix=_FIX) from None
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".rlo-probe-"):
            pass
    except OSError as e:
        raise UserError(f"`{flag} {given}`: cannot write in {folder} ({e.strerror or e})", fix=_FIX) from None


STDOUT = "-"  # `-o -`: what a command writes goes to stdout (and nothing else does)


def is_stdout(path: str | os.PathLike | None) -> bool:
    """Whether an output flag asks for stdout (`-o -`) rather than a file or folder named so."""
    return path is not None and str(path) == STDOUT


def output_file(path: str | os.PathLike, *, flag: str, example: str) -> Path:
    """A file to write (an existing regular file is replaced). Returns it as a Path."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise UserError(f"`{flag} {path}` is a folder; it takes a file", fix=f"give a file name, e.g. `{p / example}`")
    if p.exists() and not p.is_file():
        raise UserError(f"`{flag} {path}` exists and is not a regular file", fix=f"give a file name, e.g. `{example}`")
    _probe(p.parent, flag, path)
    return p


def output_dir(path: str | os.PathLike, *, flag: str) -> Path:
    """A folder to write files into (made if missing; files of the same names in it are replaced)."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise UserError(
            f"`{flag} {path}` is a file; it takes a folder (the files are written into it)",
            fix=f"give a folder that does not exist yet or is one, e.g. `{p.parent / (p.stem + '-rendered')}`",
        )
    _probe(p, flag, path)
    return p
