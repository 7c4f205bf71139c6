"""The registry's SQLite file: that its place is usable (a folder, writable), its connections (one transaction
each; SQLite's errors said as what to do about the file), and its schema, migrated forward when it is opened."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import RloError, UserError
from .registry_schema import migrate


class RegistryError(UserError):
    """The registry file cannot be used as it is (not a database, damaged, read-only, a folder...)."""


_MOVE_ASIDE = "move it aside (`mv {p} {p}.bad`): a new, empty registry is made at the next command"
_PICK_ANOTHER = "or point RLO_REGISTRY (or RLO_HOME) at another place"


class RegistryDatabase:
    """The SQLite file at `path` (made, and migrated to the current schema, when opened)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._check_place()
        self._migrate()

    def _check_place(self) -> None:
        """The registry's folder and file must be what they claim to be before SQLite touches them."""
        p = self.path
        for parent in (p.parent, *p.parent.parents):
            if parent.exists() and not parent.is_dir():
                raise RegistryError(
                    f"the registry {p} cannot be made: {parent} is a file, not a folder",
                    fix=f"RLO_HOME / RLO_REGISTRY must name a folder / a file in a folder; remove or rename {parent}, "
                    + _PICK_ANOTHER,
                )
            if parent.is_dir():
                break
        if p.is_dir():
            raise RegistryError(
                f"the registry {p} is a folder, not a database file",
                fix=f"point RLO_REGISTRY at a file (e.g. {p / 'registry.db'}), or remove the folder",
            )
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RegistryError(
                f"the registry's folder {p.parent} cannot be made: {e.strerror}", fix=_PICK_ANOTHER.removeprefix("or ")
            ) from None

    def check_writable(self) -> None:
        """Refuse early (before anything is started or submitted) when the registry cannot be written."""
        for target in (self.path, self.path.parent):
            if target.exists() and not os.access(target, os.W_OK):
                raise RegistryError(
                    f"the registry {self.path} is read-only ({target} is not writable), so no run can be recorded",
                    fix=f"make it writable (`chmod u+w {target}`), " + _PICK_ANOTHER,
                )

    def _translate(self, e: sqlite3.Error) -> RloError:
        text = str(e)
        p = self.path
        if "readonly" in text or "read-only" in text:
            return RegistryError(
                f"the registry {p} is read-only ({text})",
                fix=f"make it writable (`chmod u+w {p}` and its folder), " + _PICK_ANOTHER,
            )
        if "unable to open" in text:
            return RegistryError(
                f"the registry {p} cannot be opened ({text})",
                fix=f"check that {p.parent} is a writable folder, " + _PICK_ANOTHER,
            )
        if "locked" in text or "busy" in text:
            return RloError(f"the registry {p} is locked by another `rlo` process for over 30 s ({text})")
        if isinstance(e, sqlite3.DatabaseError):  # not a database, malformed, truncated
            return RegistryError(
                f"the registry {p} is damaged or not a registry database ({text})",
                fix=_MOVE_ASIDE.format(p=p) + "; the runs' folders and the jobs on Ray are not affected",
            )
        return RloError(f"the registry {p} failed: {type(e).__name__}: {text}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A connection in one transaction (BEGIN IMMEDIATE): committed when the block ends, rolled back when it
        raises. SQLite's errors about the file come out as RegistryError / RloError saying what to do."""
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as e:
            raise self._translate(e) from None
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError):
                raise  # our own mistake, not the file's
            raise self._translate(e) from None
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def _migrate(self) -> None:
        with self.transaction() as c:
            if not migrate(c):
                raise RegistryError(
                    f"{self.path} is an SQLite database but not a registry of rl-orchestrator",
                    fix=_MOVE_ASIDE.format(p=self.path) + ", " + _PICK_ANOTHER,
                )

    @property
    def schema_version(self) -> int:
        with self.transaction() as c:
            return c.execute("PRAGMA user_version").fetchone()[0]
