"""Contacts over a scripted Intercom: create first, 409 -> update, cached ids, a stale id, and no-op skips."""

from __future__ import annotations

from typing import Any

import pytest

from intercom_sidecar.errors import PermanentError, RetryableError
from intercom_sidecar.intercom.sender import IntercomSender, SenderStats
from intercom_sidecar.model.events import Identify
from tests.unit.intercom.conftest import SenderFactory
from tests.unit.intercom.scripted import (
    ALREADY_EXISTS,
    NOW,
    FakeIntercom,
    attribute_list,
    contact,
    error,
    identify_plan,
    ok,
    plan_for,
)

SEEN = int(NOW)


def user(**fields: Any) -> dict[str, Any]:
    """The create/update body of user u1 seen at NOW, plus `fields`."""
    return {"role": "user", "external_id": "u1", **fields, "last_seen_at": SEEN}


def stats(*, skipped: int = 0) -> SenderStats:
    return SenderStats(
        unchanged_contacts_skipped=skipped,
        unchanged_companies_skipped=0,
        attributes_dropped=0,
        contacts_created_for_events=0,
        leads_not_found=0,
    )


# --- create, 409, cached ids ---


async def test_create_caches_the_id_so_the_next_change_is_one_put(
    sender: IntercomSender, intercom: FakeIntercom
) -> None:
    intercom.on("POST", "/contacts", contact("c1"))
    intercom.on("PUT", "/contacts/c1", contact("c1"))

    await sender.send(identify_plan(name="Ada"))
    await sender.send(identify_plan(name="Ada Lovelace"))

    assert intercom.calls == ["POST /contacts", "PUT /contacts/c1"], "no custom attributes: no attribute lookup"
    assert intercom.bodies("POST", "/contacts") == [
        {"role": "user", "external_id": "u1", "name": "Ada", "last_seen_at": SEEN}
    ]
    assert intercom.bodies("PUT", "/contacts/c1") == [user(name="Ada Lovelace")]


async def test_conflict_with_the_id_in_the_message_updates_that_contact(
    sender: IntercomSender, intercom: FakeIntercom
) -> None:
    intercom.on("POST", "/contacts", error(409, "conflict", ALREADY_EXISTS))
    intercom.on("PUT", "/contacts/abc", contact("abc"), contact("abc"))

    await sender.send(identify_plan(email="ada@example.com"))
    await sender.send(identify_plan(email="ada@example.com", name="Ada"))  # the id learnt from the 409 is cached

    assert intercom.calls == ["POST /contacts", "PUT /contacts/abc", "PUT /contacts/abc"]
    first = {"role": "user", "external_id": "u1", "email": "ada@example.com", "last_seen_at": SEEN}
    assert intercom.bodies("POST", "/contacts") == [first]
    assert intercom.bodies("PUT", "/contacts/abc") == [first, {**first, "name": "Ada"}]


async def test_conflict_then_a_failed_update_is_retryable_and_resolved_again(
    sender: IntercomSender, intercom: FakeIntercom
) -> None:
    intercom.on("POST", "/contacts", error(409, "conflict", ALREADY_EXISTS), error(409, "conflict", ALREADY_EXISTS))
    intercom.on("PUT", "/contacts/abc", error(503, "service_unavailable", "try later"), contact("abc"))
    plan = identify_plan(name="Ada")

    with pytest.raises(RetryableError) as caught:
        await sender.send(plan)
    await sender.send(plan)  # nothing was remembered from the failed attempt

    assert (caught.value.status, caught.value.endpoint) == (503, "PUT /contacts/{id}")
    assert intercom.calls == ["POST /contacts", "PUT /contacts/abc", "POST /contacts", "PUT /contacts/abc"]


async def test_conflict_without_an_id_is_permanent(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/contacts", error(409, "conflict", "A contact matching those details already exists"))

    with pytest.raises(PermanentError) as caught:
        await sender.send(identify_plan())

    assert (caught.value.status, caught.value.code, caught.value.endpoint) == (409, "conflict", "POST /contacts")
    assert intercom.calls == ["POST /contacts"]


async def test_cached_id_answering_404_is_forgotten_and_created_again(
    sender: IntercomSender, intercom: FakeIntercom
) -> None:
    intercom.on("POST", "/contacts", contact("c1"), contact("c2"))
    intercom.on("PUT", "/contacts/c1", error(404, "not_found", "User Not Found"))
    intercom.on("PUT", "/contacts/c2", contact("c2"))

    await sender.send(identify_plan(name="a"))  # creates c1
    await sender.send(identify_plan(name="b"))  # c1 is gone (merged or deleted): create again -> c2
    await sender.send(identify_plan(name="c"))  # c2 is cached now

    assert intercom.calls == ["POST /contacts", "PUT /contacts/c1", "POST /contacts", "PUT /contacts/c2"]
    second = user(name="b")
    assert intercom.bodies("PUT", "/contacts/c1") == [second]
    assert intercom.bodies("POST", "/contacts")[1] == second, "the whole update is sent to the new contact"


async def test_cached_id_answering_404_then_409_updates_the_contact_named(
    sender: IntercomSender, intercom: FakeIntercom
) -> None:
    intercom.on("POST", "/contacts", contact("c1"), error(409, "conflict", ALREADY_EXISTS))
    intercom.on("PUT", "/contacts/c1", error(404, "not_found", "User Not Found"))
    intercom.on("PUT", "/contacts/abc", contact("abc"), contact("abc"))

    await sender.send(identify_plan(name="a"))
    await sender.send(identify_plan(name="b"))  # c1 was merged into abc
    await sender.send(identify_plan(name="c"))

    assert intercom.calls == [
        "POST /contacts",
        "PUT /contacts/c1",
        "POST /contacts",
        "PUT /contacts/abc",
        "PUT /contacts/abc",
    ]


async def test_cached_id_failing_otherwise_keeps_the_cache(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/contacts", contact("c1"))
    intercom.on("PUT", "/contacts/c1", error(503, "service_unavailable", "try later"), contact("c1"))
    await sender.send(identify_plan(name="a"))

    with pytest.raises(RetryableError) as caught:
        await sender.send(identify_plan(name="b"))
    await sender.send(identify_plan(name="b"))  # the failed write is not taken as sent: sent again

    assert (caught.value.status, caught.value.endpoint) == (503, "PUT /contacts/{id}")
    assert intercom.calls == ["POST /contacts", "PUT /contacts/c1", "PUT /contacts/c1"]


async def test_identities_are_cached_separately(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/contacts", contact("c1"), contact("c2"), contact("c3"), contact("c4", role="lead"))
    intercom.on("PUT", "/contacts/c1", contact("c1"))
    intercom.on("PUT", "/contacts/c3", contact("c3"))

    await sender.send(identify_plan("u1"))
    await sender.send(identify_plan("u2"))
    await sender.send(identify_plan(None, email="Ada@Example.com"))
    await sender.send(plan_for(Identify(traits={}), user_id=None, anonymous_id="u1", leads=True))  # a lead "u1"
    await sender.send(identify_plan("u1", name="Ada"))
    await sender.send(identify_plan(None, email="ada@example.com"))  # the same contact: emails match without case

    assert intercom.calls == [
        "POST /contacts",
        "POST /contacts",
        "POST /contacts",
        "POST /contacts",
        "PUT /contacts/c1",
        "PUT /contacts/c3",
    ]
    assert intercom.bodies("POST", "/contacts")[3] == {"role": "lead", "external_id": "u1", "last_seen_at": SEEN}
    assert intercom.bodies("PUT", "/contacts/c3") == [
        {"role": "user", "email": "ada@example.com", "last_seen_at": SEEN}
    ]


async def test_create_refused_is_permanent(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/contacts", error(400, "parameter_invalid", "Email is invalid"))

    with pytest.raises(PermanentError) as caught:
        await sender.send(identify_plan(email="not-an-email"))

    assert caught.value.reason == "intercom 400 parameter_invalid: Email is invalid (POST /contacts)"


async def test_create_answer_without_an_id_is_permanent(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/contacts", ok({"type": "contact"}))

    with pytest.raises(PermanentError) as caught:
        await sender.send(identify_plan())

    assert caught.value.reason == "intercom 200: answer without an object id (HTTP 200) (POST /contacts)"


# --- no-op skips ---

HOUR = 3600.0

# (id, the second identify as (timestamp, traits, context), whether it is written). The first identify is
# {plan: "pro"} at NOW; the default last_seen resolution is an hour.
SECOND_IDENTIFY: list[tuple[str, float, dict[str, Any], dict[str, Any], bool]] = [
    ("identical", NOW, {"plan": "pro"}, {}, False),
    ("a changed trait", NOW, {"plan": "team"}, {}, True),
    ("a new trait", NOW, {"plan": "pro", "seats": 3}, {}, True),
    ("a new standard field", NOW, {"plan": "pro", "name": "Ada"}, {}, True),
    ("unsubscribedFromEmails false added", NOW, {"plan": "pro"}, {"Intercom": {"unsubscribedFromEmails": False}}, True),
    ("last seen 1 s later", NOW + 1, {"plan": "pro"}, {}, False),
    ("last seen 59 min 59 s later", NOW + HOUR - 1, {"plan": "pro"}, {}, False),
    ("last seen exactly the resolution later", NOW + HOUR, {"plan": "pro"}, {}, True),
    ("last seen 2 h later", NOW + 2 * HOUR, {"plan": "pro"}, {}, True),
    ("last seen 2 h earlier (an old event)", NOW - 2 * HOUR, {"plan": "pro"}, {}, False),
    ("context.active false: nothing new", NOW + 2 * HOUR, {"plan": "pro"}, {"active": False}, False),
    ("last seen later and a changed trait", NOW + 1, {"plan": "team"}, {}, True),
]


@pytest.mark.parametrize(
    ("timestamp", "traits", "context", "written"),
    [case[1:] for case in SECOND_IDENTIFY],
    ids=[case[0] for case in SECOND_IDENTIFY],
)
async def test_second_identify_is_written_only_when_it_changes_something(
    sender: IntercomSender,
    intercom: FakeIntercom,
    timestamp: float,
    traits: dict[str, Any],
    context: dict[str, Any],
    written: bool,
) -> None:
    intercom.on("GET", "/data_attributes", attribute_list("plan", "seats"))
    intercom.on("POST", "/contacts", contact("c1"))
    second = plan_for(Identify(traits=traits), timestamp=timestamp, context=context)
    if written:
        intercom.on("PUT", "/contacts/c1", contact("c1"))
    await sender.send(identify_plan(plan="pro"))

    await sender.send(second)

    assert intercom.calls == [
        "GET /data_attributes?model=contact",
        "POST /contacts",
        *(["PUT /contacts/c1"] if written else []),
    ]
    if written:
        assert intercom.bodies("PUT", "/contacts/c1") == [second.steps[0].body]  # type: ignore[union-attr]
    assert sender.stats == stats(skipped=0 if written else 1)


async def test_last_seen_resolution_counts_from_the_last_write(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/contacts", contact("c1"))
    intercom.on("PUT", "/contacts/c1", contact("c1"))

    await sender.send(identify_plan(timestamp=NOW))  # written
    await sender.send(identify_plan(timestamp=NOW + 3000))  # skipped: 50 min
    await sender.send(identify_plan(timestamp=NOW + 3700))  # written: 61 min after the last write
    await sender.send(identify_plan(timestamp=NOW + 3800))  # skipped: 100 s after the last write

    assert intercom.calls == ["POST /contacts", "PUT /contacts/c1"]
    assert intercom.bodies("PUT", "/contacts/c1") == [
        {"role": "user", "external_id": "u1", "last_seen_at": SEEN + 3700}
    ]
    assert sender.stats.unchanged_contacts_skipped == 2


@pytest.mark.parametrize(("resolution", "later", "written"), [(60.0, 59, False), (60.0, 60, True), (0.0, 1, True)])
async def test_last_seen_resolution_is_configurable(
    make_sender: SenderFactory, intercom: FakeIntercom, resolution: float, later: int, written: bool
) -> None:
    sender = make_sender(last_seen_resolution_seconds=resolution)
    intercom.on("POST", "/contacts", contact("c1"))
    if written:
        intercom.on("PUT", "/contacts/c1", contact("c1"))

    await sender.send(identify_plan(timestamp=NOW))
    await sender.send(identify_plan(timestamp=NOW + later))

    assert intercom.calls == ["POST /contacts", *(["PUT /contacts/c1"] if written else [])]


async def test_identical_identify_is_skipped_even_with_no_resolution(
    make_sender: SenderFactory, intercom: FakeIntercom
) -> None:
    """Resolution 0 writes every move of last seen, but an update identical to the last one is still no move."""
    sender = make_sender(last_seen_resolution_seconds=0.0)
    intercom.on("POST", "/contacts", contact("c1"))

    await sender.send(identify_plan(name="Ada"))
    await sender.send(identify_plan(name="Ada"))

    assert intercom.calls == ["POST /contacts"]
    assert sender.stats.unchanged_contacts_skipped == 1


async def test_going_back_to_earlier_traits_is_written(sender: IntercomSender, intercom: FakeIntercom) -> None:
    """Only the last write counts: A, B, A sends all three."""
    intercom.on("POST", "/contacts", contact("c1"))
    intercom.on("PUT", "/contacts/c1", contact("c1"), contact("c1"))

    for name in ("a", "b", "a"):
        await sender.send(identify_plan(name=name))

    assert intercom.calls == ["POST /contacts", "PUT /contacts/c1", "PUT /contacts/c1"]
    assert sender.stats.unchanged_contacts_skipped == 0


async def test_a_failed_write_is_not_remembered_as_sent(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/contacts", error(500, "server_error", "oops"), contact("c1"))
    plan = identify_plan(name="Ada")

    with pytest.raises(RetryableError):
        await sender.send(plan)
    await sender.send(plan)
    await sender.send(plan)

    assert intercom.calls == ["POST /contacts", "POST /contacts"]
    assert sender.stats.unchanged_contacts_skipped == 1
