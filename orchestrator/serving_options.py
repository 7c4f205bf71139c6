"""The checks of what `rlo deploy` / `deploy()` and `rlo serve` are given, made before anything is looked up or
started: endpoint names, hosts and ports, the serving options, and API keys (given, or in key files).
"""

from __future__ import annotations

import errno
import ipaddress
import math
import numbers
import os
import re
import secrets
import socket
from pathlib import Path

from .errors import UserError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
NAME_PATTERN = re.compile(r"^[a-z0-9][-a-z0-9_.]{0,62}$")
MAX_BATCH_SIZE = 4096  # requests in one forward pass (as many as one request may carry observations)
MAX_BATCH_WAIT_S = 60.0  # longer, and a lone request waits a minute for company
MAX_BODY_MB = 1024.0
HOST_FIX = "give --host an address of this machine: 127.0.0.1 (the default), or 0.0.0.0 for every interface"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise UserError(
            f"endpoint name `{name}` is not usable in a URL",
            fix="use lowercase letters, digits, `-`, `_` and `.` (at most 63, starting with a letter or digit; "
            f"the pattern {NAME_PATTERN.pattern})",
        )
    return name


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_error(e: OSError, host: str, port: int) -> UserError:
    """What a failed bind of an endpoint's address tells the user (taken, or not an address of this machine)."""
    if e.errno == errno.EADDRINUSE:
        return UserError(
            f"cannot serve on {host}:{port}: something else listens there",
            fix="pick another port with --port (or stop what listens there)",
        )
    return UserError(f"cannot serve on {host}:{port}: {e.strerror or e}", fix=HOST_FIX)


def check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise bind_error(e, host, port) from None


def _check_host(host: str) -> None:
    """`host` is an IP address or a name that resolves, and one this machine can listen on (before Ray starts:
    a bad host must not look like a busy port)."""
    if not isinstance(host, str) or not host.strip() or any(c.isspace() for c in host):
        raise UserError(f"--host `{host}` is not a host name or an IP address", fix=HOST_FIX)
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise UserError(f"--host `{host}` does not resolve to an address ({e})", fix=HOST_FIX) from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family) as s:
        try:
            s.bind((addr[0], 0))  # any free port: only whether the address is this machine's
        except OSError as e:
            raise UserError(
                f"--host `{host}` ({addr[0]}) is not an address of this machine: {e.strerror or e}", fix=HOST_FIX
            ) from None


def check_options(
    *,
    host: str | None,
    port: int | None,
    replicas: int,
    num_cpus: float,
    max_batch_size: int,
    batch_wait_timeout_s: float,
    max_body_mb: float | None,
) -> None:
    """The deploy options that can never work, refused before anything is looked up or started."""

    def number(value: float, flag: str, *, integer: bool) -> float:
        kind = numbers.Integral if integer else numbers.Real  # numpy's numbers too
        if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
            raise UserError(
                f"{flag} {value!r} is not {'a whole number' if integer else 'a finite number'}",
                fix=f"give {flag} a {'whole ' if integer else ''}number (`rlo deploy --help` lists the defaults)",
            )
        return value

    if number(replicas, "--replicas", integer=True) < 1:
        raise UserError(f"--replicas {replicas}: an endpoint needs at least 1 replica", fix="--replicas 1 or more")
    if number(num_cpus, "--num-cpus", integer=False) < 0:
        raise UserError(
            f"--num-cpus {num_cpus}: CPUs reserved per replica cannot be negative",
            fix="--num-cpus 0 (the default: reserve none) or more",
        )
    if not 1 <= number(max_batch_size, "--max-batch-size", integer=True) <= MAX_BATCH_SIZE:
        raise UserError(
            f"--max-batch-size {max_batch_size}: the requests batched per forward pass must be 1..{MAX_BATCH_SIZE}",
            fix="--max-batch-size 32 (the default)",
        )
    wait_ms = number(batch_wait_timeout_s, "--batch-wait-ms (batch_wait_timeout_s)", integer=False) * 1000
    if not 0 <= wait_ms <= MAX_BATCH_WAIT_S * 1000:
        raise UserError(
            f"--batch-wait-ms {wait_ms:g}: how long a request waits for others to batch with must be "
            f"0..{MAX_BATCH_WAIT_S * 1000:g} ms",
            fix="--batch-wait-ms 1 (the default)",
        )
    if port is not None and not 1 <= number(port, "--port", integer=True) <= 65535:
        raise UserError(f"--port {port} is not a TCP port", fix=f"give --port 1..65535 (default {DEFAULT_PORT})")
    if max_body_mb is not None and not 0 < number(max_body_mb, "--max-body-mb", integer=False) <= MAX_BODY_MB:
        raise UserError(
            f"--max-body-mb {max_body_mb}: the largest request body must be more than 0 and at most {MAX_BODY_MB} MB",
            fix="leave it out for the default (from the observation size), or give a few MB",
        )
    if host is not None:
        _check_host(host)


def _valid_key(key: str, where: str) -> str:
    key = key.strip()
    if not key:
        raise UserError(f"{where} is empty", fix="put a key in it (or, for a key file, remove it to get a new one)")
    if not re.fullmatch(r"[\x21-\x7e]+", key):
        raise UserError(
            f"{where} holds spaces or characters that an HTTP header cannot carry",
            fix="use printable ASCII without spaces (a key file that does not exist gets a random one)",
        )
    return key


def read_key_file(path: Path) -> str:
    """The key in `path`, or a UserError naming the file and the fix."""
    if path.is_dir():
        raise UserError(
            f"--api-key-file {path} is a folder, not a key file", fix="give the path of a file (it is made if missing)"
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"the API key file {path} is not text", fix="put the key in it as one line of text") from None
    except OSError as e:
        raise UserError(
            f"cannot read the API key file {path}: {e.strerror or e}",
            fix="make it readable by this user (chmod 600), or give another --api-key-file",
        ) from None
    return _valid_key(text, f"the API key file {path}")


def resolve_api_key(api_key: str | None, api_key_file: str | None) -> tuple[str | None, str | None]:
    """(key, key file). A key file that does not exist yet gets a new random key (mode 600)."""
    if api_key and api_key_file:
        raise UserError("give either an API key or an API key file, not both")
    if api_key_file:
        path = Path(api_key_file).expanduser().resolve()
        if not path.exists() and not path.is_symlink():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(secrets.token_urlsafe(32) + "\n")
            except OSError as e:
                raise UserError(
                    f"cannot write a new API key to {path}: {e.strerror or e}",
                    fix="give --api-key-file a path in a folder you can write to",
                ) from None
        return read_key_file(path), str(path)
    if api_key is not None:
        return _valid_key(api_key, "the API key (--api-key)"), None
    return None, None
