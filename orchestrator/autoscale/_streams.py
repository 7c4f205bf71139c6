"""Random streams shared by the scalar and the batched simulator.

The batched env must reproduce, step for step, what N scalar envs draw. One ``Generator`` per env asked for
one number at a time would make the batch as slow as N scalar envs, so each env's randomness is split into
*streams*, one per kind of draw, each its own ``Generator`` derived from the env's seed:

    EPISODE        7 uniforms per episode (load-profile parameters)
    LOAD_NOISE     1 standard normal per step (multiplicative load noise)
    SPIKE_UNIFORM  2 uniforms per spike (delay, height)
    SPIKE_NORMAL   1 standard normal per spike (log-width)
    CAPACITY       1 standard normal per step, plus 1 at reset (fleet capacity)

Because a stream only ever holds one kind of draw, reading it in blocks gives the same numbers as reading it
one by one (NumPy fills arrays sequentially), so both envs pre-draw blocks: the scalar env takes one number
at a time, the batched env a block of steps for all its envs at once. Which stream a draw comes from never
depends on the order of the other draws, so the two may compute in different orders and still agree
exactly. (Spike draws go through the same per-env block code in both, ``load._SpikeDraws``.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EPISODE, LOAD_NOISE, SPIKE_UNIFORM, SPIKE_NORMAL, CAPACITY = range(5)

# Rows per refill of the per-step normals; a refill costs one Generator call per env.
NORMAL_BLOCK = 1024

SeedLike = int | np.integer | np.random.SeedSequence | np.random.Generator | None


def as_seed_sequence(seed: SeedLike) -> np.random.SeedSequence:
    """The root ``SeedSequence`` of one env. ``None`` draws fresh OS entropy."""
    if seed is None:
        return np.random.SeedSequence()
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, np.random.Generator):
        # Consume from the caller's generator so two simulators built from it differ, reproducibly.
        return np.random.SeedSequence(seed.integers(0, 2**63, size=4).tolist())
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool | np.bool_) and seed >= 0:
        return np.random.SeedSequence(int(seed))
    raise ValueError(f"seed must be a non-negative integer, a numpy SeedSequence or Generator, or None; got {seed!r}.")


def stream_generator(root: np.random.SeedSequence, stream: int) -> np.random.Generator:
    """Generator of one stream of one env. Derived by spawn key, so it does not depend on how many
    children were spawned from ``root`` before (``SeedSequence.spawn`` would)."""
    child = np.random.SeedSequence(entropy=root.entropy, spawn_key=(*root.spawn_key, stream), pool_size=root.pool_size)
    return np.random.Generator(np.random.PCG64(child))


def seed_sequences(seed: int | Sequence[SeedLike] | None, n: int) -> list[np.random.SeedSequence]:
    """Roots for ``n`` envs, following Gymnasium's vector convention: an int ``s`` seeds env ``i`` with
    ``s + i``; a sequence gives each env its own seed; ``None`` gives independent fresh entropy."""
    if seed is None:
        return np.random.SeedSequence().spawn(n)
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool | np.bool_):
        return [as_seed_sequence(int(seed) + i) for i in range(n)]
    if isinstance(seed, Sequence | np.ndarray) and not isinstance(seed, str | bytes):
        if len(seed) != n:
            raise ValueError(f"got {len(seed)} seeds for {n} envs; pass one seed per env, or one int.")
        return [as_seed_sequence(s) for s in seed]
    raise ValueError(f"seed must be an int, a sequence of {n} seeds, or None; got {seed!r}.")


class LockstepNormals:
    """Standard normals for envs that all draw at the same moments: one per env per :meth:`next`, or a
    block of steps at once with :meth:`take`.

    The buffer is env-major (one contiguous row per generator, filled in one call each); :meth:`rewind`
    gives back values taken but not used (the batched env pre-computes blocks of steps and must return the
    unused part when an episode is reset early, so that its streams stay where the scalar env's are).
    """

    def __init__(self, generators: Sequence[np.random.Generator], block: int = NORMAL_BLOCK) -> None:
        self._generators = list(generators)
        self._block = block
        self._buffer = np.empty((len(self._generators), block))
        self._pos = block

    def _refill_if_empty(self) -> None:
        if self._pos == self._block:
            for gen, row in zip(self._generators, self._buffer, strict=True):
                gen.standard_normal(out=row)
            self._pos = 0

    def next(self) -> np.ndarray:
        """One normal per env, shape (n,). A view that a later refill overwrites: use it at once."""
        self._refill_if_empty()
        column = self._buffer[:, self._pos]
        self._pos += 1
        return column

    def take(self, k: int) -> np.ndarray:
        """The next ``m`` normals per env, 1 <= m <= k (fewer when the buffer runs out), shape (n, m)."""
        self._refill_if_empty()
        m = min(k, self._block - self._pos)
        block = self._buffer[:, self._pos : self._pos + m]
        self._pos += m
        return block

    def rewind(self, k: int) -> None:
        """Give back the last ``k`` values of each env; they must all come from the current buffer."""
        if not 0 <= k <= self._pos:
            raise RuntimeError(f"cannot rewind {k} values: only {self._pos} were taken from this buffer")
        self._pos -= k


class ScalarNormals:
    """Standard normals of one env's stream, one float per :meth:`next` (the scalar env's fast path; the
    same sequence as a one-env :class:`LockstepNormals`)."""

    def __init__(self, generator: np.random.Generator, block: int = NORMAL_BLOCK) -> None:
        self._generator = generator
        self._block = block
        self._values: list[float] = []
        self._pos = 0

    def next(self) -> float:
        if self._pos == len(self._values):
            self._values = self._generator.standard_normal(self._block).tolist()
            self._pos = 0
        value = self._values[self._pos]
        self._pos += 1
        return value
