"""`intercom-sidecar dlq list|show|replay|purge`: the operator's view of dead letters, safe while the sidecar runs.

Filters: `--older-than`/`--newer-than` (age of the dead letter: 90s, 30m, 2h, 7d), `--reason` (substring),
`--user`, `--type` (identify, track, ...), `--message-id`. `replay` moves matching dead letters back to the spool's
queue (a running sidecar picks them up within seconds; a stopped one at its next start) and shows progress and a
summary; `purge` deletes them and needs a filter or `--all`.

Dead letters stored with `INTERCOM_SIDECAR_DEAD_LETTER_PAYLOADS=encrypt` need the key they were encrypted with to be
shown or replayed (`--key-file`, default INTERCOM_SIDECAR_DEAD_LETTER_KEY_FILE); those stored with `drop` have no
event left: they are listed and purged, and `replay` names them as not replayable (exit status 1).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2
from intercom_sidecar.config import default_spool_directory, read_dead_letter_key
from intercom_sidecar.delivery.dead_letter_payloads import (
    KEEP,
    DeadLetterKey,
    DeadLetterPayloads,
)
from intercom_sidecar.delivery.dead_letters import DeadLetterStore
from intercom_sidecar.delivery.spool import DeadLetter, DeadLetterFilter, SpoolError
from intercom_sidecar.errors import ConfigError
from intercom_sidecar.model.call_type import call_type_of

__all__ = ["add_arguments", "parse_age", "run"]

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_CHUNK = 100


def parse_age(text: str) -> float:
    """Seconds in `90`, `90s`, `30m`, `2h` or `7d`."""
    match = _AGE.match(text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not an age: {text!r} (use e.g. 90s, 30m, 2h, 7d)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spool-dir",
        type=Path,
        default=Path(os.environ.get("INTERCOM_SIDECAR_SPOOL_DIR") or default_spool_directory(os.environ)),
        help="the spool directory (default INTERCOM_SIDECAR_SPOOL_DIR)",
    )
    parser.add_argument(
        "--key-file",
        type=Path,
        default=Path(os.environ["INTERCOM_SIDECAR_DEAD_LETTER_KEY_FILE"])
        if os.environ.get("INTERCOM_SIDECAR_DEAD_LETTER_KEY_FILE", "").strip()
        else None,
        help="the key of encrypted dead letters (default INTERCOM_SIDECAR_DEAD_LETTER_KEY_FILE)",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (
        ("list", "list dead letters"),
        ("replay", "send dead letters again"),
        ("purge", "delete dead letters"),
    ):
        action = actions.add_parser(name, help=text)
        _add_filters(action)
        if name == "list":
            action.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
        if name == "purge":
            action.add_argument("--all", action="store_true", help="purge every dead letter")
        action.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    show = actions.add_parser("show", help="one dead letter in full")
    show.add_argument("message_id")


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--older-than", type=parse_age, metavar="AGE", help="dead at least this long ago")
    parser.add_argument("--newer-than", type=parse_age, metavar="AGE", help="dead at most this long ago")
    parser.add_argument("--reason", help="a substring of the reason (case-insensitive)")
    parser.add_argument("--user", help="the user key (userId, else anonymousId)")
    parser.add_argument("--type", choices=("identify", "track", "page", "screen", "group", "alias"))
    parser.add_argument("--message-id")


async def run(args: argparse.Namespace) -> int:
    try:
        payloads = _payloads(args.key_file)
        with DeadLetterStore(args.spool_dir, payloads) as store:
            return _ACTIONS[args.action](store, args)
    except (SpoolError, ConfigError) as error:
        print(f"intercom-sidecar dlq: {error}", file=sys.stderr)
        return 2


def _payloads(key_file: Path | None) -> DeadLetterPayloads:
    if key_file is None:
        return KEEP
    key = DeadLetterKey.from_base64(read_dead_letter_key(key_file).reveal())
    return DeadLetterPayloads("keep", key)


def _list(store: DeadLetterStore, args: argparse.Namespace) -> int:
    letters = _matching(store, args, limit=args.limit)
    if args.json:
        for letter in letters:
            print(json.dumps(_summary(letter)))
    else:
        _table(letters)
    return 0


def _show(store: DeadLetterStore, args: argparse.Namespace) -> int:
    letter = store.get(args.message_id)
    if letter is None:
        print(f"intercom-sidecar dlq: no dead letter with message_id {args.message_id!r}", file=sys.stderr)
        return 1
    event = _event_json(store.payload_of(letter)) if letter.replayable else None  # raises for a wrong key
    print(json.dumps({**_summary(letter), "event": event, "attempts_log": [
        {"at": _when(attempt.at), "outcome": attempt.outcome} for attempt in letter.outcomes
    ]}, indent=2))  # fmt: skip
    return 0


def _replay(store: DeadLetterStore, args: argparse.Namespace) -> int:
    matching = _matching(store, args, limit=None)
    letters = [letter for letter in matching if letter.replayable]
    for letter in letters:  # a missing or wrong key is found before anything moves
        store.payload_of(letter)
    done = 0
    for start in range(0, len(letters), _CHUNK):
        chunk = letters[start : start + _CHUNK]
        done += len(store.replay([letter.seq for letter in chunk]))
        _progress(done, len(letters))
    print(f"replayed {done} of {len(letters)} dead letters; a running sidecar delivers them within seconds")
    payload_free = [letter.message_id for letter in matching if not letter.replayable]
    if payload_free:
        shown = ", ".join(payload_free[:10]) + (", ..." if len(payload_free) > 10 else "")
        print(
            f"not replayable: {len(payload_free)} dead letters kept no payload (INTERCOM_SIDECAR_DEAD_LETTER_PAYLOADS"
            f"=drop when they were stored): {shown}; purge them when they are no longer needed"
        )
        return 1
    return 0


def _purge(store: DeadLetterStore, args: argparse.Namespace) -> int:
    where = _filter(args)
    if where == DeadLetterFilter() and args.type is None and not args.all:
        print("intercom-sidecar dlq: purge needs a filter, or --all to purge every dead letter", file=sys.stderr)
        return 2
    if args.type is None:
        purged = store.purge(where)
    else:  # the type is in the payload, so purge the matching ones one by one
        purged = sum(store.purge(DeadLetterFilter(message_id=letter.message_id)) for letter in _matching(store, args))
    print(f"purged {purged} dead letters")
    return 0


_ACTIONS = {"list": _list, "show": _show, "replay": _replay, "purge": _purge}


def _filter(args: argparse.Namespace) -> DeadLetterFilter:
    now = time.time()
    return DeadLetterFilter(
        since=None if args.newer_than is None else now - args.newer_than,
        until=None if args.older_than is None else now - args.older_than,
        reason=args.reason,
        user_key=args.user,
        message_id=args.message_id,
    )


def _matching(store: DeadLetterStore, args: argparse.Namespace, limit: int | None = None) -> list[DeadLetter]:
    letters = store.find(_filter(args), limit=limit if limit is not None and args.type is None else 10**9)
    if args.type is not None:
        letters = [letter for letter in letters if _call_type(letter) == args.type]
    return letters[:limit] if limit is not None else letters


def _call_type(letter: DeadLetter) -> str:
    """Recorded with the dead letter since schema 2; read from the (kept) payload for older ones."""
    return letter.call_type or (call_type_of(letter.payload) if letter.payload_form == "kept" else "?")


def _event_json(payload: bytes) -> Any:
    from google.protobuf import json_format

    try:
        return json_format.MessageToDict(event_pb2.Event.FromString(payload))
    except DecodeError:
        return None


def _summary(letter: DeadLetter) -> dict[str, Any]:
    return {
        "message_id": letter.message_id,
        "type": _call_type(letter),
        "user": letter.user_key,
        "dead_at": _when(letter.dead_at),
        "accepted_at": _when(letter.accepted_at),
        "status": letter.status,
        "code": letter.code,
        "attempts": letter.attempts,
        "reason": letter.reason,
        "trace_id": letter.trace_id,
        "payload": letter.payload_form,
    }


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _table(letters: Sequence[DeadLetter]) -> None:
    rows = [_summary(letter) for letter in letters]
    keys = ("message_id", "type", "user", "dead_at", "attempts")
    widths = {key: max([len(key), *(len(str(row[key])) for row in rows)]) for key in keys}
    print("  ".join(key.upper().ljust(widths[key]) for key in keys) + "  REASON")
    for row in rows:
        print("  ".join(str(row[key]).ljust(widths[key]) for key in keys) + f"  {row['reason']}")
    print(f"({len(rows)} dead letters)")


def _progress(done: int, total: int) -> None:
    if not sys.stderr.isatty() or not total:
        return
    filled = int(30 * done / total)
    end = "\n" if done >= total else ""
    print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total}", end=end, file=sys.stderr, flush=True)
