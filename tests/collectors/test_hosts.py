"""collectors.hosts: which host a row belongs to and how that was decided (attrs.host_source)."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from collectors.hosts import check_given_host, clean_host, folder_host, looks_like_host, stamp_hosts
from timeline.schema import HOST_SOURCES, UNKNOWN_HOST, RowBuilder


def test_the_sources_and_the_placeholder_are_defined_once():
    import forensics.plots as plots
    import forensics.sigma as sigma

    assert HOST_SOURCES == ("given", "log", "os", "folder", "unknown")
    assert UNKNOWN_HOST == "(unknown host)" and sigma.UNKNOWN_HOST is UNKNOWN_HOST and plots.NO_HOST is UNKNOWN_HOST


@pytest.mark.parametrize("name, host", [
    ("web01", True), ("WEB-01", True), ("db-02.corp.example", True), ("dc01.pandalab.com", True),
    ("logs", False), ("Logs2", False), ("apache2", False), ("W3SVC1", False), ("tomcat9", False), ("nginx", False),
    ("ev", False), ("evidence", False), ("2024-03-01", False), ("1234", False), ("-web", False), ("web_01", False),
    ("web 01", False), ("..", False), ("", False), ("a" * 64, False), ("web\x1b[2J", False),
])
def test_which_folder_names_look_like_hosts(name, host):
    assert looks_like_host(name) is host


def test_the_nearest_host_folder_within_the_item_names_the_host():
    assert folder_host(None, "web01/var/log/apache2/access.log") == "web01"
    assert folder_host("case42", "web01/access.log") == "web01"  # the nearest wins
    assert folder_host("db-02", "mysql/error.log") == "db-02"  # the item's own folder counts
    assert folder_host("logs", "2024-03/access.log") is None
    assert folder_host(None, "access.log") is None  # a single file: no folder of the item names it
    assert folder_host("evidence", "logs/access.log") is None
    assert folder_host("Collection-DC01-2024-03-01T10_00_00Z", "uploads/auto/C%3A/x.evtx") == "DC01"  # Velociraptor
    assert folder_host("Collection-DC01", "x.evtx") == "DC01"


def test_given_hosts_are_checked_and_os_hosts_escaped():
    assert check_given_host(" web01 ") == "web01"
    assert check_given_host("../../etc") == "../../etc"  # text, never a path
    for bad in ("", "   ", "web\x1b[2J", "a\u202eb", "x\ny"):
        with pytest.raises(ValueError):
            check_given_host(bad)
    assert clean_host("srv\x1b]0;pwned\x07\u202e") == "srv\\x1b]0;pwned\\x07\\u202e"
    assert clean_host(" - ") is None and clean_host("") is None and clean_host(None) is None
    assert len(clean_host("h" * 1000)) == 255


def _table(rows):
    b = RowBuilder()
    for i, (host, path, attrs) in enumerate(rows):
        b.add(timestamp=i, timestamp_desc="Event Logged", host=host, source="SYSLOG", artifact="syslog", message="m",
              attrs=attrs, tags=[], tz_source="analyst", evidence_id="e1", evidence_path=path, record_ref=f"line={i}",
              parser="p", event_hash=f"{i:032x}")
    return b.to_table()


def test_stamp_hosts_applies_the_rules_in_order():
    t = _table([
        ("mail01", "web01/syslog", '{"host_source":"log","host":"mail01"}'),  # the line named it
        ("web01", "web01/syslog", '{"host":null}'),  # fell back on the folder's
        (None, "loose.log", "{}"),  # nothing known
        ("dc01", "web01/x.evtx", '{"Event":{}}'),  # a record's name other than the folder's: log
        ("srv9", "given.log", '{"host_source":"log","host":"srv9"}'),  # the analyst's wins
        ("dc02", "web01/x.evtx", '{"Event":{"EventData":{"host_source":"forged"}}}'),  # a record's own key: data
        (None, "given.log", '{"a":1}'),
    ])
    fb = {"web01/syslog": ("web01", "folder"), "web01/x.evtx": ("web01", "folder"), "given.log": ("www", "given"),
          "loose.log": (None, None)}
    out = stamp_hosts(t, lambda eid, path: fb[path])
    got = [(h, json.loads(a)) for h, a in zip(out.column("host").to_pylist(), out.column("attrs").to_pylist())]
    assert got == [
        ("mail01", {"host_source": "log", "host": "mail01"}),
        ("web01", {"host_source": "folder", "host": None}),
        (None, {"host_source": "unknown"}),
        ("dc01", {"host_source": "log", "Event": {}}),
        ("www", {"host_source": "given", "host": "srv9"}),
        ("dc02", {"host_source": "log", "Event": {"EventData": {"host_source": "forged"}}}),
        ("www", {"host_source": "given", "a": 1}),
    ]
    assert out.schema.equals(t.schema) and stamp_hosts(t.slice(0, 0), lambda *_: (None, None)).num_rows == 0
    # a value that is not a JSON object is left alone (never written by a collector)
    odd = stamp_hosts(_table([(None, "loose.log", "not json")]), lambda *_: (None, None))
    assert odd.column("attrs").to_pylist() == ["not json"]


def test_stamp_hosts_one_source_for_the_whole_table():
    """The fast path (one source, every attrs an object): the same result as the general one."""
    t = _table([(None, "loose.log", "{}"), (None, "loose.log", '{"a":{"b":"{"}}'), (None, "loose.log", ' {"c":1}')])
    out = stamp_hosts(t.slice(0, 2), lambda *_: ("web01", "folder"))
    assert out.column("attrs").to_pylist() == ['{"host_source":"folder"}', '{"host_source":"folder","a":{"b":"{"}}']
    assert out.column("host").to_pylist() == ["web01", "web01"]
    # a value with text before its "{" takes the general path (left alone: not an object as written)
    assert stamp_hosts(t.slice(2), lambda *_: (None, None)).column("attrs").to_pylist() == [' {"c":1}']
