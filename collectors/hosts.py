"""Which host each row belongs to, and how that was decided (``attrs.host_source``).

The first rule that applies wins (values in :data:`timeline.schema.HOST_SOURCES`):

1. ``given``: the analyst named the host of the evidence item (``forensics collect --host NAME ITEM...``,
   ``Case.collect(host=...)``).  It wins over everything the evidence says, for every row of the item; what
   the record itself named stays in ``attrs`` (syslog ``host``, EVTX ``Computer``...).
2. ``log``: the record names its host (syslog's host field, EVTX's Computer, the journal's _HOSTNAME, auditd's
   node, a Windows event export's Computer).  Syslog says so line by line; for the other collectors a row's
   host that differs from the artifact's own (rules 3-4) came from the record, and one equal to it is said to
   come from rules 3-4 (both name the same host).
3. ``os``: the OS tree or disk image states it (``/etc/hostname``, the registry's ComputerName).
4. ``folder``: a folder of the evidence item is named like a host (:func:`folder_host`).
5. ``unknown``: none of these; the ``host`` column is null and every output shows
   :data:`timeline.schema.UNKNOWN_HOST`.

Collectors fill ``host`` from the record, else from :attr:`collectors.base.Artifact.host` (rules 1, 3, 4, decided
before the artifact is read, so that it is part of each row's identity); :func:`stamp_hosts`, run on every table a
collection writes, applies rule 1, fills what is left and writes ``attrs.host_source``.

Host names come from hostile evidence.  A name a record holds stays as the record wrote it (rows keep the data
unchanged; every output escapes it: the CLI's ``terminal_safe``, the report's HTML escaping).  A name this module
derives is safe by construction: a folder's must look like a host name (:func:`looks_like_host`), the analyst's
is refused with control characters (:func:`check_given_host`), and the one an OS tree states is stored with
control, format and bidirectional characters as ``\\xNN`` / ``\\uXXXX`` escapes, cut at :data:`HOST_MAX`
(:func:`clean_host`).  A host name is only ever a value, never a path: ``../`` in it is text.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

from timeline.schema import HOST_GIVEN, HOST_LOG, HOST_UNKNOWN

__all__ = ["HOST_MAX", "clean_host", "folder_host", "looks_like_host", "stamp_hosts", "check_given_host"]

HOST_MAX = 255  # characters of a host name kept (DNS names are at most 253)

# C0/C1 controls, DEL, line/paragraph separators, bidirectional marks, overrides and isolates, lone surrogates
_UNSAFE = "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]"
_UNSAFE_RE = re.compile(_UNSAFE)

# A folder name that is a host name: DNS labels (letters, digits, hyphens; dots between labels), at most 63
# characters a label and 253 in all, starting with a letter or digit, holding at least one letter.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
# Folder names that name what a folder holds, not a host: never taken as one (compared lower-case; with a number
# after it too: logs2, W3SVC1, tomcat9, apache2).
GENERIC_FOLDERS = frozenset("""
    log logs var tmp temp data files file backup backups old new archive archives rotated evidence ev evid export exports
    input in incoming upload uploads src source sources sample samples test tests testdata fixtures
    collection collections case cases triage output out results dump dumps copy copies raw extracted artifacts
    apache apache-tomcat httpd nginx tomcat catalina iis w3svc logfiles inetpub www wwwroot web webserver webapps
    html htdocs public site sites sites-enabled access error errors syslog rsyslog journal audit auditd messages
    secure auth mail cron kern system security application windows winevt evtx linux unix etc usr opt home root
    users mnt media srv proc run lib sbin bin boot dev kape uac velociraptor c d e f g auto ntfs vss shadow tout mout
    modules targets
    mysql mariadb postgresql postgres pgsql redis mongodb elasticsearch kibana logstash jenkins gitlab docker containers
    pods kubernetes supervisor php php-fpm exchange sharepoint confluence jira atlassian wildfly jboss weblogic
    websphere glassfish haproxy squid varnish lighttpd caddy traefik envoy sshd samba bind named dns dhcp cups ftp
    vsftpd proftpd postfix exim dovecot sendmail openvpn fail2ban ufw firewalld iptables sysstat apt dpkg yum dnf
    installer unattended-upgrades private upstart landscape lightdm gdm xorg cloud-init amazon aws azure gcp
    """.split())
_NUMBERED = re.compile(r"(?:w3svc|tomcat|apache|httpd|nginx|php|logs?|backups?|archives?|old|rotated|part|disk|vol|"
                       r"volume|partition|export|collection|triage|case|evidence)[-.]?\d+", re.I)


def clean_host(name: object) -> str | None:
    """A host name from the evidence as rows store it: stripped, unsafe characters escaped, at most
    :data:`HOST_MAX` characters; None for nothing, ``-`` or an empty name."""
    if name is None:
        return None
    text = name if isinstance(name, str) else str(name)
    text = text.strip()
    if not text or text == "-":
        return None
    if _UNSAFE_RE.search(text):
        text = _UNSAFE_RE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                              else f"\\u{ord(m.group()):04x}", text)
    return text[:HOST_MAX]


def check_given_host(name: str) -> str:
    """The analyst's ``--host`` as given, or ValueError when it cannot name a host (empty, control characters)."""
    text = name.strip() if isinstance(name, str) else ""
    if not text:
        raise ValueError(f"--host needs a host name, not {name!r}")
    bad = next((c for c in text if _UNSAFE_RE.match(c) or unicodedata.category(c) in ("Cc", "Cf", "Cs")), None)
    if bad is not None:
        raise ValueError(f"host name {text!r} holds the control character U+{ord(bad):04X}")
    if len(text) > HOST_MAX:
        raise ValueError(f"host name of {len(text)} characters (at most {HOST_MAX})")
    return text


def looks_like_host(name: str) -> bool:
    """``name`` (a folder's) reads as a host name: DNS labels with a letter, not a generic folder name."""
    if len(name) > 253 or not _HOSTNAME.fullmatch(name) or not any(c.isalpha() for c in name):
        return False
    low = name.lower()
    return low not in GENERIC_FOLDERS and not _NUMBERED.fullmatch(low)


# Velociraptor names its collections "Collection-HOST-2024-03-01T10_00_00Z" (the time may be left out)
_VELOCIRAPTOR = re.compile(r"Collection-(?P<host>.+?)(?:-\d{4}-\d\d-\d\dT[\d_:.]+Z?)?", re.I)


def _host_in(name: str) -> str | None:
    m = _VELOCIRAPTOR.fullmatch(name)
    if m and looks_like_host(m["host"]):
        return m["host"]
    return name if looks_like_host(name) else None


def folder_host(item_folder: str | None, rel: str) -> str | None:
    """The host a folder names for the file at ``rel`` (posix path inside the evidence item): the nearest folder
    above the file, up to and including the evidence item's own folder (``item_folder``: its name, None when the
    item is a single file), whose name :func:`looks_like_host` (a Velociraptor collection folder
    ``Collection-HOST-<time>``: HOST).  ``web01/var/log/apache2/access.log`` → web01; an item ``/evidence/db-02``
    holding ``mysql/error.log`` → db-02; ``logs/access.log`` → None."""
    parts = rel.split("/")[:-1]
    if item_folder:
        parts.insert(0, item_folder)
    for name in reversed(parts):
        host = _host_in(name)
        if host:
            return host
    return None


def _insert_source(attrs: pa.Array, source: pa.Array) -> pa.Array:
    """``attrs`` (JSON objects as text) with ``"host_source": <source>`` as their first member."""
    values = pc.unique(source)
    if len(values) == 1 and pc.all(pc.starts_with(attrs, "{")).as_py():
        # the common case, one source for the whole table: one pass over the text (its first "{" is the object's)
        v = values[0].as_py()
        out = pc.replace_substring(attrs, "{", '{"host_source":"' + v + '",', max_replacements=1)
        empty = pc.equal(attrs, "{}")
        return pc.if_else(empty, '{"host_source":"' + v + '"}', out) if pc.any(empty).as_py() else out
    head = pc.binary_join_element_wise('{"host_source":"', source, '"', "")
    empty = pc.equal(pc.utf8_trim_whitespace(attrs), "{}")
    rest = pc.utf8_slice_codeunits(attrs, 1)
    joined = pc.if_else(empty, pc.binary_join_element_wise(head, "}", ""), pc.binary_join_element_wise(head, rest, ","))
    # a value that is not a JSON object (never written by our collectors) stays as it was
    return pc.if_else(pc.starts_with(attrs, "{"), joined, attrs)


_MARK = '{"host_source":"'  # a collector that knows says so as the first member (never a nested key of the record)


def stamp_hosts(table: pa.Table, fallback: Callable[[str, str], tuple[str | None, str | None]]) -> pa.Table:
    """Apply the rules of this module to a timeline table.  ``fallback(evidence_id, evidence_path)`` gives the
    artifact's host and its source (``given``, ``os``, ``folder``; (None, None) when none)."""
    n = table.num_rows
    if not n:
        return table
    ev_id, ev_path = table.column("evidence_id").combine_chunks(), table.column("evidence_path").combine_chunks()
    key = pc.binary_join_element_wise(ev_id, ev_path, "\x1f")
    uniq = pc.unique(key)
    pairs = [fallback(*k.split("\x1f", 1)) for k in uniq.to_pylist()]
    idx = pc.index_in(key, uniq)
    fb_host = pa.array([h for h, _ in pairs], pa.string()).take(idx)
    fb_src = pa.array([s if h is not None else None for h, s in pairs], pa.string()).take(idx)
    host = table.column("host").combine_chunks()
    attrs = table.column("attrs").combine_chunks()
    given = pc.fill_null(pc.equal(fb_src, HOST_GIVEN), False)
    said = pc.starts_with(attrs, _MARK)  # the collector wrote host_source itself (the record named the host)
    # rule 1, then the record's own name, then the artifact's
    new_host = pc.if_else(given, fb_host, pc.coalesce(host, fb_host))
    same = pc.fill_null(pc.equal(host, fb_host), False)
    src = pc.if_else(pc.is_null(new_host), HOST_UNKNOWN,
                     pc.if_else(pc.or_(pc.is_null(host), same), pc.fill_null(fb_src, HOST_LOG), HOST_LOG))
    src = pc.if_else(given, HOST_GIVEN, src)
    # the collector's own mark: kept, except that a given host overrides it
    if not pc.any(said).as_py():
        new_attrs = _insert_source(attrs, src)
    elif pc.all(said).as_py():
        new_attrs = attrs
    else:
        new_attrs = pc.if_else(said, attrs, _insert_source(attrs, src))
    if pc.any(pc.and_(said, given)).as_py():
        over = pc.replace_substring_regex(attrs, r'^\{"host_source":"[a-z]+"', '{"host_source":"' + HOST_GIVEN + '"',
                                          max_replacements=1)
        new_attrs = pc.if_else(pc.and_(said, given), over, new_attrs)
    table = table.set_column(table.schema.get_field_index("host"), table.schema.field("host"), new_host)
    return table.set_column(table.schema.get_field_index("attrs"), table.schema.field("attrs"), new_attrs)

