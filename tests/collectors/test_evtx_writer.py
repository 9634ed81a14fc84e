"""The project's EVTX writer: real EVTX that the Rust ``evtx`` parser, python-evtx and
dissect.eventlog read identically, and that the project's own collector reads without a problem.

One file of 5,000 generated records (odd strings: Bengali, Hindi, emoji, XML specials, empty,
10,000 characters, one of 31,000; every substitution type with its extremes) is read by the
three parsers, and each parser's rendering of every value is decoded back and compared with
what was written.  Where a parser's rendering is lossy or wrong the test says so and reads
the raw value through that parser's own structures instead:

* python-evtx and dissect turn FILETIMEs into datetimes through a float (a few microseconds
  off): python-evtx's substitution nodes and record header give the raw 100 ns value, dissect's
  record header struct gives the written time raw; dissect's TimeCreated and its EventData
  FILETIMEs are compared to ``FLOAT_US``.  evtx-rs renders FILETIMEs truncated to the microsecond and
  the record header's written time to 100 ns.
* python-evtx puts a SYSTEMTIME's milliseconds in the microsecond field; dissect reads GUIDs
  big-endian (``uuid.UUID(bytes=...)``) where Windows stores them little-endian.
* evtx-rs and python-evtx render a null value as an empty string; dissect as None.
* evtx-rs (PyPI binding) does not validate CRCs: the CRCs are checked independently, by
  python-evtx's ``verify()`` and by the project's structural scan.
"""

from __future__ import annotations

import base64
import collections
import datetime as dt
import io
import json
import random
import re
import struct
import uuid
import xml.etree.ElementTree as ET
import zlib

import pytest

from collectors.evtx_format import CHUNK_SIZE, FILETIME_EPOCH, HEADER_BLOCK, scan
from collectors.evtx_writer import (
    MAX_RECORD_SIZE,
    Event,
    EvtxWriter,
    UserData,
    to_filetime,
    unix_ns_to_filetime,
    write_evtx,
)
from timeline.errors import ForensicsError, RecordTooLarge, WriteError

N = 5000
UTC = dt.timezone.utc
START = to_filetime(dt.datetime(2022, 11, 23, 1, 30, tzinfo=UTC))  # 07:00 IST
NEAR_LIMIT_AT = 2501  # record id of the 31,000-character record
# dissect computes datetimes from FILETIMEs in float seconds: ~1.3e10 s carries ~1.5 us of rounding
# before its own rounding to the microsecond (4 us at most seen on these 5,000 records)
FLOAT_US = 5

ODD = [
    "রোগীর তথ্য — ঢাকা মেডিকেল",  # Bengali
    "मरीज़ का रिकॉर्ड, नई दिल्ली",  # Hindi
    "🔒💀🩺 encrypted 🏥",  # emoji (astral plane: UTF-16 surrogate pairs)
    "a<b>&c \"quoted\" 'single'",  # XML specials
    "",
    " leading and trailing ",
    "line one\nline two\tand a tab",
    "C:\\Windows\\System32\\vssadmin.exe delete shadows /all /quiet",
    "mixed हिंदी বাংলা English 🙂",
    "%%1833",
]
WORDS = ["alice", "bob", "HOSP\\admin", "svc_backup", "DC01", "FS01", "10.10.5.23", "nurse.station.3"]


def _odd(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.45:
        return rng.choice(ODD)
    if r < 0.9:
        return rng.choice(WORDS) + str(rng.randrange(1000))
    return "".join(rng.choice(ODD + WORDS) for _ in range(rng.randrange(2, 8)))


def _long(rng: random.Random, n: int, bmp: bool = False) -> str:
    base = rng.choice(ODD[:2] + ["x"] if bmp else ODD[:3] + ["x"])
    return (base * (n // len(base) + 1))[:n]


def _sid(rng: random.Random) -> str:
    return f"S-1-5-21-{rng.randrange(2**32)}-{rng.randrange(2**32)}-{rng.randrange(2**32)}-{rng.randrange(500, 3000)}"


# Generators: kind -> rng -> (value to write, canonical value).  The kind names the value's
# EVTX type; plain str, None and the inferred Python types are written as they are.
def _typed(kind, gen):
    return lambda rng: (lambda v: ((kind, v), v))(gen(rng))


INT_RANGES = {"int8": (-(2**7), 2**7 - 1), "uint8": (0, 2**8 - 1), "int16": (-(2**15), 2**15 - 1),
              "uint16": (0, 2**16 - 1), "int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1),
              "int64": (-(2**63), 2**63 - 1), "uint64": (0, 2**64 - 1), "hex32": (0, 2**32 - 1),
              "hex64": (0, 2**64 - 1)}


def _int_gen(kind):
    lo, hi = INT_RANGES[kind]
    return _typed(kind, lambda rng: rng.choice([lo, hi, 0 if lo == 0 else -1, rng.randint(lo, hi)]))


def _systemtime(rng):
    t = dt.datetime(2022, 11, 23, tzinfo=UTC) + dt.timedelta(milliseconds=rng.randrange(10**9))
    return ("systemtime", t), t.replace(tzinfo=None)


def _null(rng):
    return rng.choice([None, ("null", None), ("uint32", None)]), None


GEN = {
    "string": lambda rng: (lambda s: (s, s))(_odd(rng)),
    "ansi": _typed("ansi", lambda rng: rng.choice(["plain ascii", "", "C:\\tools\\x.exe", "a<b>&c"])),
    "sid": _typed("sid", lambda rng: rng.choice(["S-1-5-18", "S-1-0-0", _sid(rng)])),
    "guid": lambda rng: (lambda g: (g, g))(uuid.UUID(int=rng.getrandbits(128))),
    "guid_str": lambda rng: (lambda g: (("guid", "{" + str(g).upper() + "}"), g))(uuid.UUID(int=rng.getrandbits(128))),
    "bool": lambda rng: (lambda b: (b, b))(rng.random() < 0.5),
    "binary": lambda rng: (lambda b: (b, b))(rng.randbytes(rng.randrange(0, 40))),
    "filetime": _typed("filetime", lambda rng: START + rng.randrange(-10**12, 10**12)),
    "filetime_dt": lambda rng: (lambda t: (t, to_filetime(t)))(
        dt.datetime(2022, 11, 23, tzinfo=UTC) + dt.timedelta(microseconds=rng.randrange(10**11))),
    "systemtime": _systemtime,
    "double": lambda rng: (lambda f: (f, f))(rng.choice([0.0, -1.5, 3.141592653589793, 1e300, rng.random()])),
    "float": _typed("float", lambda rng: rng.choice([0.0, 1.5, -0.25, 1024.0])),
    "uint": lambda rng: (lambda v: (v, v))(rng.choice([0, 3, 2**32 - 1])),  # inferred uint32
    "negint": lambda rng: (lambda v: (v, v))(rng.choice([-1, -(2**31)])),  # inferred int32
    "bigint": lambda rng: (lambda v: (v, v))(rng.choice([2**32, 2**64 - 1, -(2**31) - 1])),  # uint64 / int64
    "null": _null,
    **{k: _int_gen(k) for k in INT_RANGES},
}
INFERRED_KIND = {"string": "string", "guid": "guid", "guid_str": "guid", "bool": "bool", "binary": "binary",
                 "filetime_dt": "filetime", "double": "double", "uint": "uint", "negint": "int",
                 "bigint": "int", "null": "null"}

SCHEMAS = [  # provider, channel, event id, fields (name, generator kind), extra System fields
    ("Microsoft-Windows-Security-Auditing", "Security", 4625,
     [("SubjectUserSid", "sid"), ("SubjectUserName", "string"), ("TargetUserName", "string"),
      ("TargetDomainName", "string"), ("Status", "hex32"), ("SubStatus", "hex32"), ("LogonType", "uint32"),
      ("IpAddress", "string"), ("IpPort", "string"), ("ProcessId", "hex64"), ("WorkstationName", "string")],
     dict(keywords=0x8010000000000000, task=12544, level=0, provider_guid="{54849625-5478-4994-A5BA-3E3B0328C30D}")),
    ("Microsoft-Windows-Sysmon", "Microsoft-Windows-Sysmon/Operational", 1,
     [("UtcTime", "string"), ("ProcessGuid", "guid"), ("ProcessId", "uint32"), ("Image", "string"),
      ("CommandLine", "string"), ("User", "string"), ("LogonGuid", "guid_str"), ("LogonId", "hex64"),
      ("TerminalSessionId", "uint32"), ("Hashes", "string")],
     dict(keywords=0x8000000000000000, task=1, version=5, user_sid="S-1-5-18")),
    ("Microsoft-Windows-PowerShell", "Microsoft-Windows-PowerShell/Operational", 4104,
     [("MessageNumber", "int32"), ("MessageTotal", "int32"), ("ScriptBlockText", "string"),
      ("ScriptBlockId", "guid_str"), ("Path", "string")],
     dict(level=5, task=2, opcode=15, keywords=0, version=1)),
    ("Service Control Manager", "System", 7045,
     [("ServiceName", "string"), ("ImagePath", "string"), ("ServiceType", "string"), ("StartType", "string"),
      ("AccountName", "string")],
     dict(qualifiers=16384, event_source_name="Service Control Manager", keywords=0x8080000000000000)),
    ("Forensics-Writer-Test", "Forensics-Writer-Test/Types", 9001,
     [(k, k) for k in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "hex32", "hex64",
                       "ansi", "sid", "guid", "bool", "binary", "filetime", "filetime_dt", "systemtime", "double",
                       "float", "uint", "negint", "bigint", "null", "string")]
     + [("Empty", "string")],
     dict(opcode=255, version=255, activity_id=uuid.UUID(int=7), related_activity_id="{00000000-0000-0000-0000-000000000009}")),
    ("Microsoft-Windows-TerminalServices-LocalSessionManager",
     "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational", 21,
     ("EventXML", "Event_NS", [("User", "string"), ("SessionID", "uint32"), ("Address", "string")]), {}),
    ("Microsoft-Windows-Eventlog", "Security", 1102,
     ("LogFileCleared", "http://manifests.microsoft.com/win/2004/08/windows/eventlog",
      [("SubjectUserSid", "sid"), ("SubjectUserName", "string"), ("SubjectDomainName", "string"),
       ("SubjectLogonId", "hex64")]), dict(keywords=0x4020000000000000)),
    ("EventLog", "System", 6005, [], dict(qualifiers=32768)),
]
COMPUTERS = ["DC01.hospital.local", "FS01.hospital.local", "APP-01"]


def generate(n: int = N, seed: int = 7) -> tuple[list[Event], list[dict]]:
    """``n`` events and, for each, what the parsers must read back."""
    rng = random.Random(seed)
    events, expected = [], []
    ft = START
    for i in range(n):
        rid = i + 1
        provider, channel, eid, fields, extra = SCHEMAS[i % len(SCHEMAS)] if i % 97 else SCHEMAS[4]
        ft += rng.randrange(1, 10**8)  # 100 ns digits everywhere
        written = ft + rng.randrange(1, 5 * 10**7) if i % 7 == 3 else None
        data, exp = {}, []
        is_user = isinstance(fields, tuple)
        for name, kind in (fields[2] if is_user else fields):
            value, canon = GEN[kind](rng)
            if name == "Empty":
                value, canon = "", ""
            data[name] = value
            exp.append((name, INFERRED_KIND.get(kind, kind), canon))
        if rid % 500 == 0 and not is_user:  # 10,000 characters in a string field
            name = next((e[0] for e in exp if e[1] == "string"), None)
            if name:
                data[name] = _long(rng, 10_000)
                exp = [(k, t, data[name] if k == name else c) for k, t, c in exp]
        if rid == NEAR_LIMIT_AT:  # too big to share a chunk with much else
            provider, channel, eid, extra, is_user = "Forensics-Writer-Test", "Forensics-Writer-Test/Types", 9002, {}, False
            data = {"Blob": _long(rng, 31_000, bmp=True)}
            exp = [("Blob", "string", data["Blob"])]
        ev = Event(eid, ft, provider, channel, COMPUTERS[rng.randrange(3)], written=written,
                   process_id=rng.randrange(2**32), thread_id=rng.randrange(2**32), **extra)
        if is_user:
            ev.user_data = UserData(fields[0], data, xmlns=fields[1])
        else:
            ev.event_data = data
        events.append(ev)
        expected.append(dict(record_id=rid, created=ft, written=written or ft, user_data=fields[:2] if is_user else None,
                             data=exp))
    return events, expected


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    events, expected = generate()
    path = tmp_path_factory.mktemp("evtxw") / "Security.evtx"
    assert write_evtx(path, events) == N
    return path, events, expected


# --- decoding each parser's rendering back to the value written ---------------------------------


def _iso_us(s: str) -> int:
    """Microseconds since 1601 of an ISO time ('2022-11-23T01:30:00.123456Z', ' +00:00' forms too)."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:\.(\d{1,7}))?(?:Z|\+00:00)?(?: UTC)?", s)
    assert m, s
    t = dt.datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}+00:00")
    return (to_filetime(t) // 10) + int(((m.group(3) or "") + "000000")[:6])


def _iso_ft(s: str) -> int:
    """FILETIME (100 ns) of the Rust parser's record timestamp ('...T01:30:00.1234567Z UTC')."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,7}))?Z UTC", s)
    assert m, s
    return to_filetime(dt.datetime.fromisoformat(m.group(1) + "+00:00")) + int(((m.group(2) or "") + "0000000")[:7])


INTS = {"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "uint", "int"}


def _rs(kind, v):
    if kind in ("string", "ansi", "sid"):
        return v
    if kind == "null":
        assert v == ""  # evtx-rs renders null as an empty string
        return None
    if kind in INTS:
        assert isinstance(v, int) and not isinstance(v, bool)
        return v
    if kind in ("hex32", "hex64"):
        return int(v, 16)
    if kind == "bool":
        assert isinstance(v, bool)
        return v
    if kind in ("double", "float"):
        return float(v)
    if kind == "binary":
        return bytes.fromhex(v)
    if kind == "guid":
        return uuid.UUID(v)
    if kind == "systemtime":
        return dt.datetime.fromisoformat(v.rstrip("Z"))
    raise AssertionError(kind)


def _py(kind, text):
    text = text or ""
    if kind in ("string", "ansi", "sid"):
        return text
    if kind == "null":
        assert text == ""
        return None
    if kind in INTS:
        return int(text)
    if kind in ("hex32", "hex64"):
        return int(text, 16)
    if kind == "bool":
        return {"True": True, "False": False}[text]
    if kind in ("double", "float"):
        return float(text)
    if kind == "binary":
        return base64.b64decode(text)
    if kind == "guid":
        return uuid.UUID(text)
    if kind == "systemtime":  # python-evtx puts the milliseconds in the microsecond field
        t = dt.datetime.fromisoformat(text)
        return t.replace(microsecond=t.microsecond * 1000)
    raise AssertionError(kind)


def _dissect(kind, v):
    if kind == "string":
        return v
    if kind == "ansi":
        return v.decode("ascii")
    if kind == "null":
        assert v is None
        return None
    if kind in INTS:
        return v
    if kind in ("hex32", "hex64"):
        return int(v, 16)
    if kind == "bool":
        assert v in (0, 1)
        return bool(v)
    if kind in ("double", "float", "sid"):
        return v
    if kind == "binary":
        return bytes.fromhex(v.decode())
    if kind == "guid":  # dissect reads the 16 bytes big-endian; Windows stores a GUID little-endian
        return uuid.UUID(bytes_le=uuid.UUID(v).bytes)
    if kind == "systemtime":
        return v
    raise AssertionError(kind)


def _canon(kind, v):
    return "" if kind == "string" and v is None else v


# --- reading with each parser -------------------------------------------------------------------


def read_rs(path):
    from evtx import PyEvtxParser

    out = []
    for r in PyEvtxParser(str(path)).records_json():
        ev = json.loads(r["data"])["Event"]
        out.append((r["event_record_id"], _iso_ft(r["timestamp"]), ev))
    return out


def read_python_evtx(path):
    from Evtx.Evtx import Evtx
    from Evtx.Views import render_root_node

    out = []
    with Evtx(str(path)) as log:
        for rec in log.records():
            root = rec.root()
            subs = root.substitutions()
            nested = subs[-1].root().substitutions()
            raw_ft = {i: s.unpack_qword(0) for i, s in enumerate(nested) if type(s).__name__ == "FiletimeTypeNode"}
            xml = render_root_node(root)  # what rec.xml() renders, from the root already parsed
            out.append((rec.record_num(), rec.unpack_qword(0x10), subs[6].unpack_qword(0), ET.fromstring(xml), raw_ft))
    return out


def read_dissect(path):
    from dissect.eventlog.evtx import ElfChnk, Evtx, c_evtx

    with open(path, "rb") as fh:
        records = [{k: (v.get() if hasattr(v, "get") and not isinstance(v, dict) else v) for k, v in r.items()}
                   for r in Evtx(fh)]
    headers = []  # the record header through dissect's own structure: written time to 100 ns
    data = path.read_bytes()
    for off in range(HEADER_BLOCK, len(data), CHUNK_SIZE):
        chunk = ElfChnk(data[off:off + CHUNK_SIZE])
        while True:
            try:
                r = c_evtx.EVTX_RECORD(chunk.stream)
            except EOFError:
                break
            if r.signature != 0x2A2A:
                break
            headers.append((r.record_id, r.time_written))
    return records, headers


NS = "{http://schemas.microsoft.com/win/2004/08/events/event}"


def test_three_parsers_read_the_same_records(written):
    path, events, expected = written
    kinds = collections.Counter(k for e in expected for _, k, _ in e["data"])
    assert len(kinds) == 23 and min(kinds.values()) >= 600  # every type, hundreds of times
    assert sum(1 for e in expected for _, _, c in e["data"] if isinstance(c, str) and len(c) >= 10_000) == 6
    assert sum(e["written"] != e["created"] for e in expected) == 714  # written later than created
    rs, py, (ds, ds_headers) = read_rs(path), read_python_evtx(path), read_dissect(path)
    ids = [e["record_id"] for e in expected]
    assert ids == list(range(1, N + 1))
    assert [r[0] for r in rs] == [r[0] for r in py] == [r["EventRecordID"] for r in ds] == [h[0] for h in ds_headers] == ids
    assert scan(io.BytesIO(path.read_bytes())).chunks_in_file >= 50  # thousands of records span many chunks

    for ev, exp, (rs_id, rs_written, rsev), (py_id, py_written, py_created, root, py_ft), d, (_, ds_written) in zip(
            events, expected, rs, py, ds, ds_headers):
        where = f"record {exp['record_id']}"
        # times: the written time to 100 ns with all three; TimeCreated to 100 ns (python-evtx's node),
        # to the microsecond (evtx-rs truncates), to FLOAT_US (dissect's float)
        assert rs_written == py_written == ds_written == exp["written"], where
        assert py_created == exp["created"], where
        sysj = rsev["System"]
        assert _iso_us(sysj["TimeCreated"]["#attributes"]["SystemTime"]) == exp["created"] // 10, where
        assert abs(_iso_us(d["TimeCreated_SystemTime"].isoformat()) - exp["created"] / 10) <= FLOAT_US, where

        # System: evtx-rs JSON, python-evtx XML, dissect's flat keys
        system = root.find(NS + "System")
        px = {el.tag[len(NS):]: el for el in system}
        eid = sysj["EventID"]["#text"] if isinstance(sysj["EventID"], dict) else sysj["EventID"]
        assert eid == int(px["EventID"].text) == d["EventID"] == ev.event_id, where
        quals = sysj["EventID"]["#attributes"]["Qualifiers"] if isinstance(sysj["EventID"], dict) else None
        assert quals == (int(px["EventID"].get("Qualifiers")) if px["EventID"].get("Qualifiers") else None) \
            == d["EventID_Qualifiers"] == ev.qualifiers, where
        prov = sysj["Provider"]["#attributes"]
        assert prov["Name"] == px["Provider"].get("Name") == d["Provider_Name"] == ev.provider, where
        assert prov.get("EventSourceName") == (px["Provider"].get("EventSourceName") or None) \
            == d.get("Provider_EventSourceName") == ev.event_source_name, where
        want_guid = uuid.UUID(ev.provider_guid) if ev.provider_guid else None
        assert (uuid.UUID(prov["Guid"]) if "Guid" in prov else None) == \
            (uuid.UUID(px["Provider"].get("Guid")) if px["Provider"].get("Guid") else None) == \
            (_dissect("guid", d["Provider_Guid"]) if d["Provider_Guid"] else None) == want_guid, where
        assert sysj["Channel"] == px["Channel"].text == d["Channel"] == ev.channel, where
        assert sysj["Computer"] == px["Computer"].text == d["Computer"] == ev.computer, where
        assert sysj["EventRecordID"] == int(px["EventRecordID"].text) == exp["record_id"], where
        for key, want in (("Level", ev.level), ("Task", ev.task), ("Opcode", ev.opcode), ("Version", ev.version)):
            assert sysj[key] == int(px[key].text) == d[key] == want, (where, key)
        assert int(sysj["Keywords"], 16) == int(px["Keywords"].text, 16) == int(d["Keywords"], 16) == ev.keywords, where
        ex = sysj["Execution"]["#attributes"]
        assert (ex["ProcessID"], ex["ThreadID"]) == (int(px["Execution"].get("ProcessID")), int(px["Execution"].get("ThreadID"))) \
            == (d["Execution_ProcessID"], d["Execution_ThreadID"]) == (ev.process_id, ev.thread_id), where
        sec = (sysj["Security"] or {}).get("#attributes", {}).get("UserID")
        assert sec == (px["Security"].get("UserID") or None) == d["Security_UserID"] == ev.user_sid, where
        corr = (sysj["Correlation"] or {}).get("#attributes", {})
        for attr, want in (("ActivityID", ev.activity_id), ("RelatedActivityID", ev.related_activity_id)):
            want = None if want is None else uuid.UUID(str(want))
            got_ds = d[f"Correlation_{attr}"]
            assert (uuid.UUID(corr[attr]) if attr in corr else None) == \
                (uuid.UUID(px["Correlation"].get(attr)) if px["Correlation"].get(attr) else None) == \
                (_dissect("guid", got_ds) if got_ds else None) == want, where

        # EventData / UserData: every value, decoded from each parser's rendering
        if exp["user_data"]:
            name, xmlns = exp["user_data"]
            rs_d = rsev["UserData"][name]
            assert rs_d["#attributes"] == {"xmlns": xmlns}
            el = root.find(NS + "UserData")[0]
            assert el.tag == "{%s}%s" % (xmlns, name)
            py_d = {c.tag.split("}")[1]: c.text for c in el}
            ds_d = {k[len(name) + 1:]: v for k, v in d.items() if k.startswith(name + "_") and k != name + "_xmlns"}
        else:
            rs_d = rsev.get("EventData") or {}
            py_d = {c.get("Name"): c.text for c in root.find(NS + "EventData")}
            ds_d = d
        assert list(k for k in rs_d if k != "#attributes") == list(py_d) == [k for k, _, _ in exp["data"]], where
        for i, (name, kind, canon) in enumerate(exp["data"]):
            w = (where, name, kind)
            if kind == "filetime":
                assert _iso_us(rs_d[name]) == canon // 10, w
                assert py_ft[i] == canon, w
                assert abs(_iso_us(ds_d[name].isoformat()) - canon / 10) <= FLOAT_US, w
                continue
            assert _canon(kind, _rs(kind, rs_d[name])) == _canon(kind, canon), w
            assert _canon(kind, _py(kind, py_d[name])) == _canon(kind, canon), w
            assert _dissect(kind, ds_d[name]) == canon, w  # dissect alone tells null from ""


def test_the_collector_reads_every_record_without_a_problem(written, tmp_path):
    from forensics import Case

    path, events, expected = written
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([path], workers=1)
    assert (rep.records_read, rep.rows_written, rep.errors) == (N, N, 0)
    assert case.problems().num_rows == 0
    tl = case.timeline()
    ts = tl["timestamp"].cast("int64").to_pylist()
    rows = tl.drop_columns(["timestamp"]).to_pylist()
    assert len(rows) == N
    by_id = {}
    for t, r in zip(ts, rows):
        by_id[int(re.match(r"record=(\d+) offset=0x[0-9a-f]+$", r["record_ref"]).group(1))] = (t, r)
    assert sorted(by_id) == list(range(1, N + 1))
    for ev, exp in zip(events, expected):
        t, r = by_id[exp["record_id"]]
        # TimeCreated to 100 ns: from the header when written at the same instant, else from the binary XML
        assert t == (exp["created"] - FILETIME_EPOCH) * 100
        assert (r["event_id"], r["channel"], r["provider"], r["host"]) == (ev.event_id, ev.channel, ev.provider, ev.computer)
        assert r["parser"].startswith("evtx-rs/") and r["tz_source"] == "source_utc"
        written_later = exp["written"] != exp["created"]
        assert r["attrs"].startswith('{"host_source":"log","Record":{"written_time":') == written_later
        if ev.event_id == 21:
            assert r["message"].startswith("21 RDP session logon of ")
            assert f"(session {ev.user_data.values['SessionID'][1]})" in r["message"]


def test_collector_fields_of_a_known_logon(tmp_path):
    from forensics import Case

    t = unix_ns_to_filetime(1669167000_123456700)  # 2022-11-23T01:30:00.1234567Z = 07:00:00.1234567 IST
    path = tmp_path / "Logs" / "Security.evtx"
    path.parent.mkdir()
    write_evtx(path, [
        Event(4625, t, "Microsoft-Windows-Security-Auditing", "Security", "DC01.hospital.local", level=0, task=12544,
              keywords=0x8010000000000000, event_data={
                  "SubjectUserSid": ("sid", "S-1-5-18"), "TargetUserName": "ডাক্তার", "TargetDomainName": "HOSP",
                  "Status": ("hex32", 0xC000006D), "SubStatus": ("hex32", 0xC000006A), "LogonType": ("uint32", 3),
                  "LogonProcessName": "NtLmSsp ", "AuthenticationPackageName": "NTLM", "WorkstationName": "KALI",
                  "IpAddress": "203.0.113.50", "IpPort": "51234"}),
        Event(21, t + 1, "Microsoft-Windows-TerminalServices-LocalSessionManager",
              "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational", "FS01",
              user_data=UserData("EventXML", {"User": "HOSP\\admin", "SessionID": ("uint32", 2), "Address": "10.0.0.5"},
                                 xmlns="Event_NS")),
    ])
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([path.parent], workers=1)
    assert rep.errors == 0 and case.problems().num_rows == 0
    tl = case.timeline()
    assert tl["timestamp"].cast("int64").to_pylist() == [1669167000_123456700, 1669167000_123456800]
    a, b = tl.to_pylist()
    assert (a["user"], a["logon_type"], a["src_ip"], a["src_host"]) == ("HOSP\\ডাক্তার", 3, "203.0.113.50", "KALI")
    assert a["message"] == ("4625 failed logon type 3 (network) by HOSP\\ডাক্তার from 203.0.113.50 / KALI via NtLmSsp/NTLM "
                            "(status 0xC000006D, sub-status 0xC000006A)")
    assert (b["user"], b["src_ip"], b["host"]) == ("HOSP\\admin", "10.0.0.5", "FS01")
    assert b["message"] == "21 RDP session logon of HOSP\\admin (session 2) from 10.0.0.5"


# --- structure ----------------------------------------------------------------------------------


def _name_hash(s: str) -> int:
    h = 0
    for c in struct.unpack(f"<{len(s.encode('utf-16-le')) // 2}H", s.encode("utf-16-le")):
        h = (h * 65599 + c) & 0xFFFFFFFF
    return h & 0xFFFF


def test_headers_and_crcs(written):
    path, _, expected = written
    data = path.read_bytes()
    sc = scan(io.BytesIO(data))
    n = sc.chunks_in_file
    assert len(data) == HEADER_BLOCK + n * CHUNK_SIZE and sc.damage() == []
    magic, first, last, next_id, hsize, minor, major, block, count = struct.unpack_from("<8sQQQIHHHH", data)
    assert (magic, first, last, next_id, hsize, minor, major, block, count) == (b"ElfFile\0", 0, n - 1, N + 1, 128, 1, 3, 4096, n)
    flags, crc = struct.unpack_from("<II", data, 120)
    assert flags == 0 and crc == zlib.crc32(data[:120]) and not any(data[128:HEADER_BLOCK])
    frames_by_chunk = {}
    for fr in sc.frames:
        frames_by_chunk.setdefault(fr.chunk, []).append(fr)
    assert [fr.number for fr in sc.frames] == list(range(1, N + 1))
    assert [fr.written for fr in sc.frames] == [e["written"] for e in expected]
    for ci in range(n):
        c = data[HEADER_BLOCK + ci * CHUNK_SIZE:HEADER_BLOCK + (ci + 1) * CHUNK_SIZE]
        frs = frames_by_chunk[ci]
        f_num, l_num, f_id, l_id, hs, last_off, free, data_crc = struct.unpack_from("<QQQQIIII", c, 8)
        assert (f_num, l_num, f_id, l_id, hs) == (frs[0].number, frs[-1].number, frs[0].number, frs[-1].number, 128)
        base = HEADER_BLOCK + ci * CHUNK_SIZE
        assert last_off == frs[-1].offset - base and free == last_off + frs[-1].size
        assert data_crc == zlib.crc32(c[512:free]) and not any(c[free:])
        assert struct.unpack_from("<I", c, 124)[0] == zlib.crc32(c[:120] + c[128:512])
        assert all(fr.size % 8 == 0 for fr in frs)
        # the common-string table: every name in its hash bucket, chained, as Windows does
        names = 0
        for bucket in range(64):
            off = struct.unpack_from("<I", c, 128 + 4 * bucket)[0]
            while off:
                nxt, h, nch = struct.unpack_from("<IHH", c, off)
                name = c[off + 8:off + 8 + 2 * nch].decode("utf-16-le")
                assert h == _name_hash(name) and h % 64 == bucket
                names += 1
                off = nxt
        assert names >= 20  # Event, System, Provider, Name, ..., EventData, Data
    # python-evtx recomputes and checks the same CRCs
    from Evtx.Evtx import Evtx

    with Evtx(str(path)) as log:
        assert log.get_file_header().verify()
        chunks = list(log.chunks())
        assert len(chunks) == n and all(ch.verify() for ch in chunks)
        # its template table loader (which checks each pointer) finds the chunk's templates
        assert all(len(ch.templates()) >= 2 for ch in chunks)


def test_a_changed_byte_breaks_the_crc(written, tmp_path):
    path, _, _ = written
    data = bytearray(path.read_bytes())
    data[HEADER_BLOCK + 0x300] ^= 0x01  # inside the first record
    bad = tmp_path / "bad.evtx"
    bad.write_bytes(bytes(data))
    assert scan(io.BytesIO(bytes(data))).damage() == ["chunk data CRC mismatch in chunk(s) [0]"]
    from Evtx.Evtx import Evtx

    with Evtx(str(bad)) as log:
        assert [ch.verify() for ch in log.chunks()][:2] == [False, True]


def test_system_template_is_the_one_windows_writes(evidence, tmp_path):
    """Same System template as a real Sysmon log (computer name a literal, every type the same)."""
    from Evtx.Evtx import Evtx
    from Evtx.Views import evtx_template_readable_view

    with Evtx(str(evidence / "omerbenamram-evtx/samples/sysmon.evtx")) as log:
        real = next(r for r in log.records())
        real_outer = evtx_template_readable_view(real.root())
        real_inner = evtx_template_readable_view(real.root().substitutions()[17].root())
    ours = tmp_path / "ours.evtx"
    names = re.findall(r'Data Name="([^"]+)">\[Normal Substitution\(index=\d+, type=(\d+)\)', real_inner)
    kinds = {1: "x", 8: ("uint32", 1), 15: ("guid", uuid.UUID(int=1)), 21: ("hex64", 1)}
    write_evtx(ours, [Event(1, START, "Microsoft-Windows-Sysmon", "Microsoft-Windows-Sysmon/Operational",
                            "DESKTOP-2KGM189", event_data={n: kinds[int(t)] for n, t in names})])
    with Evtx(str(ours)) as log:
        rec = next(log.records())
        assert evtx_template_readable_view(rec.root()) == real_outer
        assert evtx_template_readable_view(rec.root().substitutions()[17].root()) == real_inner


def test_same_events_same_bytes(written, tmp_path):
    path, _, _ = written
    events, _ = generate()
    buf = io.BytesIO()
    with EvtxWriter(buf) as w:
        for e in events:
            w.write(e)
    assert buf.getvalue() == path.read_bytes()
    events[10].event_data = dict(events[10].event_data or {}, Extra="x")
    other = io.BytesIO()
    write_evtx(other, events)
    assert other.getvalue() != buf.getvalue()


def test_header_is_dirty_until_closed():
    buf = io.BytesIO()
    w = EvtxWriter(buf, first_record_id=1000)
    w.write(Event(1, START, "P", "C", "H"))
    assert struct.unpack_from("<I", buf.getvalue(), 120)[0] == 1  # open: dirty, as Windows marks a live log
    w.close()
    assert struct.unpack_from("<I", buf.getvalue(), 120)[0] == 0
    assert struct.unpack_from("<Q", buf.getvalue(), 24)[0] == 1001 and struct.unpack_from("<H", buf.getvalue(), 42)[0] == 1


def test_no_events_is_a_valid_empty_log(tmp_path):
    from evtx import PyEvtxParser

    path = tmp_path / "empty.evtx"
    assert write_evtx(path, []) == 0
    data = path.read_bytes()
    assert len(data) == HEADER_BLOCK and struct.unpack_from("<QH", data, 24)[0] == 1
    assert list(PyEvtxParser(str(path)).records_json()) == [] and scan(io.BytesIO(data)).damage() == []


def test_record_too_large_is_refused_and_nothing_is_lost(tmp_path):
    path = tmp_path / "big.evtx"
    with EvtxWriter(path) as w:
        w.write(Event(1, START, "P", "C", "H", event_data={"a": "small"}))
        with pytest.raises(RecordTooLarge, match=r"record 2 needs [\d,]+ bytes; a chunk holds 65,024"):
            w.write(Event(1, START + 1, "P", "C", "H", event_data={"a": "x" * 32_000}))
        with pytest.raises(RecordTooLarge):  # one value over the 65,535 bytes a substitution can say
            w.write(Event(1, START + 1, "P", "C", "H", event_data={"a": "x" * 40_000}))
        assert w.write(Event(1, START + 2, "P", "C", "H", event_data={"a": "y" * 31_500})) == 2  # opens chunk 2
        assert w.write(Event(1, START + 3, "P", "C", "H", event_data={"a": "small"})) == 3
        assert w.chunks == 2
    sc = scan(io.BytesIO(path.read_bytes()))
    assert [(f.number, f.chunk) for f in sc.frames] == [(1, 0), (2, 1), (3, 1)] and sc.damage() == []
    assert max(f.size for f in sc.frames) > MAX_RECORD_SIZE - 1200
    from evtx import PyEvtxParser

    got = [json.loads(r["data"])["Event"]["EventData"]["a"] for r in PyEvtxParser(str(path)).records_json()]
    assert got == ["small", "y" * 31_500, "small"]


@pytest.mark.parametrize("event, message", [
    (Event(1, dt.datetime(2022, 11, 23, 7, 0), "P", "C", "H"), "naive datetime"),
    (Event(70000, START, "P", "C", "H"), "event_id must be an int 0..65535, got 70000"),
    (Event(1, START, "P", "C", "H", event_data={"a": ("int8", 200)}), "a: 200 out of range -128..127"),
    (Event(1, START, "P", "C", "H", event_data={"a": ("word", 1)}), "unknown value type 'word'"),
    (Event(1, START, "P", "C", "H", event_data={"a": object()}), "no EVTX type for object"),
    (Event(1, START, "P", "C", "H", event_data={"a": ("sid", "S-1-x")}), "not a SID"),
    (Event(1, START, "P", "C", "H", event_data={"a": ("systemtime", dt.datetime(2022, 1, 1, 0, 0, 0, 1, tzinfo=UTC))}),
     "holds milliseconds"),
    (Event(1, START, "P", "C", "H", event_data={"a": ("ansi", "ডাক্তার")}), "not in code page 1252"),
    (Event(1, START, "P", "C", "H", event_data={"a": "\ud800"}), "cannot be stored as UTF-16"),
    (Event(1, START, "P", "C", "H", level=300), "level must be an int 0..255, got 300"),
    (Event(1, START, "P", "C", "", event_data={}), "computer must be a non-empty str"),
    (Event(1, START, "P", "C", "H", record_id=1), "ids must increase"),
    (Event(1, START, "P", "C", "H", event_data={"a": 1}, user_data=UserData("X", {})), "EventData or UserData"),
])
def test_bad_values_are_refused_clearly(event, message):
    buf = io.BytesIO()
    with EvtxWriter(buf) as w:
        w.write(Event(1, START, "P", "C", "H"))
        with pytest.raises(WriteError, match=re.escape(message)) as err:
            w.write(event)
        assert isinstance(err.value, ForensicsError)
        assert w.records == 1
    assert len(scan(io.BytesIO(buf.getvalue())).frames) == 1


def test_time_helpers():
    assert to_filetime(dt.datetime(1970, 1, 1, tzinfo=UTC)) == FILETIME_EPOCH
    ist = dt.timezone(dt.timedelta(hours=5, minutes=30))
    assert to_filetime(dt.datetime(2022, 11, 23, 7, 0, 0, 123456, tzinfo=ist)) == unix_ns_to_filetime(1669167000_123456000)
    with pytest.raises(WriteError, match="multiple of 100 ns"):
        unix_ns_to_filetime(1669167000_123456789)


def test_events_as_dicts_and_explicit_record_ids(tmp_path):
    from evtx import PyEvtxParser

    rows = [dict(event_id=4624, time=START + i, provider="P", channel="Security", computer="DC01",
                 record_id=rid, event_data={"TargetUserName": f"u{i}"}) for i, rid in enumerate((7, 8, 20))]
    a, b = io.BytesIO(), io.BytesIO()
    write_evtx(a, rows)
    write_evtx(b, [Event(**r) for r in rows])
    assert a.getvalue() == b.getvalue()
    path = tmp_path / "ids.evtx"
    path.write_bytes(a.getvalue())
    assert [r["event_record_id"] for r in PyEvtxParser(str(path)).records_json()] == [7, 8, 20]
    assert struct.unpack_from("<Q", a.getvalue(), 24)[0] == 21  # next record id
    with pytest.raises(WriteError, match="not an event"):
        write_evtx(io.BytesIO(), [dict(event_id=1, when=START)])


def test_memory_stays_bounded_while_streaming(tmp_path):
    """Only the chunk being filled is held: the peak does not grow with the file."""
    import tracemalloc

    def stream(n):
        for i in range(n):
            yield Event(4624, START + i * 10_000, "Microsoft-Windows-Security-Auditing", "Security", "DC01",
                        event_data={"TargetUserName": f"user{i}", "IpAddress": f"10.0.{i % 256}.{i % 250}",
                                    "CommandLine": "x" * (i % 700), "LogonId": ("hex64", i)})

    path = tmp_path / "stream.evtx"
    tracemalloc.start()
    try:
        n = write_evtx(path, stream(15_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == 15_000 and path.stat().st_size > 10 * 2**20
    assert peak < 2 * 2**20, peak
