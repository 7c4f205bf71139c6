"""What a job ships: the one walk of a job's folder (`job.source_dir`, else the entry script's folder) that the Ray
working_dir upload, the KubeRay ConfigMap and the Azure ML code snapshot all take, so they ship the same files.

The walk mirrors Ray's own packing (ray/_private/runtime_env/packaging.py, `_dir_travel` + `_zip_files`): the same
excludes (the patterns below, the tool's state, and each folder's `.gitignore` / `.rayignore`, matched with Ray's
own gitwildmatch), symbolic links followed, FIFOs, sockets and dangling links left out. What Ray would do and we
do not allow:
- a link whose target is outside the job's folder (`ln -s /etc/shadow x`, `ln -s ../.. up`, any absolute target
  elsewhere) is refused, naming the link and its target: Ray and the Azure ML SDK would ship the target's content.
  A link that stays inside the folder is fine and ships as its target's content (Ray zips the content, not the
  link); a link into the tool's own state (registry, Ray's auth token) is refused like an escaping one.
- a folder link that points at one of its own parents is refused (Ray would follow it until the path is too long).
- a folder over Ray's limit is refused before anything is packed, and the walk stops as soon as the limit is
  passed, so `/` or a home directory is refused in well under a second.
Excluded entries are never looked into, so a link under `.venv/` or a `.gitignore`d folder does not matter.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .contract import contract_env
from .errors import UserError
from .settings import settings
from .tracking import job_env

# Never shipped with a job's folder: virtualenvs, VCS data, caches (Ray's own defaults are a subset).
WORKING_DIR_EXCLUDES = (".git", ".venv", "venv", "__pycache__", "*.pyc", ".pytest_cache", "node_modules")
# Ray refuses a working_dir package of GCS_STORAGE_MAX_SIZE (= GRPC_CPP_MAX_MESSAGE_SIZE, 512 MiB) or more, and it
# zips without compression (ZIP_STORED), so the files' sizes add up to the package's. Not imported: this module is
# in the plan layer (no Ray import); tests/plan/test_shipping.py keeps the two equal.
MAX_PACKAGE_BYTES = 512 * 1024 * 1024
# Ray has no count limit, but a job's folder of more files than this is not code: stop walking and say so.
MAX_PACKAGE_FILES = 50_000
# Ray reads the same variable to stop honouring .gitignore files (it always honours .rayignore).
_IGNORE_GITIGNORE = "RAY_RUNTIME_ENV_IGNORE_GITIGNORE"


@dataclass(frozen=True)
class ShippedFile:
    rel: str  # its path in the job's folder as shipped (through inside links), POSIX
    path: Path  # where to read it
    size: int


@dataclass(frozen=True)
class Package:
    """The files a job ships from `root`, and the exclude patterns that leave the rest out (Ray's `excludes`)."""

    root: Path
    excludes: tuple[str, ...]
    files: tuple[ShippedFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _matcher(lines: Sequence[str]):
    # Ray's own gitwildmatch (vendored in Ray; no other copy is installed), so our excludes match as Ray's do.
    from ray._private.thirdparty.pathspec import PathSpec

    return PathSpec.from_lines("gitwildmatch", lines)


def _ignore_file(folder: Path, name: str):
    p = folder / name
    if not p.is_file():
        return None
    try:
        return folder, _matcher(p.read_text(errors="replace").splitlines())
    except OSError:
        return None


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def walk(
    root: Path,
    excludes: Sequence[str] = WORKING_DIR_EXCLUDES,
    *,
    forbidden: Sequence[Path] = (),
    max_bytes: int = MAX_PACKAGE_BYTES,
    max_files: int = MAX_PACKAGE_FILES,
) -> Package:
    """The files that ship from `root` (see the module's docstring); a UserError for an escaping link, a link
    loop, or a folder over `max_bytes` / `max_files`. `forbidden`: real paths (the tool's state) no link may
    lead into."""
    root = Path(os.path.abspath(root))
    real_root = os.path.realpath(root)
    forbidden_real = [os.path.realpath(p) for p in forbidden]
    top = _matcher(list(excludes))
    gitignore = os.environ.get(_IGNORE_GITIGNORE, "0") != "1"
    files: list[ShippedFile] = []
    total = 0

    def refuse_link(rel: str, target: str, why: str, fix: str) -> UserError:
        return UserError(
            f"`{rel}` in the job's folder {root} is a symbolic link to {target}, {why}",
            fix=f"{fix}, or list the link in a `.gitignore` / `.rayignore` there; nothing outside the job's folder "
            "is shipped",
        )

    # A bad link is reported after the walk, so that a huge folder (`/`, a home directory) is refused for its
    # size first; its target is never looked into.
    bad_links: list[UserError] = []

    def too_big(reason: str) -> UserError:
        return UserError(
            f"the job's folder {root} is too large to ship: {reason} (Ray refuses a working_dir of "
            f"{_mib(MAX_PACKAGE_BYTES)} or more)",
            fix="point `job.source_dir` at a folder that holds only the job's code (or put the entry script in a "
            "folder of its own), or leave big files and folders out with a `.gitignore` / `.rayignore` there",
        )

    # Depth first, sorted like the ConfigMap's keys. Each entry: (path as walked, rel, real path, matchers,
    # real paths of the folders above it: a link back into one of them is a loop).
    def listing(folder: Path, rel: str, matchers: list, parents: tuple[str, ...]):
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            raise UserError(
                f"cannot read {folder} in the job's folder {root}: {e.strerror}",
                fix="make it readable, or leave it out with a `.gitignore` / `.rayignore` entry",
            ) from None
        own = [
            m
            for m in (_ignore_file(folder, ".gitignore") if gitignore else None, _ignore_file(folder, ".rayignore"))
            if m
        ]
        return [(Path(e.path), f"{rel}/{e.name}" if rel else e.name, e, matchers + own, parents) for e in entries]

    stack = listing(root, "", [(root, top)], (real_root,))
    stack.reverse()
    while stack:
        path, rel, entry, matchers, parents = stack.pop()
        if any(spec.match_file(str(path.relative_to(base))) for base, spec in matchers):
            continue
        try:
            is_link = entry.is_symlink()
            st = entry.stat()  # follows links, as Ray does
        except OSError:
            continue  # a dangling link (Ray's `is_file()` / `is_dir()` are both false): nothing ships
        real: str | None = None
        if is_link:
            real = os.path.realpath(path)
            target = os.readlink(path)
            if not _inside(real, real_root):
                bad_links.append(
                    refuse_link(
                        rel,
                        target,
                        "outside that folder: its content would ship with the job",
                        f"copy what the job needs into {root} instead of linking to it (e.g. `cp --remove-destination "
                        f"{real} {path}` for a file), or remove the link",
                    )
                )
                continue
            if any(_inside(real, f) for f in forbidden_real):
                bad_links.append(
                    refuse_link(
                        rel, target, "inside the tool's own state (registry, Ray's auth token)", "remove the link"
                    )
                )
                continue
        if stat.S_ISDIR(st.st_mode):
            here = real or os.path.realpath(path)
            if is_link and any(_inside(p, here) for p in parents):
                bad_links.append(
                    refuse_link(
                        rel, target, "a folder that contains the link: Ray would follow it forever", "remove the link"
                    )
                )
                continue
            sub = listing(path, rel, matchers, (*parents, here))
            stack.extend(reversed(sub))
        elif stat.S_ISREG(st.st_mode):
            files.append(ShippedFile(rel, path, st.st_size))
            total += st.st_size
            if total >= max_bytes:
                raise too_big(f"{_mib(total)} or more in {len(files):,} files (stopped counting there)")
            if len(files) > max_files:
                raise too_big(f"more than {max_files:,} files ({_mib(total)} counted so far)")
        # FIFOs, sockets, devices: Ray packs only files and folders; reading a FIFO would hang.
    if bad_links:
        raise bad_links[0]
    return Package(root, tuple(excludes), tuple(files))


# --- a spec's package -------------------------------------------------------------------------------------------


def tool_state_in(source: Path, keep: Path | None = None) -> list[Path]:
    """The tool's own state inside `source` (when a job's folder holds RLO_HOME), except what holds `keep`."""

    source = source.resolve()
    keep = keep.resolve() if keep else None
    return [
        p
        for p in settings().state_paths()
        if p.is_relative_to(source) and p != source and not (keep and keep.is_relative_to(p))
    ]


def excludes_for(source: Path, keep: Path | None = None) -> list[str]:
    """gitignore-style patterns (relative to `source`) left out of what ships: the usual junk and the tool's
    state when the folder holds RLO_HOME (`keep`: the entry script, whose folder is never left out)."""
    return list(WORKING_DIR_EXCLUDES) + [
        "/" + p.relative_to(source.resolve()).as_posix() for p in tool_state_in(source, keep)
    ]


def source_dir(spec) -> Path | None:
    """The job's folder as the spec names it (made absolute, links not resolved): `job.source_dir`, else the
    folder holding the entry script as written (for a symlinked script, the link's folder, not its target's)."""
    if spec.job.source_dir:
        p = Path(spec.job.source_dir).expanduser()
        p = Path(os.path.abspath(p if p.is_absolute() else spec.base_dir / p))
        if not p.is_dir():
            raise UserError(f"`job.source_dir` {p} is not a folder", fix="give a folder relative to the spec file")
        return p
    script = spec.resolved_entry_script()
    return script.parent if script else None


def entry_in(script: Path, source: Path | None) -> PurePosixPath | None:
    """The entry script's path inside `source` (the name the user gave it, links not followed), or None when
    the script is not in that folder."""
    if source is None:
        return None
    if script.is_relative_to(source):
        return PurePosixPath(script.relative_to(source).as_posix())
    # The same folders spelled differently (a symlinked parent): compare the folders' real paths, keep the name.
    parent, real_source = Path(os.path.realpath(script.parent)), Path(os.path.realpath(source))
    if parent.is_relative_to(real_source):
        return PurePosixPath((parent.relative_to(real_source) / script.name).as_posix())
    return None


def job_package(spec) -> Package | None:
    """What the spec's job ships (None: nothing, a built-in algorithm without `source_dir`). Refuses escaping
    links, link loops and a folder over Ray's limit, before anything is packed."""
    source = source_dir(spec)
    if source is None:
        return None
    script = spec.resolved_entry_script()
    # The state outside the folder is out of reach already (an escaping link); inside, it is excluded by path,
    # and a link that leads into it is refused.
    return walk(source, excludes_for(source, script), forbidden=tool_state_in(source, script))


# --- how the job is started -------------------------------------------------------------------------------------


def entrypoint(spec) -> str:
    """The job's command on the head: the built-in trainer, or the entry script (by its name inside the job's
    folder) with the spec's `script_args` as flags."""
    job = spec.job
    if job.entry_script is None:
        return "python -u -m entry_scripts.train"
    script = spec.resolved_entry_script()
    rel = entry_in(script, source_dir(spec)) or script
    args = job.script_args
    if isinstance(args, dict):
        argv = []
        for k, v in args.items():
            flag = k if k.startswith("-") else f"--{k}"
            argv += [flag] if v is True else [] if v is False else [flag, v if isinstance(v, str) else json.dumps(v)]
    else:
        argv = list(args)
    return " ".join(["python", "-u", shlex.quote(str(rel)), *map(shlex.quote, map(str, argv))])


def job_env_vars(
    spec, run_id: str, run_dir: str, plan_env: dict[str, str], started_at: float, spec_json: str | None = None
) -> dict[str, str]:
    """The job's environment variables: the tracking server's (a `tracking:` spec; for the job's own MLflow calls
    too), the spec's `job.env_vars`, then the entry-script contract (`orchestrator.contract`), which wins."""

    env = {**job_env(spec), **spec.job.env_vars}
    env.update(contract_env(run_id, run_dir, plan_env, spec_json or json.dumps(spec.to_dict()), started_at))
    return env


def _package_file(name: str) -> str:
    """The `__init__.py` of one of this project's own packages, found without importing it."""
    found = importlib.util.find_spec(name)
    assert found is not None and found.origin is not None, f"`{name}` is a regular package of this project"
    return found.origin


def runtime_env(spec, pkg: Package | None, env_vars: dict[str, str], *, ship_project: bool) -> dict:
    """Ray's runtime_env for the job: its env vars, its folder (`pkg`, from `job_package`: the same walk as the
    renderers', so an escaping link or an oversized folder was refused before Ray packs it), its pip packages,
    and with `ship_project` (a cluster that may not have them) the project's own packages."""
    out: dict = {"env_vars": env_vars}
    if pkg is not None:
        out["working_dir"] = str(pkg.root)
        out["excludes"] = list(pkg.excludes)
    if spec.job.pip:
        out["pip"] = list(spec.job.pip)
    if ship_project:
        # Found, not imported: the job side's packages are not this layer's to load.
        packages = ("orchestrator", "callbacks", "entry_scripts")
        out["py_modules"] = [str(Path(_package_file(name)).parent) for name in packages]
    return out
