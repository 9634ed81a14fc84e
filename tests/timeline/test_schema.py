import hashlib
import re
from pathlib import Path

import pyarrow as pa
import pytest

from timeline.schema import COLUMNS, SCHEMA, TZ_SOURCES, RowBuilder, conform, event_hash, iso_ns

REQUIRED = [
    "timestamp", "timestamp_desc", "host", "source", "artifact", "event_id", "channel", "provider", "user",
    "src_ip", "process", "command_line", "path", "message", "attrs", "tags", "tz_source", "evidence_id",
    "evidence_path", "record_ref", "parser", "event_hash",
]


def test_required_columns_and_types():
    names = SCHEMA.names
    for name in REQUIRED:
        assert name in names
    assert SCHEMA.field("timestamp").type == pa.timestamp("ns", tz="UTC")
    assert not SCHEMA.field("timestamp").nullable
    assert not SCHEMA.field("message").nullable
    assert SCHEMA.field("event_id").type == pa.int32() and SCHEMA.field("event_id").nullable
    assert SCHEMA.field("tags").type == pa.list_(pa.string())
    assert TZ_SOURCES == ("source_utc", "embedded_offset", "evidence_config", "analyst", "assumed_utc")


def test_readme_documents_every_column():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_]+)` \| (?:timestamp|string|int32|list)", readme, re.M))
    assert documented == {c[0] for c in COLUMNS}


def test_event_hash_is_stable():
    # The same parts give the same hash forever: dedup across runs and machines depends on it.
    h = event_hash("EVTX", "HOST", "Security", "Microsoft-Windows-Security-Auditing", 4624, 1, 0)
    assert h == "35ea398af30b769535f4b43410ae700b"
    key = "EVTX\x1fHOST\x1fSecurity\x1fMicrosoft-Windows-Security-Auditing\x1f4624\x1f1\x1f0"
    assert h == hashlib.sha256(key.encode()).hexdigest()[:32]
    assert event_hash("a", None) == event_hash("a", "")
    assert len(event_hash("x")) == 32


def test_iso_ns_keeps_nine_digits():
    assert iso_ns(1290311759626427100) == "2010-11-21T03:55:59.626427100Z"
    assert iso_ns(0) == "1970-01-01T00:00:00.000000000Z"


def _row(**kw):
    base = dict(timestamp=1, timestamp_desc="Event Logged", source="EVTX", artifact="evtx:System", message="m",
                attrs="{}", tags=[], tz_source="source_utc", evidence_id="e", evidence_path="p", record_ref="r",
                parser="x", event_hash="0" * 32)
    base.update(kw)
    return base


def test_row_builder_builds_the_schema_and_coerces_odd_values():
    rb = RowBuilder()
    rb.add(**_row(event_id=4624, user="CORP\\admin"))
    rb.add(**_row(event_id=2**40, user=12345))  # out-of-range id -> null (raw value stays in attrs); int -> text
    t = rb.to_table()
    assert t.schema.equals(SCHEMA, check_metadata=False)
    assert t.column("event_id").to_pylist() == [4624, None]
    assert t.column("user").to_pylist() == ["CORP\\admin", "12345"]
    assert len(rb) == 0


def test_row_builder_refuses_nulls_where_the_schema_forbids_them():
    rb = RowBuilder()
    rb.add(**_row(message=None))
    with pytest.raises(ValueError, match="message"):
        rb.to_table()
    with pytest.raises(ValueError, match="unknown timeline columns"):
        RowBuilder().add(**_row(bogus=1))


def test_conform_reorders_and_rejects():
    rb = RowBuilder()
    rb.add(**_row())
    t = rb.to_table()
    shuffled = t.select(list(reversed(t.column_names)))
    assert conform(shuffled).schema.names == SCHEMA.names
    with pytest.raises(ValueError, match="missing"):
        conform(t.drop_columns(["message"]))


def test_pandas_dtypes_come_from_the_schema():
    import pandas as pd

    from timeline.schema import PANDAS_DTYPES, to_pandas

    assert PANDAS_DTYPES == {"event_id": "Int32", "logon_type": "Int32", "dst_port": "Int32"}
    assert set(PANDAS_DTYPES) == {name for name, typ, _, _ in COLUMNS if pa.types.is_integer(typ)}
    rb = RowBuilder()
    rb.add(**_row(event_id=4624, logon_type=3, dst_port=None))
    rb.add(**_row(event_id=None, logon_type=None, dst_port=445, event_hash="1" * 32))
    t = rb.to_table()
    # the times as DuckDB hands them over on a machine set to another zone: the same instants, labelled Etc/UTC
    t = t.set_column(0, "timestamp", t.column("timestamp").cast(pa.timestamp("ns", tz="Etc/UTC")))
    extra = pa.array([7, None], pa.int64())
    df = to_pandas(t.append_column("n", extra).append_column("k", pa.array([1, 2], pa.int64())))
    assert [str(df[c].dtype) for c in ("event_id", "logon_type", "dst_port", "n", "k")] == \
        ["Int32", "Int32", "Int32", "float64", "int64"]  # columns the schema does not know: pandas' default
    assert df["event_id"].tolist()[0] == 4624 and df["event_id"].isna().tolist() == [False, True]
    assert df["dst_port"].iloc[1] == 445 and df["logon_type"].iloc[0] == 3
    assert str(df["timestamp"].dtype) == "datetime64[ns, UTC]" and df["timestamp"].iloc[0] == pd.Timestamp(1, tz="UTC")
    wide = to_pandas(pa.table({"event_id": pa.array([2**40, None], pa.int64())}))  # a computed event_id keeps its width
    assert str(wide["event_id"].dtype) == "Int64" and wide["event_id"].iloc[0] == 2**40
