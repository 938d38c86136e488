#!/usr/bin/env python3
"""Check an audit_portal export against its signed digests, with nothing but Python and ``cryptography``.

    python scripts/verify_audit_export.py --events events.ndjson --digests digests/ --public-key key.pub.pem

The export comes from ``flask --app wsgi audit export --format ndjson --with-digests DIR``; the public key from the
portal's Integrity page (or ``GET /api/v1/audit-logs/digests/public-key``), obtained from the operator by a channel
of your own. Give ``--public-key`` again for each key of a rotation.

Exit status: 0 when everything verifies; 1 when something does not (every problem is printed, the first one
first); 2 when the input cannot be read (a file missing, a public key that does not parse).

What is checked (the format is defined in the portal's ``audit_portal/audit/integrity/canonical.py``):

- every digest's Ed25519 signature, by a key given here (after a rotation, by the key the digest before it named
  as the next one: give every key), each digest's ``previous_signature``, and that the digests follow one another
  with no gap from the first;
- every exported event: its public form (personal fields as salted commitments; erased fields by the commitment
  kept) hashes to its row hash;
- the public chain, link by link, from one signed head to the next: an edited, deleted, inserted or reordered
  event, or a truncated tail, breaks it;
- a purged event's tombstone: a purge record signed into a digest must cover it (its category's cutoff, the holds);
- withheld events (a filtered export): counted and named as such; ``--complete`` fails unless there are none and the
  export starts at the first digest (only a whole export can show that nothing was deleted).

This file imports nothing from the portal, so an auditor can copy it alone. Keep it in step with canonical.py.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
except ImportError:  # pragma: no cover - said plainly rather than as a traceback
    sys.exit("verify_audit_export.py needs the 'cryptography' package: pip install cryptography")

GENESIS = "0" * 64
PERSONAL_FIELDS = ("username", "ip_address", "user_agent", "description", "metadata")
#: An erasure empties these, and replaces the person's names in these by ERASED.
NULLED, REDACTED, ERASED = ("username", "ip_address", "user_agent"), ("description", "metadata"), "[erased]"
MAX_PRINTED = 50


class BadInput(Exception):
    """The input cannot be read (exit status 2)."""


def encode(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def commitment(salt: str, value) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + encode(value)).hexdigest()


def row_hash(event: dict, salts: dict, erased: dict) -> str:
    form = dict(event)
    for name in PERSONAL_FIELDS:
        form[name] = erased[name] if name in erased else commitment(salts[name], event[name])
    return hashlib.sha256(encode(form)).hexdigest()


def material(seq: int, timestamp: str | None, category: str | None, digest: str | None) -> bytes:
    return f"{seq}|{timestamp}|{category}|{digest}".encode()


def public_link(prev: str, link_material: bytes) -> str:
    return hashlib.sha256(prev.encode() + b"|" + link_material).hexdigest()


def fingerprint(key: Ed25519PublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def load_public_key(path: str) -> Ed25519PublicKey:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BadInput(f"--public-key {path}: cannot be read ({exc.strerror})") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise BadInput(f"--public-key {path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BadInput(f"--public-key {path}: not an Ed25519 public key")
    return key


def load_digests(directory: str) -> list[dict]:
    folder = Path(directory)
    if not folder.is_dir():
        raise BadInput(f"--digests {directory}: not a directory")
    digests = []
    for path in sorted(folder.glob("digest-*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            body = json.loads(document["body"])
            digests.append({"file": path.name, "text": document["body"], "signature": document["signature"],
                            **body})
        except (ValueError, KeyError, TypeError) as exc:
            raise BadInput(f"--digests: {path.name} is not a digest file ({exc})") from None
    if not digests:
        raise BadInput(f"--digests {directory}: no digest files (digest-*.json) in it")
    return sorted(digests, key=lambda d: d["first_seq"])


def load_lines(path: str) -> tuple[dict, list[dict]]:
    """The export's header (what was asked for) and its lines."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"--events {path}: cannot be read ({exc.strerror})") from None
    header, lines = {}, []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if number == 1 and isinstance(item, dict) and item.get("type") == "export":
                header = item
                continue
            int(item["seq"])
        except (ValueError, KeyError, TypeError):
            raise BadInput(f"--events {path}: line {number} is not a line of an export with digests") from None
        lines.append(item)
    return header, lines


class Report:
    def __init__(self):
        self.problems: list[str] = []

    def problem(self, text: str) -> None:
        self.problems.append(text)


def check_digests(digests: list[dict], keys: dict[str, Ed25519PublicKey], report: Report) -> None:
    """Signatures (by a given key, or the next key a valid digest named), linkage, and no gap between digests."""
    allowed: str | None = None  # the fingerprint the next digest must be signed with (None: any given key)
    previous = None
    for digest in digests:
        name = f"digest {digest['file']} (links {digest['first_seq']}-{digest['last_seq']})"
        fp = digest.get("key_fingerprint")
        key = keys.get(fp)
        if key is None:
            report.problem(f"{name} is signed by another key (fingerprint {fp}), not by a public key given here.")
        else:
            try:
                key.verify(base64.b64decode(digest["signature"]), digest["text"].encode())
            except (InvalidSignature, ValueError):
                report.problem(f"{name}: its signature does not verify: the digest was changed.")
            if allowed is not None and fp != allowed:
                report.problem(f"{name} is signed by key {fp}, but the previous digest named {allowed}.")
        if previous is not None:
            if digest["first_seq"] != previous["last_seq"] + 1:
                report.problem(f"{name} does not follow the digest ending at link {previous['last_seq']}: "
                               "a digest is missing.")
            elif digest.get("prev_head") != previous.get("head"):
                report.problem(f"{name} does not continue the chain head of the digest before it.")
            if digest.get("previous_signature") != previous["signature"]:
                report.problem(f"{name}: its previous_signature is not the previous digest's signature.")
        allowed = digest.get("next_key_fingerprint") or fp
        previous = digest


def _time(value):
    """An aware time from a signed record's ISO text (UTC when it says no zone); None when it is not a time."""
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def purged_by(purges: list[dict], seq: int, timestamp: str | None, category: str | None) -> dict | None:
    """The signed purge record that explains a tombstone (``integrity/tombstones.py`` in the portal)."""
    moment = _time(timestamp)
    if moment is None:
        return None
    for purge in purges:
        if seq > purge.get("head_seq", 0):
            continue
        cutoffs = purge.get("cutoffs") or {}
        cutoff = _time(cutoffs.get(category or "", cutoffs.get("*")))
        if cutoff is None or moment >= cutoff:
            continue
        holds = [(_time(start), _time(end)) for start, end in purge.get("holds") or []]
        if any(start is None or end is None or start <= moment <= end for start, end in holds):
            continue  # held (a hold it cannot read counts as holding everything: never a reason to pass)
        return purge
    return None


def _check_line(item: dict, purges: list[dict], report: Report, counts: dict) -> bytes:
    """Check one line on its own (an event against its row hash, a tombstone against the purges); its link
    material."""
    seq = item["seq"]
    if item.get("type") == "event":
        event = item.get("event") or {}
        counts["events"] += 1
        counts["erased"] += bool(item.get("erased"))
        try:
            digest = row_hash(event, item.get("salts") or {}, item.get("erased") or {})
        except (KeyError, ValueError, TypeError):
            digest = None
        if digest is None or digest != item.get("row_hash"):
            report.problem(f"Event {event.get('id')} (link {seq}) was changed after it was recorded.")
        for name in item.get("erased") or {}:  # checked by the kept commitment: the value must show the erasure
            value = event.get(name)
            if (name in NULLED and value is not None) or (name in REDACTED and ERASED not in encode(value).decode()):
                report.problem(f"Event {event.get('id')} (link {seq}): its erased {name} was changed afterwards.")
        return material(seq, event.get("timestamp"), event.get("category"), item.get("row_hash"))
    counts["links"] += 1
    if item.get("purged"):
        if purged_by(purges, seq, item.get("timestamp"), item.get("category")) is None:
            report.problem(f"The event at link {seq} was deleted: no signed purge record covers it.")
        else:
            counts["purged"] += 1
    return material(seq, item.get("timestamp"), item.get("category"), item.get("row_hash"))


def check_chain(lines: list[dict], digests: list[dict], report: Report, start: int | None = None) -> dict:
    """Rebuild the public chain over the export's lines, from the start of the digest that covers the first line (the
    export begins at a digest's first link) to the last digest's end. Purges are read from every digest."""
    purges = [p for digest in digests for p in digest.get("purges") or []]
    ends = {digest["last_seq"]: digest for digest in digests}
    last = digests[-1]
    if start is None:  # an export without its header: from its first line
        start = lines[0]["seq"] if lines else digests[0]["first_seq"]
    first = next((d for d in digests if d["first_seq"] == start), None)
    if first is None:
        report.problem(f"The export says it starts at link {start}, which is not the first link of a digest.")
        first = digests[0]
    prev = first.get("prev_head") or GENESIS
    expected = first["first_seq"]
    counts = {"events": 0, "links": 0, "purged": 0, "erased": 0, "first_seq": first["first_seq"]}
    for item in lines:
        seq = item["seq"]
        if seq < expected:
            report.problem(f"Line for link {seq} comes after link {expected - 1}: events were reordered or "
                           "inserted.")
            continue
        if seq > last["last_seq"]:
            report.problem(f"Link {seq} is not covered by any digest (the last one ends at link {last['last_seq']}).")
            continue
        if seq > expected:
            report.problem(f"Links {expected} to {seq - 1} are missing from the export: events were deleted.")
            for missing in range(expected, seq):  # the head checks below cannot pass either
                if missing in ends:
                    report.problem(f"The chain does not reach the head of the digest ending at link {missing}.")
            expected = seq
            prev = None
        link_material = _check_line(item, purges, report, counts)
        current = public_link(prev, link_material) if prev is not None else None
        if seq in ends and current != ends[seq]["head"]:
            report.problem(f"Links {ends[seq]['first_seq']} to {seq} do not match the signed digest "
                           f"{ends[seq]['file']}: an event in that range was changed, inserted, deleted or moved.")
            current = ends[seq]["head"]  # go on from the signed head, so one problem is reported once
        prev = current if current is not None else (ends[seq]["head"] if seq in ends else None)
        expected = seq + 1
    if expected <= last["last_seq"]:
        report.problem(f"The export ends at link {expected - 1}, but the digests cover links up to "
                       f"{last['last_seq']}: the tail was cut.")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", required=True, help="the export (NDJSON, with digests)")
    parser.add_argument("--digests", required=True, help="the directory of digest files the export came with")
    parser.add_argument("--public-key", required=True, action="append",
                        help="the signing public key (PEM); repeat for each key of a rotation")
    parser.add_argument("--complete", action="store_true",
                        help="fail unless the export holds every signed event from the first digest on (no filter "
                             "withheld any): an export that is filtered cannot show that nothing else was deleted")
    args = parser.parse_args(argv)
    try:
        keys = {}
        for path in args.public_key:
            key = load_public_key(path)
            keys[fingerprint(key)] = key
        digests = load_digests(args.digests)
        header, lines = load_lines(args.events)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = Report()
    check_digests(digests, keys, report)
    start = header.get("first_seq") if isinstance(header.get("first_seq"), int) else None
    counts = check_chain(lines, digests, report, start)
    withheld = counts["links"] - counts["purged"]
    if args.complete and (withheld or counts["first_seq"] != digests[0]["first_seq"]):
        report.problem(f"--complete: the export withholds {withheld} event(s) (its filters: "
                       f"{json.dumps(header.get('filters') or {})}) and starts at link {counts['first_seq']} (the "
                       f"digests start at link {digests[0]['first_seq']}).")
    if report.problems:
        print(f"FAILED: {len(report.problems)} problem(s).")
        for text in report.problems[:MAX_PRINTED]:
            print(f"- {text}")
        if len(report.problems) > MAX_PRINTED:
            print(f"- ... and {len(report.problems) - MAX_PRINTED} more")
        return 1
    print(f"OK: {counts['events']} events and {counts['links']} other links (of which {counts['purged']} purged) "
          f"verify against {len(digests)} signed digest(s), links {counts['first_seq']} to "
          f"{digests[-1]['last_seq']}; {counts['erased']} event(s) with erased fields.")
    if withheld:
        print(f"NOTE: {withheld} event(s) in that range are withheld, proven only by their row hashes: the export was "
              f"filtered ({json.dumps(header.get('filters') or {})}). A filtered export cannot show that one of them "
              "was not deleted; ask for the whole export and use --complete for that.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
