"""Hives written by :mod:`collectors.regf_writer`, read back by two independent parsers:
dissect.regf (what the collector uses) and regipy."""

from __future__ import annotations

import datetime as dt
import struct

import pytest
from dissect.regf import RegistryHive as DissectHive
from regipy.registry import RegistryHive as RegipyHive

from collectors.evtx_writer import to_filetime
from collectors.regf_writer import Key, hive_bytes, lh_hash, write_hive
from timeline.errors import WriteError

UTC = dt.timezone.utc
T_ROOT = dt.datetime(2024, 3, 1, 10, 20, 30, 123456, tzinfo=UTC)
T_SVC = 133_547_100_671_234_567  # a FILETIME with 100 ns digits: 2024-03-12 09:41:07.1234567 UTC
T_OLD = dt.datetime(2019, 1, 1, tzinfo=UTC)
BIG = bytes(range(256)) * 80  # 20480 bytes: stored as a big-data (db) cell

VALUES = {
    "": "default value",
    "Name": "DC01",
    "ImagePath": ("expand_sz", "%SystemRoot%\\PSEXESVC.exe"),
    "Start": 3,
    "Bias": ("dword", 0xFFFFFEB6),
    "BigEndian": ("dword_be", 0x01020304),
    "Size": 2**40 + 5,
    "Small": ("qword", 7),
    "Blob": b"\x01\x02\x03\x04\x05\x06",
    "Tiny": b"\xAA",
    "Big": BIG,
    "Dependencies": ["RpcSs", "Tcpip"],
    "Ünïcode": "värde",
}


def _tree() -> Key:
    return Key("ROOT", T_ROOT, subkeys=[
        Key("ControlSet001", T_OLD, subkeys=[Key("Services", T_OLD, subkeys=[
            Key("zeta", T_SVC, VALUES), Key("Alpha", T_OLD), Key("beta", T_OLD), Key("Ωmega", T_OLD)])]),
        Key("Select", T_OLD, {"Current": 1}),
        Key("Lsa", T_OLD, class_name="8f2e1c0a"),
    ])


@pytest.fixture
def hive(tmp_path):
    p = tmp_path / "SYSTEM"
    write_hive(p, _tree(), "\\REGISTRY\\MACHINE\\SYSTEM")
    return p


def test_dissect_regf_reads_names_values_types_and_times(hive):
    with open(hive, "rb") as f:
        h = DissectHive(f)
        assert h.filename == "\\REGISTRY\\MACHINE\\SYSTEM" and not h.in_transaction
        root = h.root()
        assert [k.name for k in root.subkeys()] == ["ControlSet001", "Lsa", "Select"]
        svcs = h.open("ControlSet001\\Services")
        # sorted as Windows sorts: by upper-case name
        assert [k.name for k in svcs.subkeys()] == ["Alpha", "beta", "zeta", "Ωmega"]
        zeta = h.open("CONTROLSET001\\services\\ZETA")  # lookups are case-insensitive, through the lh hashes
        got = {v.name: (v.type, v.value) for v in zeta.values()}
        assert got == {
            "(Default)": (1, "default value"), "Name": (1, "DC01"), "ImagePath": (2, "%SystemRoot%\\PSEXESVC.exe"),
            "Start": (4, 3), "Bias": (4, 0xFFFFFEB6), "BigEndian": (5, 0x01020304), "Size": (11, 2**40 + 5),
            "Small": (11, 7), "Blob": (3, b"\x01\x02\x03\x04\x05\x06"), "Tiny": (3, b"\xAA"), "Big": (3, BIG),
            "Dependencies": (7, ["RpcSs", "Tcpip"]), "Ünïcode": (1, "värde")}
        assert h.open("Select").value("Current").value == 1
        assert h.open("Lsa").class_name == "8f2e1c0a"
        # the raw FILETIMEs are exact; dissect turns them into datetimes through a float (dissect.util's
        # wintimestamp), which loses the 100 ns digit and can be a microsecond off (a dissect limitation)
        assert root.cell.LastWriteTime == to_filetime(T_ROOT) and zeta.cell.LastWriteTime == T_SVC
        assert root.timestamp == dt.datetime(2024, 3, 1, 10, 20, 30, 123455, tzinfo=UTC)  # written: .123456
        assert zeta.timestamp == dt.datetime(2024, 3, 12, 9, 41, 7, 123455, tzinfo=UTC)  # written: .1234567


def test_regipy_reads_the_same_hive(hive):
    h = RegipyHive(str(hive))
    keys = {k.path: k for k in h.recurse_subkeys(as_json=False)}
    assert sorted(keys) == ["\\", "\\ControlSet001", "\\ControlSet001\\Services", "\\ControlSet001\\Services\\Alpha",
                            "\\ControlSet001\\Services\\beta", "\\ControlSet001\\Services\\zeta",
                            "\\ControlSet001\\Services\\Ωmega", "\\Lsa", "\\Select"]
    assert keys["\\"].timestamp == T_ROOT
    zeta = h.get_key("\\ControlSet001\\Services\\zeta")
    assert zeta.header.last_modified == T_SVC
    got = {v.name: (v.value_type, v.value) for v in zeta.iter_values()}
    assert got["(default)"] == ("REG_SZ", "default value")
    assert got["ImagePath"] == ("REG_EXPAND_SZ", "%SystemRoot%\\PSEXESVC.exe")
    assert got["Start"] == ("REG_DWORD", 3) and got["Bias"] == ("REG_DWORD", 0xFFFFFEB6)
    assert got["Size"] == ("REG_QWORD", 2**40 + 5) and got["Small"] == ("REG_QWORD", 7)
    assert got["Blob"] == ("REG_BINARY", "010203040506")  # regipy gives small binary data as hex
    assert got["Big"] == ("REG_BINARY", BIG)
    assert got["Dependencies"] == ("REG_MULTI_SZ", ["RpcSs", "Tcpip"])
    assert got["Ünïcode"] == ("REG_SZ", "värde")
    assert h.get_key("\\Lsa").get_class_name() == "8f2e1c0a"
    assert keys["\\Select"].values_count == 1


def test_base_block_checksum_bins_and_determinism(tmp_path):
    data = hive_bytes(_tree(), "SYSTEM")
    assert data == hive_bytes(_tree(), "SYSTEM")
    assert data[:4] == b"regf" and len(data) % 4096 == 0
    csum = 0
    for (w,) in struct.iter_unpack("<I", data[:508]):
        csum ^= w
    assert struct.unpack_from("<I", data, 508)[0] == csum
    seq1, seq2, ts = struct.unpack_from("<IIQ", data, 4)
    assert seq1 == seq2 and ts == to_filetime(T_ROOT)
    assert struct.unpack_from("<I", data, 40)[0] == len(data) - 4096  # hive-bins data size
    off = 4096
    while off < len(data):  # bins chain to the end, each a multiple of 4096 bytes
        sig, rel, size = struct.unpack_from("<4sII", data, off)
        assert sig == b"hbin" and rel == off - 4096 and size % 4096 == 0
        off += size
    assert off == len(data)


def test_lh_hash_is_windows_name_hash():
    assert lh_hash("a") == ord("A")
    assert lh_hash("Ab") == ord("A") * 37 + ord("B")
    assert lh_hash("ControlSet001") == lh_hash("CONTROLSET001")


def test_bad_values_and_names_are_refused():
    with pytest.raises(WriteError, match="unknown type"):
        hive_bytes(Key("R", T_ROOT, {"x": ("float", 1.0)}))
    with pytest.raises(WriteError, match="cannot hold"):
        hive_bytes(Key("R", T_ROOT, {"x": ("dword", 2**33)}))
    with pytest.raises(WriteError, match="bool"):
        hive_bytes(Key("R", T_ROOT, {"x": True}))
    with pytest.raises(WriteError, match="differ only in case"):
        hive_bytes(Key("R", T_ROOT, subkeys=[Key("Run", T_ROOT), Key("RUN", T_ROOT)]))
    with pytest.raises(WriteError, match="naive"):
        hive_bytes(Key("R", dt.datetime(2024, 1, 1)))
