"""Web server logs: Apache/nginx access and error logs, IIS W3C, AWS load balancers, Confluence/Jira.

One line is one row (``source`` WEB).  Plain, rotated and compressed files alike; the format is
decided line by line (one file may mix access and error lines), so a file is ours when one of its
first lines is a web log line.  Name hints (``nginx``, ``apache``/``httpd``, ``jira``,
``confluence`` in the path) only choose between names of the same format, never accept a file.

Artifacts, with ``timestamp_desc`` and the zone of their times (``tz_source``):

============================== =================================== ============================================
artifact                       format                              time
============================== =================================== ============================================
``web:apache-access``          Common / Combined (``%h %l %u %t     "Request Received"; the line's own offset
``web:nginx-access``           \\"%r\\" %>s %b \\"%{Referer}i\\"      (``[10/Oct/2000:13:55:36 -0700]``):
``web:access``                 \\"%{User-agent}i\\"``), with a vhost   embedded_offset.  ``web:access`` when the
                               prefix (``vhost_combined``), extra   path does not say which server wrote it.
                               fields after the user agent, a       Nginx Proxy Manager lines are
                               missing ident field, malformed,      ``web:nginx-access`` (``attrs.format`` npm).
                               binary or empty (``"-"``) requests;
                               Nginx Proxy Manager formats
``web:apache-error``           ``[Wed Oct 11 14:32:52.123456 2000]  "Event Logged"; local time of the host
                               [core:error] [pid 1] [client ip:p]`` (:class:`collectors.text.Clock`: ``--tz``, the
``web:nginx-error``            ``2022/11/23 07:00:00 [error]        evidence's zone, else UTC assumed).
                               1#0: *1 msg, client: ip, ...``
``web:iis``                    IIS W3C extended (``#Fields:``, may  "Request Received"; UTC (source_utc).  A
                               change mid-file; ``#Date``,          file without a ``date`` field takes its date
                               ``#Software``)                       from ``#Date`` (a day is added when the time
                                                                    steps back more than 12 h).
``web:elb``                    AWS Classic ELB, ALB, NLB access     UTC (source_utc).  Classic: "Request
                               logs                                 Received"; ALB: "Response Sent" (its ``time``
                                                                    field; ``request_creation_time`` in attrs);
                                                                    NLB: "Connection Closed".
``web:confluence-access``,     Atlassian Tomcat access log, before  "Request Received"; embedded_offset.
``web:jira-access``,           and after X-Forwarded-For was added  (``web:atlassian-access`` when the path names
``web:atlassian-access``       (Confluence 7.11, Jira 9.4)          neither).
============================== =================================== ============================================

Columns: ``src_ip`` the client address (``src_host`` when it is a host name), ``user`` the remote or
authenticated user (never "-"), ``path`` the requested URL path (without the query), ``dst_ip`` /
``dst_port`` the server side where the log has it, ``provider`` the server kind; ``command_line`` stays
empty.  ``message`` reads like ``GET /shell.jsp?cmd=id 200 1234 from 1.2.3.4 "curl/7.1"``.

``attrs`` holds every field under common names: ``format``, ``method``, ``uri`` (the request target
as sent, query included), ``query``, ``protocol``, ``request`` (the raw request line), ``status`` and
``bytes`` (ints), ``referer``, ``user_agent``, ``vhost``, ``time_taken``, ``client_port``... ("-" becomes
null).  IIS keeps its raw fields under ``w3c``, ELB under its AWS field names, error logs their
level, module, pid, client and parsed ``key: value`` context.

A line no format reads is an error with its line number and the reason; a line read with an
anomaly (a user agent whose closing quote is missing) is a warning.  Identical lines are
distinct requests: each row's ``event_hash`` counts earlier identical lines of the file, so a
copy of the same file still merges with it.
"""

from __future__ import annotations

import collections
import datetime as _dt
import hashlib
import logging
import lzma
import os
import re
import zlib
from typing import Any, Callable, ClassVar, Iterator

import numpy as np
import orjson
import pyarrow as pa

from collectors.base import Artifact, ArtifactReport, Collector, RecordError, rotated
from collectors.text import MONTHS, Clock, lines, ns_of, open_lines, read_head
from timeline.errors import UnknownFormat
from timeline.schema import SCHEMA, TZ_EMBEDDED_OFFSET, TZ_SOURCE_UTC, cap_messages

__all__ = ["WebCollector", "parse_request", "split_uri"]

log = logging.getLogger(__name__)

_UTC = _dt.timezone.utc

# --- formats -------------------------------------------------------------------------------------

_CLF_TIME = r"\d{1,2}/[A-Za-z]{3}/\d{4}:\d\d:\d\d:\d\d(?:[.,]\d{1,9})? [+-]\d\d:?\d\d"
_QUOTED = r'[^"\\]*(?:\\.[^"\\]*)*'  # a quoted field's text, backslash escapes allowed
# %h %l %u [%t] "%r" %>s %b ["%{Referer}i" "%{User-agent}i"] [extra]; the prefix before the time is split
# in Python (vhost, client, ident, user; ident missing in some nginx formats).
_CLF = re.compile(
    r'(?P<pre>[^\[\s][^\[]*?) \[(?P<time>' + _CLF_TIME + r')\] "(?P<request>.*?)" (?P<status>\d{3}|-) (?P<bytes>\d+|-)'
    r'(?: "(?P<referer>' + _QUOTED + r')"(?: "(?P<ua>' + _QUOTED + r')(?P<uaend>"|$))?)?(?P<extra>.*)', re.S)
# The common case, with the request line split by the regex (no vhost, a well-formed request).
_CLF_FAST = re.compile(
    r'(?P<client>[^\s\[]+) (?P<ident>[^\s\[]+) (?P<user>[^\s\[]+) \[(?P<time>' + _CLF_TIME + r')\] '
    r'"(?P<method>[A-Z][A-Z0-9_-]*) (?P<path>/[^\s?#"]*)(?:\?(?P<query>[^\s#"]*))?(?P<frag>#[^\s"]*)? '
    r'(?P<proto>[A-Z]{2,10}/\d+(?:\.\d+)?)" (?P<status>\d{3}|-) (?P<bytes>\d+|-)'
    r'(?: "(?P<referer>' + _QUOTED + r')" "(?P<ua>' + _QUOTED + r')")?(?P<extra>.*)', re.S)
# The same for Arrow's RE2 (the bulk path, :meth:`WebCollector._bulk`): anchored; the optional parts are captured
# whole (``qpart``, ``tail``) because RE2 reports a group that did not take part as "", not as missing.
_CLF_BULK = (
    r'(?s)^(?P<client>[^\s\[]+) (?P<ident>[^\s\[]+) (?P<user>[^\s\[]+) \[(?P<time>' + _CLF_TIME + r')\] '
    r'"(?P<method>[A-Z][A-Z0-9_-]*) (?P<path>/[^\s?#"]*)(?P<qpart>\?(?P<query>[^\s#"]*))?(?P<frag>#[^\s"]*)? '
    r'(?P<proto>[A-Z]{2,10}/\d+(?:\.\d+)?)" (?P<status>\d{3}|-) (?P<bytes>\d{1,18}|-)'
    r'(?P<tail> "(?P<referer>' + _QUOTED + r')" "(?P<ua>' + _QUOTED + r')")?(?P<extra>.*)$')
# Nginx Proxy Manager: [time] [cache upstream_status] status - method scheme host "uri" [Client ip] [Length n]
# [Gzip r] [Sent-to server] "ua" "referer"
_NPM = re.compile(
    r'\[(?P<time>' + _CLF_TIME + r')\] (?:(?P<cache>\S+) (?P<upstream_status>\d{3}|-) )?(?P<status>\d{3}) - '
    r'(?P<method>\S+) (?P<scheme>\S+) (?P<vhost>\S+) "(?P<uri>' + _QUOTED + r')" \[Client (?P<client>[^\]]+)\] '
    r'\[Length (?P<bytes>[^\]]+)\] \[Gzip (?P<gzip>[^\]]+)\](?: \[Sent-to (?P<sent_to>[^\]]+)\])? '
    r'"(?P<ua>' + _QUOTED + r')" "(?P<referer>' + _QUOTED + r')"(?P<extra>.*)', re.S)
# Nginx Proxy Manager's "proxy host" fallback: [time] host client request_time "request" status body_bytes bytes_sent referer ua
_NPM_HOST = re.compile(
    r'\[(?P<time>' + _CLF_TIME + r')\] (?P<vhost>\S+) (?P<client>\S+) (?P<request_time>\d+\.\d+|-) "(?P<request>.*?)" '
    r'(?P<status>\d{3}) (?P<bytes>\d+|-) (?P<bytes_sent>\d+|-) (?P<referer>\S+) (?P<ua>.*)', re.S)
# Atlassian (Confluence, Jira): [time] [xff] user thread host method uri protocol status Nms bytes referer ua
_ATLASSIAN = re.compile(
    r'\[(?P<time>' + _CLF_TIME + r')\] (?:(?P<xff>\S+) )?(?P<user>\S+) (?P<thread>\S+) (?P<client>\S+) '
    r'(?P<method>[A-Z][A-Z_-]*) (?P<uri>\S+) (?P<protocol>\S+) (?P<status>\d{3}) (?P<ms>\d+)ms (?P<bytes>\d+|-) '
    r'(?P<referer>\S+) ?(?P<ua>.*)', re.S)
_APACHE_ERROR = re.compile(
    r'\[(?:[A-Z][a-z]{2}) (?P<mon>[A-Z][a-z]{2}) {1,2}(?P<d>\d{1,2}) (?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d)'
    r'(?:\.(?P<frac>\d{1,9}))? (?P<y>\d{4})\] \[(?:(?P<module>[^:\]\s]*):)?(?P<level>[a-z]+\d?)\](?P<rest>.*)', re.S)
_APACHE_ERROR_REST = re.compile(
    r'(?: \[pid (?P<pid>\d+)(?::tid (?P<tid>\d+))?\])?(?: (?P<oserror>\(-?\d+\)[^\[]*?):)?'
    r'(?: \[client (?P<client>[^\]]+)\])?(?: \[remote (?P<remote>[^\]]+)\])? ?(?:(?P<code>AH\d{5}): )?(?P<msg>.*)', re.S)
_NGINX_ERROR = re.compile(
    r'(?P<y>\d{4})/(?P<mo>\d\d)/(?P<d>\d\d) (?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d) '
    r'\[(?P<level>debug|info|notice|warn|error|crit|alert|emerg)\] (?P<pid>\d+)#(?P<tid>\d+): (?:\*(?P<cid>\d+) )?(?P<msg>.*)', re.S)
_NGINX_CTX = re.compile(r', (client|server|request|upstream|host|referrer|login|subrequest): ("(?:[^"\\]|\\.)*"|[^,]*)')
_NGINX_MAIL_CLIENT = re.compile(r'client (?P<ip>[0-9A-Fa-f:.]+?):(?P<port>\d+) connected to (?P<dst>\S+)')
_ELB_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\S+')
_ISO_Z = re.compile(r'(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z?$')
_IIS_SOFTWARE = "#Software: Microsoft Internet Information Services"
_METHOD = re.compile(r'[A-Z][A-Z0-9_-]*$')
_PROTO = re.compile(r'[A-Z]{2,10}/\d+(?:\.\d+)?$')
_ADDR = re.compile(r'(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f.]*)(?:%\S+)?$')
_AUTH_USER = (
    re.compile(r'user (?P<user>\S+?):? (?:not found|authentication failure)'),
    re.compile(r'user "(?P<user>(?:[^"\\]|\\.)*)"(?::| was not found| is not)'),
)

_ELB_CLASSIC = ("time", "elb", "client", "backend", "request_processing_time", "backend_processing_time",
                "response_processing_time", "elb_status_code", "backend_status_code", "received_bytes", "sent_bytes",
                "request", "user_agent", "ssl_cipher", "ssl_protocol")
_ELB_ALB = ("type", "time", "elb", "client", "target", "request_processing_time", "target_processing_time",
            "response_processing_time", "elb_status_code", "target_status_code", "received_bytes", "sent_bytes",
            "request", "user_agent", "ssl_cipher", "ssl_protocol", "target_group_arn", "trace_id", "domain_name",
            "chosen_cert_arn", "matched_rule_priority", "request_creation_time", "actions_executed", "redirect_url",
            "error_reason", "target_port_list", "target_status_code_list", "classification", "classification_reason",
            "conn_trace_id")
_ELB_NLB = ("type", "version", "time", "elb", "listener", "client", "destination", "connection_time",
            "tls_handshake_time", "received_bytes", "sent_bytes", "incoming_tls_alert", "chosen_cert_arn",
            "chosen_cert_serial", "tls_cipher", "tls_protocol_version", "tls_named_group", "domain_name",
            "alpn_fe_protocol", "alpn_be_protocol", "alpn_client_preference_list", "tls_connection_creation_time")
_ALB_TYPES = {"http", "https", "h2", "grpcs", "ws", "wss"}

# IIS W3C field → common attrs name
_W3C = {"s-sitename": "site", "s-computername": "server", "s-ip": "server_ip", "cs-method": "method",
        "cs-uri-stem": "path", "cs-uri-query": "query", "s-port": "server_port", "cs-username": "user",
        "c-ip": "client", "cs-version": "protocol", "cs(user-agent)": "user_agent", "cs(cookie)": "cookie",
        "cs(referer)": "referer", "cs-host": "vhost", "sc-status": "status", "sc-substatus": "substatus",
        "sc-win32-status": "win32_status", "sc-bytes": "bytes", "cs-bytes": "bytes_received",
        "time-taken": "time_taken", "x-forwarded-for": "forwarded_for"}
_W3C_INT = {"status", "substatus", "win32_status", "bytes", "bytes_received", "time_taken", "server_port"}


def _none(v: str | None) -> str | None:
    return None if v is None or v == "-" or v == "" else v


def _int(v: str | None) -> int | None:
    if v is None:
        return None
    try:
        return int(v)
    except ValueError:
        return None


def _num(v: str | None) -> float | int | None:
    if v is None or v in ("-", ""):
        return None
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return None


def _is_addr(s: str | None) -> bool:
    return bool(s) and _ADDR.match(s) is not None


def _addr_port(s: str | None) -> tuple[str | None, int | None]:
    """``1.2.3.4:80`` → (1.2.3.4, 80); IPv6 ``[::1]:80`` or ``::1:80`` (when a port is known to follow)."""
    if not s or s == "-":
        return None, None
    if s.startswith("["):
        host, _, port = s[1:].partition("]:")
        return host.rstrip("]"), _int(port)
    host, sep, port = s.rpartition(":")
    if sep and port.isdigit() and (host.count(":") == 0 or host.count(":") >= 2):
        return host, int(port)
    return s, None


def split_uri(uri: str | None) -> tuple[str | None, str | None, str | None]:
    """Request target → (path, query, host of an absolute URL).  ``None`` path for a target that is not a
    URL path (``*``, a CONNECT authority, garbage)."""
    if not uri:
        return None, None, None
    host = None
    low = uri[:8].lower()
    if low.startswith("http://") or low.startswith("https://"):
        rest = uri.split("://", 1)[1]
        slash = rest.find("/")
        q = rest.find("?")
        cut = min(x for x in (slash, q, len(rest)) if x >= 0)
        host, rest = rest[:cut], rest[cut:]
        uri = rest if rest.startswith("/") else "/" + rest
    elif not uri.startswith("/"):
        return None, None, None
    path, sep, query = uri.split("#", 1)[0].partition("?")
    return path, (query if sep else None), host


def parse_request(request: str | None) -> tuple[str | None, str | None, str | None]:
    """``GET /x?y HTTP/1.1`` → (method, uri, protocol); (None, None, None) for a request that is not an
    HTTP request line (binary, ``-``, a single word)."""
    if not request or request == "-":
        return None, None, None
    proto = None
    head, sep, last = request.rpartition(" ")
    if sep and _PROTO.match(last):
        proto, request = last, head
    method, sep, uri = request.partition(" ")
    if not sep or not _METHOD.match(method) or not uri:
        return None, None, None
    return method, uri, proto


def _days(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def _month_days(y: int, m: int) -> int:
    if m == 2:
        return 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28
    return 30 if m in (4, 6, 9, 11) else 31


_CLF_PARTS = re.compile(r'(\d{1,2})/([A-Za-z]{3})/(\d{4}):(\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))? ([+-])(\d\d):?(\d\d)$')


def _clf_ns(s: str, cache: dict[str, int]) -> int:
    """``10/Oct/2000:13:55:36 -0700`` → UTC ns (memoised: a busy log repeats each second many times)."""
    v = cache.get(s)
    if v is not None:
        return v
    if len(s) == 26 and s[2] == "/" and s[20] == " ":  # dd/Mon/yyyy:HH:MM:SS +zzzz, without datetime
        month = MONTHS.get(s[3:6])
        try:
            y, d, hh, mi, ss = int(s[7:11]), int(s[0:2]), int(s[12:14]), int(s[15:17]), int(s[18:20])
            off = int(s[22:24]) * 60 + int(s[24:26])
        except ValueError:
            month = None
        if month is not None and s[21] in "+-" and 1 <= d <= _month_days(y, month) and hh < 24 and mi < 60 and ss < 60:
            v = ((_days(y, month, d) * 86400 + hh * 3600 + mi * 60 + ss) - (off if s[21] == "+" else -off) * 60) * 1_000_000_000
            if len(cache) > 100_000:
                cache.clear()
            cache[s] = v
            return v
    m = _CLF_PARTS.match(s)
    if m is None:
        raise ValueError(f"bad time {s!r}")
    d, mon, y, hh, mi, ss, frac, sign, oh, om = m.groups()
    month = MONTHS.get(mon.title())
    if month is None:
        raise ValueError(f"bad month in {s!r}")
    off = int(oh) * 60 + int(om)
    tz = _dt.timezone(_dt.timedelta(minutes=-off if sign == "-" else off))
    v = ns_of(_dt.datetime(int(y), month, int(d), int(hh), int(mi), int(ss), tzinfo=tz),
              int(frac.ljust(9, "0")) if frac else 0)
    if len(cache) > 100_000:
        cache.clear()
    cache[s] = v
    return v


def _iso_ns(s: str) -> int:
    """``2020-01-11T16:55:20.356586Z`` (or without ``Z``: AWS writes UTC) → ns."""
    m = _ISO_Z.match(s)
    if m is None:
        raise ValueError(f"bad time {s!r}")
    y, mo, d, h, mi, sec, frac = m.groups()
    return ns_of(_dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(sec), tzinfo=_UTC),
                 int(frac.ljust(9, "0")) if frac else 0)


def _unq(v: str | None) -> str | None:
    """Strip the quotes of a quoted token; "-" is null."""
    if v is None:
        return None
    if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        v = v[1:-1]
    return _none(v)


# --- the collector ----------------------------------------------------------------------------------


class _Rec:
    """One parsed line: time, meaning, and the fields the row is made from."""

    __slots__ = ("ns", "desc", "tz_source", "kind", "provider", "user", "client", "dst_ip", "dst_port", "path",
                 "message", "attrs", "host")

    def __init__(self) -> None:
        self.user = self.client = self.dst_ip = self.dst_port = self.path = self.message = self.host = None


class WebCollector(Collector):
    name = "web"
    source = "WEB"
    engines = ("web",)
    parser = ("forensics-web", "forensics")
    _WANTED = rotated(r"access\.log|error\.log|access_log|error_log|u_ex\d+\.log")  # Apache, nginx, IIS

    @classmethod
    def wants(cls, name: str) -> bool:
        return bool(cls._WANTED.match(name))


    # --- recognising --------------------------------------------------------------------------

    @staticmethod
    def _head_lines(path: str, n: int = 10) -> list[str]:
        head = read_head(path, 8192)
        if not head or b"\x00" in head[:512]:
            return []
        out = []
        for raw in head.splitlines()[:-1] if len(head) == 8192 else head.splitlines():
            line = raw.decode("utf-8", "backslashreplace").rstrip("\r")
            if line.strip():
                out.append(line)
            if len(out) >= n:
                break
        return out

    @classmethod
    def _kind_of_line(cls, line: str) -> str | None:
        if line.startswith("#"):
            if line.startswith(_IIS_SOFTWARE):
                return "iis"
            if line.startswith("#Fields:"):
                fields = line[8:].lower().split()
                return "iis" if {"cs-method", "cs-uri-stem", "c-ip"} & set(fields) else None
            return None
        for kind, rx in (("clf", _CLF), ("npm", _NPM), ("npm_host", _NPM_HOST), ("atlassian", _ATLASSIAN),
                         ("apache_error", _APACHE_ERROR), ("nginx_error", _NGINX_ERROR)):
            if rx.fullmatch(line):
                return kind
        if _elb_fields(line) is not None:
            return "elb"
        return None

    @classmethod
    def matches(cls, path: str) -> bool:
        heads = cls._head_lines(path)
        if not heads:
            return False
        first = heads[0]
        if cls._kind_of_line(first):
            return True
        if first.startswith("#"):  # W3C headers before #Fields / #Software
            return any(l.startswith("#") and cls._kind_of_line(l) == "iis" for l in heads)
        # the first line is odd (truncated, binary): the name must say "web log" and a later line agree
        name = os.path.basename(path).lower()
        hinted = any(h in name for h in ("access", "error", "u_ex", "w3svc", "elb", "nginx", "apache", "httpd", "iis"))
        return hinted and any(cls._kind_of_line(l) for l in heads[1:])

    @classmethod
    def check_compatible(cls, path: str) -> None:
        if not cls.matches(path):
            raise UnknownFormat(f"{path}: not a web server log (expected Apache/nginx Common or Combined, Apache or "
                                "nginx error, IIS W3C extended, AWS ELB/ALB/NLB or Confluence/Jira access lines)")

    # --- reading ------------------------------------------------------------------------------

    bulk: ClassVar[bool] = True  # False: every line row by row (the tests compare both paths)
    bulk_min: ClassVar[int] = 64  # fewer lines than this in a block: row by row (Arrow's set-up costs more)

    def collect(self, artifact: Artifact, batch_rows: int = 100_000) -> Iterator[pa.Table]:
        """Lines go through :meth:`_bulk` in blocks (Common/Combined access lines, column-wise, Arrow's RE2);
        what it does not take (other formats, odd lines) row by row, in file order within each path."""
        self.check_compatible(artifact.fs_path)
        rep = self.report(artifact)
        st = _State(artifact, rep)
        rows = self._rows
        append = rows.append
        ev_id, ev_path, host0 = artifact.evidence_id, artifact.evidence_path, artifact.host
        parser = self._parser
        sha256 = hashlib.sha256  # event_hash("WEB", host, ns, line, k), inline
        ident = _Identity()  # identical lines so far (the k of each row's identity)
        addr_cache: dict[str | None, bool] = {}
        parsers = st.parsers
        last: Callable[[str, int], _Rec | None] | None = None
        block: list[tuple[int, str]] = []
        bulk = self.bulk
        block_size = min(batch_rows, 50_000)
        count = n = 0

        def one(n: int, line: str) -> None:
            nonlocal last, count
            rec = None
            try:
                if st.fields is not None:
                    rec = st.iis(line, n)
                else:
                    if last is not None:
                        rec = last(line, n)
                    if rec is None:
                        for p in parsers:
                            if p is not last and (rec := p(line, n)) is not None:
                                last = p
                                break
            except (ValueError, OverflowError) as exc:
                rep.errors.append(RecordError(f"line={n}", "bad_time", f"{exc}: {line[:160]!r}"))
                return
            if rec is None:
                if st.fields is None or not st.iis_error:
                    rep.errors.append(RecordError(f"line={n}", "unparsed_line",
                                                  f"not a recognised web log line: {line[:160]!r}"))
                st.iis_error = None
                return
            k = ident.next((rec.ns, line))
            host = rec.host or host0
            client = rec.client
            is_ip = addr_cache.get(client)
            if is_ip is None:
                is_ip = addr_cache[client] = client is not None and _is_addr(client)
                if len(addr_cache) > 50_000:
                    addr_cache.clear()
            if is_ip:
                src_ip, src_host = client, None
            else:
                src_ip, src_host = None, client
            msg = rec.message
            append((rec.ns, rec.desc, host, "WEB", rec.kind, None, None, rec.provider, rec.user, None, None,
                    src_ip, src_host, rec.dst_ip, rec.dst_port, None, None, None, rec.path, None, msg,
                    _json(rec.attrs), [], rec.tz_source, ev_id, ev_path, f"line={n}", parser,
                    sha256(f"WEB\x1f{host or ''}\x1f{rec.ns}\x1f{line}\x1f{k}".encode("utf-8", "surrogatepass")).hexdigest()[:32]))
            count += 1

        def flush() -> Iterator[pa.Table]:
            nonlocal bulk, count
            todo, block[:] = list(block), []
            if bulk and len(todo) >= self.bulk_min:
                table, todo = self._bulk(todo, st, artifact, ident, addr_cache)
                if table is not None:
                    count += table.num_rows
                    yield table
                if len(todo) * 2 > block_size:  # mostly not Common/Combined: row by row from here on
                    bulk = False
            for n_, line_ in todo:
                one(n_, line_)
                if len(rows) >= batch_rows:
                    yield rows.to_table()

        try:
            with open_lines(artifact.fs_path, rep) as fh:  # lines cut at LINE_MAX bytes (a counted warning)
                for n, line in lines(fh):
                    if not line.strip():
                        continue
                    if line[0] == "#":
                        yield from flush()  # a directive changes how the lines after it are read
                        st.directive(line, n)
                        continue
                    if bulk and st.fields is None:
                        block.append((n, line))
                        if len(block) >= block_size:
                            yield from flush()
                        continue
                    one(n, line)
                    if len(rows) >= batch_rows:
                        yield rows.to_table()
        except (EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
            rep.errors.append(RecordError(None, "truncated", f"stream ended early after line {n}: {exc}"))
        yield from flush()
        rep.stats["rows"] = count
        for k, v in st.counts.items():
            rep.stats[f"format_{k}"] = v

    def _bulk(self, block: list[tuple[int, str]], st: _State, art: Artifact, ident: _Identity,
              addr_cache: dict[str | None, bool]) -> tuple[pa.Table | None, list[tuple[int, str]]]:
        """Common/Combined access lines of ``block`` → their timeline table, column by column (the values
        :meth:`_State.clf` gives one by one; the tests compare both); returns the lines it did not take.

        Only printable-ASCII lines are taken (where RE2's and Python's ``\\s``/``\\d`` agree and JSON needs
        no escapes but quote and backslash)."""
        import pyarrow.compute as pc

        texts = pa.array([t for _, t in block], pa.string())
        m = pc.extract_regex(texts, _CLF_BULK)
        f = {name: pc.struct_field(m, name) for name in ("client", "ident", "user", "time", "method", "path",
                                                           "qpart", "query", "frag", "proto", "status", "bytes",
                                                           "tail", "referer", "ua", "extra")}
        take = pc.and_(pc.is_valid(m), pc.invert(pc.match_substring_regex(texts, r"[^\x20-\x7e]")))
        take = pc.and_(take, pc.or_(pc.not_equal(f["tail"], ""), pc.equal(f["extra"], "")))
        take = pc.fill_null(take, False)
        # times: each distinct string once (a busy log repeats each second)
        times = f["time"]
        uniq = pc.unique(pc.filter(times, take))
        ns_u = []
        for t in uniq.to_pylist():
            try:
                ns_u.append(_clf_ns(t, st.cache))
            except (ValueError, OverflowError):
                ns_u.append(None)  # the row-by-row path records the error
        ns_all = pa.array(ns_u, pa.int64()).take(pc.index_in(times, uniq))
        take = pc.fill_null(pc.and_(take, pc.is_valid(ns_all)), False)
        idx = pc.indices_nonzero(take)
        rest = [block[i] for i in pc.indices_nonzero(pc.invert(take)).to_pylist()]
        if not len(idx):
            return None, rest
        f = {k: v.take(idx) for k, v in f.items()}
        ns = ns_all.take(idx)
        n = len(idx)
        null_s = pa.scalar(None, pa.string())

        def dash(a: pa.Array) -> pa.Array:  # "-" → null
            return pc.if_else(pc.equal(a, "-"), null_s, a)

        def present(part: str, a: pa.Array) -> pa.Array:  # a group inside an optional part: null when absent
            return pc.if_else(pc.equal(f[part], ""), null_s, a)

        def q(a: pa.Array) -> pa.Array:  # JSON string or null
            esc = pc.replace_substring(pc.replace_substring(a, "\\", "\\\\"), '"', '\\"')
            return pc.fill_null(pc.binary_join_element_wise('"', esc, '"', ""), "null")

        def num(a: pa.Array) -> pa.Array:  # JSON int or null ("-")
            return pc.fill_null(pc.cast(pc.cast(dash(a), pa.int64()), pa.string()), "null")

        client, method, path, proto = f["client"], f["method"], f["path"], f["proto"]
        uri = pc.binary_join_element_wise(path, f["qpart"], f["frag"], "")
        referer = present("tail", f["referer"])
        ua = dash(present("tail", f["ua"]))
        user = dash(f["user"])
        common = pc.and_(pc.is_null(ua), pc.is_null(referer))
        fmt = pc.if_else(common, "common", "combined")
        extra = pc.utf8_trim_whitespace(f["extra"])
        request = pc.binary_join_element_wise(method, uri, proto, " ")
        attrs = pc.binary_join_element_wise(
            '{"format":', q(fmt), ',"client":', q(client), ',"ident":', q(dash(f["ident"])), ',"user":', q(user),
            ',"time":', q(f["time"]), ',"request":', q(request), ',"method":', q(method), ',"uri":', q(uri),
            ',"path":', q(path), ',"query":', q(present("qpart", f["query"])), ',"protocol":', q(proto),
            ',"status":', num(f["status"]), ',"bytes":', num(f["bytes"]), ',"referer":', q(dash(referer)),
            ',"user_agent":', q(ua),
            pc.if_else(pc.equal(extra, ""), "", pc.binary_join_element_wise(',"extra":', q(extra), "")), "}", "")
        msg = pc.binary_join_element_wise(method, uri, f["status"], f["bytes"], "from", client, " ")
        with_ua = pc.fill_null(pc.not_equal(ua, ""), False)
        msg = pc.if_else(with_ua, pc.binary_join_element_wise(msg, ' "', ua, '"', ""), msg)
        msg = cap_messages(msg)
        # client: an address (src_ip) or a host name (src_host), decided once per distinct client
        cl = pc.unique(client)
        flags = []
        for c in cl.to_pylist():
            v = addr_cache.get(c)
            if v is None:
                v = addr_cache[c] = _is_addr(c)
            flags.append(v)
        is_ip = pa.array(flags, pa.bool_()).take(pc.index_in(client, cl))
        if len(addr_cache) > 50_000:
            addr_cache.clear()
        # identity: as the row-by-row path (k counts earlier identical lines of the file)
        host = art.host
        lines_taken = [block[i][1] for i in idx.to_pylist()]
        sha256 = hashlib.sha256
        nxt = ident.next
        hashes = [sha256(f"WEB\x1f{host or ''}\x1f{t}\x1f{line}\x1f{nxt((t, line))}".encode("utf-8", "surrogatepass")).hexdigest()[:32]
                  for t, line in zip(ns.to_pylist(), lines_taken)]
        refs = [f"line={block[i][0]}" for i in idx.to_pylist()]
        n_common = pc.sum(common).as_py() or 0
        for fmt_name, k in (("common", n_common), ("combined", n - n_common)):
            if k:
                st.counts[fmt_name] += k

        def const(v: Any, typ: pa.DataType = pa.string()) -> pa.Array:
            return pa.repeat(pa.scalar(v, typ), n)

        none_s, none_i = const(None), const(None, pa.int32())
        table = pa.Table.from_arrays([
            ns.cast(pa.timestamp("ns", tz="UTC")), const("Request Received"), const(host), const("WEB"),
            const(st.access_kind), pa.repeat(pa.scalar(None, SCHEMA.field("event_id").type), n), none_s,
            const(st.server), user, none_s, none_s, pc.if_else(is_ip, client, null_s),
            pc.if_else(is_ip, null_s, client), none_s, none_i, none_s, none_s, none_s, path, none_s, msg, attrs,
            pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, dtype=np.int32)), pa.array([], pa.string())),
            const(TZ_EMBEDDED_OFFSET), const(art.evidence_id), const(art.evidence_path), pa.array(refs, pa.string()),
            const(self._parser), pa.array(hashes, pa.string()),
        ], schema=SCHEMA)
        return table, rest


def _json(attrs: dict[str, Any]) -> str:
    try:
        return orjson.dumps(attrs).decode()
    except orjson.JSONEncodeError:  # an integer beyond 64 bits ("bytes" of a forged line): the standard library's
        import json

        return json.dumps(attrs, separators=(",", ":"), ensure_ascii=False)


class _Identity:
    """The k of each row's ``event_hash``: how many identical lines (same time, same text) came before in
    the file.  Two generations of 20,000 keys: bounded memory, no gap at the turn."""

    __slots__ = ("seen", "old")

    def __init__(self) -> None:
        self.seen: dict[tuple[int, str], int] = {}
        self.old: dict[tuple[int, str], int] = {}

    def next(self, key: tuple[int, str]) -> int:
        k = self.seen.get(key)
        if k is None:
            k = self.old.get(key, 0)
        self.seen[key] = k + 1
        if len(self.seen) > 20_000:
            self.old, self.seen = self.seen, {}
        return k


def _elb_fields(line: str) -> tuple[str, tuple[str, ...], list[str]] | None:
    """(variant, field names, tokens) of an AWS load balancer line, None when it is not one."""
    c = line[:1]
    if not (c.isdigit() or c.isalpha()):
        return None
    tokens = _ELB_TOKEN.findall(line)
    if len(tokens) >= 15 and tokens[0][:1].isdigit() and _ISO_Z.match(tokens[0]) and ":" in tokens[2] \
            and tokens[11].startswith('"'):
        return "classic", _ELB_CLASSIC, tokens
    if len(tokens) >= 16 and tokens[0] in _ALB_TYPES and _ISO_Z.match(tokens[1]) and tokens[12].startswith('"'):
        return "application", _ELB_ALB, tokens
    if len(tokens) >= 12 and tokens[0] in ("tls", "tcp", "udp") and tokens[1] == "2.0" and _ISO_Z.match(tokens[2]):
        return "network", _ELB_NLB, tokens
    return None


class _State:
    """Per-file parsing state: the IIS header, the clock for local times, names from the path."""

    def __init__(self, art: Artifact, rep: ArtifactReport):
        self.rep = rep
        self.clock = Clock.for_artifact(art.tz, art.tz_source)
        hint = f"{art.evidence_path} {art.fs_path}".lower()
        self.server = "nginx" if "nginx" in hint else "apache" if ("apache" in hint or "httpd" in hint) else None
        self.atlassian = "jira" if "jira" in hint else "confluence" if ("confluence" in hint or "conf_access" in hint) else None
        self.fields: list[str] | None = None
        self.iis_date: str | None = None
        self.iis_software: str | None = None
        self.iis_prev: int | None = None
        self.iis_days = 0
        self.iis_error: str | None = None
        self.cache: dict[str, int] = {}
        self.counts: collections.Counter[str] = collections.Counter()
        self.access_kind = f"web:{self.server}-access" if self.server else "web:access"
        self.parsers = (self.clf, self.apache_error, self.nginx_error, self.npm, self.npm_host, self.atlassian_line,
                        self.elb)

    def _count(self, fmt: str) -> None:
        self.counts[fmt] += 1

    # --- IIS W3C --------------------------------------------------------------------------------

    def directive(self, line: str, n: int) -> None:
        if line.startswith("#Fields:"):
            self.fields = [f.lower() for f in line[8:].split()]
            self.iis_prev = None
        elif line.startswith("#Date:"):
            self.iis_date = line[6:].strip()
            self.iis_days = 0
            self.iis_prev = None
        elif line.startswith("#Software:"):
            self.iis_software = line[10:].strip()
        # #Version, #Remark, #Start-Date...: nothing to keep per row

    def iis(self, line: str, n: int) -> _Rec | None:
        fields = self.fields
        values = line.split()
        if len(values) != len(fields):
            self.iis_error = "bad_fields"
            self.rep.errors.append(RecordError(f"line={n}", "bad_fields", f"{len(values)} values for the {len(fields)} "
                                                                           f"#Fields {' '.join(fields)}: {line[:160]!r}"))
            return None
        w3c = dict(zip(fields, values))
        date = w3c.get("date")
        time_ = w3c.get("time")
        if time_ is None:
            self.iis_error = "bad_time"
            self.rep.errors.append(RecordError(f"line={n}", "bad_time", f"no time field in #Fields: {line[:160]!r}"))
            return None
        note = None
        if date is None:
            if not self.iis_date:
                self.iis_error = "bad_time"
                self.rep.errors.append(RecordError(f"line={n}", "bad_time", f"no date field and no #Date header: {line[:160]!r}"))
                return None
            base = _dt.datetime.strptime(self.iis_date[:10], "%Y-%m-%d")
            secs = _secs(time_)
            if self.iis_prev is not None and secs < self.iis_prev - 43200:
                self.iis_days += 1
            self.iis_prev = secs
            date = (base + _dt.timedelta(days=self.iis_days)).strftime("%Y-%m-%d")
            note = f"date from the #Date header {self.iis_date}" + (f" + {self.iis_days} day(s)" if self.iis_days else "")
        ns = self._iis_ns(date, time_)
        a: dict[str, Any] = {"format": "w3c"}
        for k, v in w3c.items():
            name = _W3C.get(k)
            if name is None:
                continue
            v2 = _none(v)
            if name in _W3C_INT:
                a[name] = _int(v2) if v2 is not None else None
            elif name in ("user_agent", "cookie", "referer") and v2 is not None:
                a[name] = v2.replace("+", " ") if name == "user_agent" else v2
            else:
                a[name] = v2
        path, query = a.get("path"), a.get("query")
        a["uri"] = (path + ("?" + query if query else "")) if path else None
        if self.iis_software:
            a["software"] = self.iis_software
        if note:
            a["date_source"] = note
        a["w3c"] = w3c
        r = _Rec()
        r.ns, r.desc, r.tz_source, r.kind, r.provider = ns, "Request Received", TZ_SOURCE_UTC, "web:iis", "iis"
        r.user, r.client, r.dst_ip, r.dst_port, r.path = a.get("user"), a.get("client"), a.get("server_ip"), a.get("server_port"), path
        r.host = a.get("server")
        r.attrs = a
        r.message = _message(a.get("method"), a["uri"], None, a.get("status"), a.get("bytes"), r.client, a.get("user_agent"))
        self._count("w3c")
        return r

    def _iis_ns(self, date: str, time_: str) -> int:
        key = date + " " + time_
        v = self.cache.get(key)
        if v is None:
            m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?", key)
            if m is None:
                raise ValueError(f"bad IIS date/time {key!r}")
            y, mo, d, h, mi, s, frac = m.groups()
            v = ns_of(_dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=_UTC),
                      int(frac.ljust(9, "0")) if frac else 0)
            if len(self.cache) > 100_000:
                self.cache.clear()
            self.cache[key] = v
        return v

    # --- Common / Combined and relatives ----------------------------------------------------------

    def clf(self, line: str, n: int) -> _Rec | None:
        m = _CLF_FAST.fullmatch(line)
        if m is not None and (m.end("bytes") == len(line) or m.start("referer") >= 0):
            client, ident, user, time_s, method, path, query, frag, proto, status, nbytes, referer, ua, extra = m.groups()
            uri = path if query is None else f"{path}?{query}"
            if frag:
                uri += frag
            status_i = None if status == "-" else int(status)
            bytes_i = None if nbytes == "-" else int(nbytes)
            user = None if user == "-" else user
            ua = None if ua == "-" else ua
            a = {"format": "common" if ua is None and referer is None else "combined", "client": client,
                 "ident": None if ident == "-" else ident, "user": user, "time": time_s,
                 "request": f"{method} {uri} {proto}", "method": method, "uri": uri, "path": path, "query": query,
                 "protocol": proto, "status": status_i, "bytes": bytes_i,
                 "referer": None if referer == "-" else referer, "user_agent": ua}
            if extra:
                extra = extra.strip()
                if extra:
                    a["extra"] = extra
            r = _Rec()
            r.ns = _clf_ns(time_s, self.cache)
            r.desc, r.tz_source, r.provider, r.kind = "Request Received", TZ_EMBEDDED_OFFSET, self.server, self.access_kind
            r.user, r.client, r.path, r.attrs = user, client, path, a
            r.message = (f'{method} {uri} {status} {nbytes} from {client} "{ua}"' if ua else
                         f"{method} {uri} {status} {nbytes} from {client}")
            self.counts[a["format"]] += 1
            return r
        m = _CLF.fullmatch(line)
        if m is None:
            return None
        pre, time_s, request, status, nbytes, referer, ua, uaend, extra = m.group(
            "pre", "time", "request", "status", "bytes", "referer", "ua", "uaend", "extra")
        toks = pre.split(" ")
        vhost = ident = None
        if len(toks) == 1:
            client, user = toks[0], None
        elif len(toks) == 2:  # ident missing ("$remote_addr - [$time_local]" formats)
            client, user = toks
        elif len(toks) == 3:
            client, ident, user = toks
        elif _is_addr(toks[0]):
            client, ident, user = toks[0], toks[1], " ".join(toks[2:])
        else:
            vhost, client, ident, user = toks[0], toks[1], toks[2], " ".join(toks[3:])
        ns = _clf_ns(time_s, self.cache)
        method, uri, proto = parse_request(request)
        path, query, uhost = split_uri(uri)
        a: dict[str, Any] = {"format": "combined" if ua is not None else "common"}
        if vhost is not None:
            a["format"] = "vhost_" + a["format"]
            vh, vport = _addr_port(vhost)
            a["vhost"], a["vhost_port"] = vh, vport
        elif uhost:
            a["vhost"] = uhost
        a.update(client=client, ident=_none(ident), user=_none(user), time=time_s, request=request, method=method,
                 uri=uri, path=path, query=query, protocol=proto, status=_int(status), bytes=_int(nbytes),
                 referer=_none(referer), user_agent=_none(ua))
        extra = extra.strip()
        if extra:
            a["extra"] = extra
        if ua is not None and uaend == "":
            a["note"] = "user agent not closed by a quote (line cut short?)"
            self.rep.warn("damage", "user agent not closed by a quote (line cut short?)", f"line={n}")
        r = _Rec()
        server = self.server
        r.ns, r.desc, r.tz_source, r.provider = ns, "Request Received", TZ_EMBEDDED_OFFSET, server
        r.kind = f"web:{server}-access" if server else "web:access"
        r.user, r.client, r.path, r.dst_port = a["user"], client, path, a.get("vhost_port")
        r.attrs = a
        r.message = _message(method, uri, request, a["status"], a["bytes"], client, a["user_agent"])
        self._count(a["format"])
        return r

    def npm(self, line: str, n: int) -> _Rec | None:
        m = _NPM.fullmatch(line)
        if m is None:
            return None
        g = m.groupdict()
        ns = _clf_ns(g["time"], self.cache)
        uri = g["uri"]
        path, query, _ = split_uri(uri)
        a: dict[str, Any] = {"format": "npm", "time": g["time"], "cache_status": _none(g["cache"]),
                             "status": _int(g["status"]), "upstream_status": _int(g["upstream_status"]),
                             "method": g["method"], "scheme": g["scheme"], "vhost": g["vhost"], "uri": uri, "path": path,
                             "query": query, "client": g["client"], "bytes": _int(g["bytes"]), "gzip_ratio": _num(g["gzip"]),
                             "sent_to": g["sent_to"], "user_agent": _none(g["ua"]), "referer": _none(g["referer"])}
        if g["extra"].strip():
            a["extra"] = g["extra"].strip()
        return self._nginx_rec(a, ns, g["method"], uri, None, g["client"], path)

    def npm_host(self, line: str, n: int) -> _Rec | None:
        m = _NPM_HOST.fullmatch(line)
        if m is None:
            return None
        g = m.groupdict()
        ns = _clf_ns(g["time"], self.cache)
        method, uri, proto = parse_request(g["request"])
        path, query, _ = split_uri(uri)
        a: dict[str, Any] = {"format": "npm_host", "time": g["time"], "vhost": g["vhost"], "client": g["client"],
                             "request_time": _num(g["request_time"]), "request": g["request"], "method": method,
                             "uri": uri, "path": path, "query": query, "protocol": proto, "status": _int(g["status"]),
                             "bytes": _int(g["bytes"]), "bytes_sent": _int(g["bytes_sent"]),
                             "referer": _none(g["referer"]), "user_agent": _none(g["ua"])}
        return self._nginx_rec(a, ns, method, uri, g["request"], g["client"], path)

    def _nginx_rec(self, a, ns, method, uri, request, client, path) -> _Rec:
        r = _Rec()
        r.ns, r.desc, r.tz_source, r.provider, r.kind = ns, "Request Received", TZ_EMBEDDED_OFFSET, "nginx", "web:nginx-access"
        r.client, r.path, r.attrs = client, path, a
        r.message = _message(method, uri, request, a["status"], a["bytes"], client, a["user_agent"])
        self._count(a["format"])
        return r

    def atlassian_line(self, line: str, n: int) -> _Rec | None:
        m = _ATLASSIAN.fullmatch(line)
        if m is None:
            return None
        g = m.groupdict()
        ns = _clf_ns(g["time"], self.cache)
        path, query, _ = split_uri(g["uri"])
        a: dict[str, Any] = {"format": "atlassian", "time": g["time"], "forwarded_for": _none(g["xff"]),
                             "user": _none(g["user"]), "thread": g["thread"], "client": g["client"], "method": g["method"],
                             "uri": g["uri"], "path": path, "query": query, "protocol": g["protocol"],
                             "status": int(g["status"]), "time_taken": int(g["ms"]), "time_taken_unit": "ms",
                             "bytes": _int(g["bytes"]), "referer": _none(g["referer"]), "user_agent": _none(g["ua"].strip())}
        r = _Rec()
        app = self.atlassian
        r.ns, r.desc, r.tz_source, r.provider = ns, "Request Received", TZ_EMBEDDED_OFFSET, app or "atlassian"
        r.kind = f"web:{app}-access" if app else "web:atlassian-access"
        r.user, r.client, r.path, r.attrs = a["user"], g["client"], path, a
        r.message = _message(g["method"], g["uri"], None, a["status"], a["bytes"], g["client"], a["user_agent"])
        self._count("atlassian")
        return r

    # --- AWS load balancers ---------------------------------------------------------------------

    def elb(self, line: str, n: int) -> _Rec | None:
        found = _elb_fields(line)
        if found is None:
            return None
        variant, names, tokens = found
        a: dict[str, Any] = {"format": f"elb-{variant}", "elb_type": variant}
        for name, tok in zip(names, tokens):
            a[name] = _unq(tok)
        if len(tokens) > len(names):
            a["extra_fields"] = [_unq(t) for t in tokens[len(names):]]
        ns = _iso_ns(a["time"])
        client, cport = _addr_port(a.get("client"))
        a["client"], a["client_port"] = client, cport
        r = _Rec()
        r.ns, r.tz_source, r.provider, r.kind, r.client = ns, TZ_SOURCE_UTC, "elb", "web:elb", client
        if variant == "network":
            r.desc = "Connection Closed"
            dst, dport = _addr_port(a.get("destination"))
            r.dst_ip, r.dst_port = dst, dport
            for k in ("received_bytes", "sent_bytes", "connection_time", "tls_handshake_time"):
                a[k] = _num(a.get(k))
            a["bytes"] = a["sent_bytes"]
            r.message = (f"{a.get('listener') or ''} connection from {client} to {a.get('destination')} "
                         f"({a.get('sent_bytes')} bytes sent, {a.get('received_bytes')} received)").strip()
        else:
            r.desc = "Request Received" if variant == "classic" else "Response Sent"
            method, uri, proto = parse_request(a.get("request"))
            path, query, uhost = split_uri(uri)
            target = a.get("backend") if variant == "classic" else a.get("target")
            dst, dport = _addr_port(target)
            a.update(method=method, uri=uri, path=path, query=query, protocol=proto, vhost=uhost,
                     status=_int(a.get("elb_status_code")), bytes=_int(a.get("sent_bytes")),
                     elb_status_code=_int(a.get("elb_status_code")),
                     **{k: _int(a.get(k)) for k in ("backend_status_code", "target_status_code") if k in a},
                     user_agent=a.get("user_agent"))
            for k in ("received_bytes", "sent_bytes", "request_processing_time", "response_processing_time",
                      "backend_processing_time", "target_processing_time"):
                if k in a:
                    a[k] = _num(a[k])
            r.dst_ip, r.dst_port, r.path = dst, dport, path
            r.message = _message(method, uri, a.get("request"), a["status"], a["bytes"], client, a["user_agent"])
        r.attrs = a
        self._count(a["format"])
        return r

    # --- error logs -----------------------------------------------------------------------------

    def apache_error(self, line: str, n: int) -> _Rec | None:
        m = _APACHE_ERROR.fullmatch(line)
        if m is None:
            return None
        month = MONTHS.get(m["mon"])
        if month is None:
            return None
        frac = m["frac"]
        ns, note = self.clock.local_ns(int(m["y"]), month, int(m["d"]), int(m["h"]), int(m["mi"]), int(m["s"]),
                                       int(frac.ljust(9, "0")) if frac else 0)
        rest = _APACHE_ERROR_REST.fullmatch(m["rest"])
        g = rest.groupdict() if rest else {"msg": m["rest"].strip()}
        modern = m["module"] is not None or g.get("pid") is not None
        client, cport = _client_port(g.get("client"), modern)
        a: dict[str, Any] = {"format": "apache-error", "module": m["module"], "level": m["level"],
                             "pid": _int(g.get("pid")), "tid": _int(g.get("tid")), "os_error": g.get("oserror"),
                             "client": client, "client_port": cport, "remote": g.get("remote"), "code": g.get("code"),
                             "error": g["msg"]}
        if note:
            a["time_note"] = note
        r = _Rec()
        r.ns, r.desc, r.tz_source, r.provider, r.kind = ns, "Event Logged", self.clock.tz_source, "apache", "web:apache-error"
        r.client = client
        r.user = _auth_user(g["msg"], a)
        r.attrs = a
        r.message = line[line.index("]") + 1:].strip()
        self._count("apache-error")
        return r

    def nginx_error(self, line: str, n: int) -> _Rec | None:
        m = _NGINX_ERROR.fullmatch(line)
        if m is None:
            return None
        ns, note = self.clock.local_ns(int(m["y"]), int(m["mo"]), int(m["d"]), int(m["h"]), int(m["mi"]), int(m["s"]))
        msg = m["msg"]
        a: dict[str, Any] = {"format": "nginx-error", "level": m["level"], "pid": int(m["pid"]), "tid": int(m["tid"]),
                             "connection": _int(m["cid"]), "error": msg}
        for k, v in _NGINX_CTX.findall(msg):
            v = v.strip()
            a[k] = v[1:-1] if len(v) >= 2 and v[0] == '"' and v[-1] == '"' else (v or None)
        client = a.get("client")
        if client is not None:
            client = client.split(" ", 1)[0]  # "1.2.3.4 using starttls"
            a["client"] = client
        else:
            mc = _NGINX_MAIL_CLIENT.search(msg)
            if mc:
                client = a["client"] = mc["ip"]
                a["client_port"], a["server"] = int(mc["port"]), mc["dst"]
        path = None
        if a.get("request"):
            method, uri, proto = parse_request(a["request"])
            path, query, _ = split_uri(uri)
            a.update(method=method, uri=uri, path=path, query=query, protocol=proto)
        if note:
            a["time_note"] = note
        r = _Rec()
        r.ns, r.desc, r.tz_source, r.provider, r.kind = ns, "Event Logged", self.clock.tz_source, "nginx", "web:nginx-error"
        r.client, r.path = client, path
        r.user = _auth_user(msg, a) or _none(a.get("login"))
        r.attrs = a
        r.message = line[20:].strip()
        self._count("nginx-error")
        return r


def _secs(t: str) -> int:
    h, m, s = t.split(":")[:3]
    return int(h) * 3600 + int(m) * 60 + int(float(s))


def _client_port(s: str | None, has_port: bool) -> tuple[str | None, int | None]:
    if not s:
        return None, None
    host, sep, port = s.rpartition(":")
    if sep and port.isdigit() and (host.count(":") == 0 or has_port):
        return host, int(port)
    return s, None


def _auth_user(msg: str, a: dict[str, Any]) -> str | None:
    """The account of an authentication failure message (Apache mod_auth_basic, nginx auth_basic)."""
    if "user" not in msg:
        return None
    for rx in _AUTH_USER:
        m = rx.search(msg)
        if m:
            a["auth_user"] = m["user"]
            a["outcome"] = "failure"
            return m["user"]
    return None


def _message(method, uri, request, status, nbytes, client, ua) -> str:
    req = f"{method} {uri}" if method else f'"{request}"' if request else '"-"'
    out = f"{req} {'-' if status is None else status} {'-' if nbytes is None else nbytes} from {client or '-'}"
    return f'{out} "{ua}"' if ua else out
