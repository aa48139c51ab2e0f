"""monitor.store.float_arrays: the numpy float4[] dumper writes psycopg's bytes, and PostgreSQL
reads them back as the values sent (rounded to float4)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import adapt, postgres
from psycopg.pq import Format

from monitor.store import db
from monitor.store.float_arrays import Float4ArrayBinaryDumper, use_fast_float4_arrays

FLOAT4_MAX = float(np.finfo(np.float32).max)
finite_float4 = st.floats(-FLOAT4_MAX, FLOAT4_MAX, allow_nan=False, width=32)


def _psycopg_bytes(values: list[float]) -> bytes:
    """What psycopg's own (element by element) array dumper writes."""
    transformer = adapt.Transformer()
    transformer.set_dumper_types([postgres.types["float4"].array_oid], Format.BINARY)
    return bytes(transformer.dump_sequence([values], [Format.BINARY])[0])


@settings(max_examples=200, deadline=None)
@given(st.lists(finite_float4, min_size=1, max_size=300))
def test_same_bytes_as_psycopg_own_dumper(values: list[float]) -> None:
    ours = Float4ArrayBinaryDumper(list).dump(values)
    assert ours == _psycopg_bytes(values)


@pytest.mark.parametrize("bad", [[1e39], [0.5, float("inf")], [float("nan")]])
def test_values_float4_cannot_hold_are_refused_not_stored_as_infinity(bad: list[float]) -> None:
    with pytest.raises(OverflowError):
        Float4ArrayBinaryDumper(list).dump(bad)


def test_copy_round_trip_through_postgres(database_url: str) -> None:
    rng = np.random.default_rng(7)
    vectors = [rng.normal(size=n).tolist() for n in (1, 16, 768)]
    with db.connect(database_url, autocommit=True) as conn:
        use_fast_float4_arrays(conn)
        conn.execute("CREATE TEMP TABLE vectors (i int, v float4[])")
        with conn.cursor().copy("COPY vectors (i, v) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "float4[]"])
            for i, vector in enumerate(vectors):
                copy.write_row((i, vector))
        stored = conn.execute("SELECT v FROM vectors ORDER BY i").fetchall()
    for (got,), sent in zip(stored, vectors, strict=True):
        np.testing.assert_array_equal(np.asarray(got, dtype=np.float32), np.float32(sent))
