"""Identity verification: `integrations.Intercom.user_hash` checked against HMAC-SHA256(secret, userId).

A table of (id, event, secret, expected Plan/Skip or the InvalidEventError message)."""

from __future__ import annotations

import dataclasses

import pytest

from intercom_sidecar.config import MappingConfig, Secret
from intercom_sidecar.errors import InvalidEventError
from intercom_sidecar.mapping import Plan, Skip, map_event
from intercom_sidecar.mapping.verification import user_hash
from intercom_sidecar.model.events import Call, Event, Group, Identify, JsonObject, Page, Track

SECRET = Secret("whsec-test-1")
U1_HASH = "adc8c60092d857eb9ff68bc7fe2bd24d85f790dbe26ee3ea8766c64b56413bfd"  # HMAC-SHA256("whsec-test-1", "u1")
WRONG_HASH = "0" * 64
MISMATCH = "integrations.Intercom.user_hash: does not match userId"
UNUSABLE = "integrations.Intercom.user_hash: needs a userId and a hex string"
VERIFIED = MappingConfig(identity_secret=SECRET, page_mode="event")
UNVERIFIED = MappingConfig(page_mode="event")


def event(
    integrations: JsonObject, call: Call | None = None, *, user_id: str | None = "u1", email: str | None = None
) -> Event:
    return Event(
        message_id="m1",
        user_id=user_id,
        anonymous_id=None if user_id is not None else "anon-1",
        timestamp=1_700_000_000.0,
        call=call or Identify(traits={"email": email} if email else {}),
        context={},
        integrations=integrations,
    )


def hashed(value: object, *, all_off: bool = True) -> JsonObject:
    return {**({"All": False} if all_off else {}), "Intercom": {"user_hash": value}}


PLANNED = "planned"

CASES: list[tuple[str, Event, MappingConfig, str | Skip]] = [
    ("right hash, All false", event(hashed(U1_HASH)), VERIFIED, PLANNED),
    ("right hash, All absent", event(hashed(U1_HASH, all_off=False)), VERIFIED, PLANNED),
    ("right hash in capitals", event(hashed(U1_HASH.upper())), VERIFIED, PLANNED),
    ("right hash with surrounding space", event(hashed(f" {U1_HASH}\n")), VERIFIED, PLANNED),
    ("wrong hash", event(hashed(WRONG_HASH)), VERIFIED, MISMATCH),
    ("the hash of another user", event(hashed(U1_HASH), user_id="u2"), VERIFIED, MISMATCH),
    ("empty hash", event(hashed("")), VERIFIED, MISMATCH),
    ("a hash with non-ASCII characters", event(hashed("é" * 64)), VERIFIED, MISMATCH),
    ("hash not a string", event(hashed(12345)), VERIFIED, UNUSABLE),
    ("hash null: not given", event(hashed(None)), VERIFIED, PLANNED),
    ("hash without a userId", event(hashed(U1_HASH), user_id=None, email="ada@example.com"), VERIFIED, UNUSABLE),
    ("no user_hash: not checked", event({"Intercom": {}}), VERIFIED, PLANNED),
    ("no Intercom object: not checked", event({}), VERIFIED, PLANNED),
    ("no secret configured: not checked", event(hashed(WRONG_HASH)), UNVERIFIED, PLANNED),
    ("wrong hash on a track", event(hashed(WRONG_HASH), Track(event="Signed Up", properties={})), VERIFIED, MISMATCH),
    (
        "wrong hash on a page",
        event(hashed(WRONG_HASH), Page(name="Home", category="", properties={})),
        VERIFIED,
        MISMATCH,
    ),
    ("wrong hash on a group", event(hashed(WRONG_HASH), Group(group_id="g1", traits={})), VERIFIED, MISMATCH),
    ("right hash on a track", event(hashed(U1_HASH), Track(event="Signed Up", properties={})), VERIFIED, PLANNED),
    (
        "Intercom false: filtered before any check",
        event({"Intercom": False}),
        VERIFIED,
        Skip("integrations.Intercom is false"),
    ),
]


@pytest.mark.parametrize(
    ("event", "options", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_user_hash(event: Event, options: MappingConfig, expected: str | Skip) -> None:
    if isinstance(expected, Skip):
        assert map_event(event, options) == expected
    elif expected == PLANNED:
        plan = map_event(event, options)
        assert isinstance(plan, Plan)
        assert plan == map_event(dataclasses.replace(event, integrations={}), options), "verification changes nothing"
    else:
        with pytest.raises(InvalidEventError) as caught:
            map_event(event, options)
        assert str(caught.value) == expected
        assert caught.value.field == "integrations.Intercom.user_hash"


def test_user_hash_is_hex_hmac_sha256_of_the_user_id() -> None:
    assert user_hash(SECRET, "u1") == U1_HASH


def test_the_secret_never_shows_in_the_error() -> None:
    with pytest.raises(InvalidEventError) as caught:
        map_event(event(hashed(WRONG_HASH)), VERIFIED)
    assert SECRET.reveal() not in repr(caught.value) + str(caught.value)
    assert U1_HASH not in str(caught.value), "the expected hash is not disclosed either"
