"""64-bit string hashes used by the streaming merge: stable, slice- and chunk-independent, nulls apart."""

import numpy as np
import pyarrow as pa

from quilt_hf.publishing import hashing
from quilt_hf.publishing.hashing import MISSING, string_hashes


def test_hashes_depend_on_the_string_only(monkeypatch):
    values = [f"caption {i}: é {'x' * (i % 40)}" for i in range(3000)] + ["", None, "ab", "ba", "ab"]
    array = pa.array(values, pa.string())
    whole = string_hashes(array)
    assert whole[-5] != MISSING and whole[-4] == MISSING  # "" is a value, None is missing
    assert whole[-3] == whole[-1] and whole[-3] != whole[-2]  # equal strings, equal hashes; order matters
    assert len(set(whole[:3000].tolist())) == 3000
    assert (string_hashes(array.slice(1000)) == whole[1000:]).all()  # an offset slice
    chunked = pa.chunked_array([array.slice(0, 1234), array.slice(1234)])
    assert (string_hashes(chunked) == whole).all()
    assert (string_hashes(array.cast(pa.large_string())) == whole).all()
    monkeypatch.setattr(hashing, "CHUNK_BYTES", 100)  # many small pieces: same hashes
    assert (string_hashes(array) == whole).all()
    assert string_hashes(pa.array(["", None]), empty_is_missing=True).tolist() == [0, 0]
    assert not np.array_equal(string_hashes(array, seed=1)[:10], whole[:10])
    # Stable across runs and machines (no per-process salt, unlike Python's hash): a pinned value.
    assert int(string_hashes(pa.array(["quilt"]))[0]) == 1267106905196308873
