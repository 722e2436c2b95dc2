"""64-bit hashes of Arrow string columns, vectorised with numpy (no Python object per row).

Merging a million rows needs to know which rows share an image id, a video or a caption without holding a
dictionary of every distinct string; a fixed-size hash per row (8 bytes) does. The hash is a polynomial of the
UTF-8 bytes modulo 2**64 finished by the SplitMix64 mixer, seeded so that different seeds give independent
hashes. It is stable across runs and machines, is not cryptographic, and can collide: callers either only
group by it (a collision joins two split groups) or compare the strings before dropping anything.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

MISSING = np.uint64(0)  #: the hash of a null (and, with ``empty_is_missing``, of an empty string)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_BASES = {0: np.uint64(0x100000001B3), 1: np.uint64(0x9E3779B97F4A7C15)}
_POWERS: dict[int, np.ndarray] = {}
CHUNK_BYTES = 1 << 20


def _powers(seed: int, length: int) -> np.ndarray:
    """``base**k mod 2**64`` for k < at least ``length`` (cached, grown by doubling)."""
    cached = _POWERS.get(seed)
    if cached is not None and len(cached) >= length:
        return cached
    size = 1 << max(4, int(np.ceil(np.log2(max(length, 2)))))
    powers = np.empty(size, np.uint64)
    powers[0] = 1
    done = 1
    with np.errstate(over="ignore"):
        while done < size:
            step = min(done, size - done)
            powers[done : done + step] = powers[:step] * (powers[done - 1] * _BASES[seed])
            done += step
    _POWERS[seed] = powers
    return powers


def mix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: spreads every input bit over the output (uint64 in, uint64 out)."""
    with np.errstate(over="ignore"):
        values = values ^ (values >> np.uint64(30))
        values = values * _MIX1
        values = values ^ (values >> np.uint64(27))
        values = values * _MIX2
        return values ^ (values >> np.uint64(31))


def string_hashes(array: pa.Array | pa.ChunkedArray, *, seed: int = 0, empty_is_missing: bool = False) -> np.ndarray:
    """A uint64 hash of each string of ``array``; :data:`MISSING` (0) for nulls (and empty strings when
    ``empty_is_missing``); never 0 for a present string.

    Args:
        array (`pyarrow.Array` or `pyarrow.ChunkedArray`): strings (any other type is cast to string).
        seed (`int`): 0 or 1: two independent hash functions.
        empty_is_missing (`bool`): hash ``""`` as missing.

    Returns:
        `np.ndarray`: uint64, one per row.
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks else pa.array([], pa.string())
    if not pa.types.is_large_string(array.type):
        array = array.cast(pa.large_string())
    size = len(array)
    hashes = np.zeros(size, np.uint64)
    if size == 0:
        return hashes
    offsets = np.frombuffer(array.buffers()[1], np.int64)[array.offset : array.offset + size + 1]
    start = 0
    while start < size:  # slices of about CHUNK_BYTES bytes: the temporaries are 8 bytes per byte of text
        stop = int(np.searchsorted(offsets, offsets[start] + CHUNK_BYTES, side="right")) - 1
        stop = min(size, max(stop, start + 1))
        hashes[start:stop] = _polynomial(array.buffers()[2], offsets[start : stop + 1], seed)
        start = stop
    lengths = np.diff(offsets)
    with np.errstate(over="ignore"):
        hashes = mix64(hashes + lengths.astype(np.uint64) * _MIX2 + np.uint64(seed)) | np.uint64(1)
    present = array.is_valid().to_numpy(zero_copy_only=False)
    if empty_is_missing:
        present &= lengths > 0
    hashes[~present] = MISSING
    return hashes


def _polynomial(buffer, offsets: np.ndarray, seed: int) -> np.ndarray:
    """sum(byte[k] * base**k) mod 2**64 of each string between consecutive ``offsets`` of ``buffer``."""
    lengths = np.diff(offsets)
    start, stop = int(offsets[0]), int(offsets[-1])
    if stop <= start:
        return np.zeros(len(lengths), np.uint64)
    data = np.frombuffer(buffer, np.uint8)[start:stop].astype(np.uint64)
    relative = offsets[:-1] - start
    position = np.arange(stop - start, dtype=np.int64) - np.repeat(relative, lengths)
    with np.errstate(over="ignore"):
        data *= _powers(seed, int(lengths.max()))[position]
        running = np.empty(stop - start + 1, np.uint64)
        running[0] = 0
        np.cumsum(data, dtype=np.uint64, out=running[1:])
        return running[relative + lengths] - running[relative]
