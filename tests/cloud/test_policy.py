"""The policy decision point on its own: roles, relationships, time windows, obligations."""

from __future__ import annotations

import pytest

from cloud_sync.service.policy import (
    POLICY,
    Action,
    CommandRes,
    DoorRes,
    MembershipFact,
    NotificationRes,
    Obligation,
    Principal,
    ResidentRes,
    Role,
    SelfRes,
    SiteRes,
    decide,
)

NOW = 1_800_000_000_000
SITE, OTHER_SITE = 1, 2
B1, B2 = 10, 20


def who(role: Role, *memberships: MembershipFact, site: int = SITE, account: int = 7) -> Principal:
    return Principal(
        account_id=account,
        login="x",
        role=role,
        site_id=site,
        resident_id=99 if role is Role.RESIDENT else None,
        token_hash="0" * 64,
        at_ms=NOW,
        memberships=memberships,
    )


def member(
    building: int, valid_from: int = NOW - 1000, valid_until: int | None = None
) -> MembershipFact:
    return MembershipFact(1, "1-101", building, valid_from, valid_until)


def door(building: int = B1, site: int = SITE) -> DoorRes:
    return DoorRes(site, building, row=None)


def test_every_action_has_a_policy_entry() -> None:
    assert set(POLICY) == set(Action)


def test_anonymous_is_always_denied() -> None:
    for action in Action:
        assert not decide(None, action, SiteRes(SITE)).allowed


def test_resident_opens_doors_of_their_building_only() -> None:
    li = who(Role.RESIDENT, member(B1))
    assert decide(li, Action.DOOR_UNLOCK, door(B1)).allowed
    assert decide(li, Action.DOOR_UNLOCK, door(B1)).obligations == frozenset()
    assert not decide(li, Action.DOOR_UNLOCK, door(B2)).allowed


@pytest.mark.parametrize(
    ("valid_from", "valid_until", "allowed"),
    [
        (NOW - 1, None, True),
        (NOW, None, True),  # starts now
        (NOW + 1, None, False),  # not yet
        (NOW - 10, NOW + 1, True),
        (NOW - 10, NOW, False),  # ended exactly now
        (NOW - 10, NOW - 1, False),  # moved out
    ],
)
def test_membership_validity_window(
    valid_from: int, valid_until: int | None, allowed: bool
) -> None:
    li = who(Role.RESIDENT, member(B1, valid_from, valid_until))
    assert decide(li, Action.DOOR_UNLOCK, door(B1)).allowed is allowed


def test_resident_membership_does_not_cross_sites() -> None:
    li = who(Role.RESIDENT, member(B1))
    assert not decide(li, Action.DOOR_UNLOCK, door(B1, site=OTHER_SITE)).allowed


@pytest.mark.parametrize("role", [Role.ENGINEER, Role.ADMIN])
def test_staff_open_doors_only_with_a_reason_and_only_at_their_site(role: Role) -> None:
    staff = who(role)
    decision = decide(staff, Action.DOOR_UNLOCK, door(B2))
    assert decision.allowed
    assert decision.requires(Obligation.REASON)
    assert not decide(staff, Action.DOOR_UNLOCK, door(B2, site=OTHER_SITE)).allowed


@pytest.mark.parametrize("role", [Role.AUDITOR, Role.COURIER])
def test_auditors_and_couriers_open_no_door(role: Role) -> None:
    assert not decide(who(role), Action.DOOR_UNLOCK, door(B1)).allowed
    assert not decide(who(role), Action.DOOR_LIST, SiteRes(SITE)).allowed


def test_commands_are_read_by_their_issuer_or_site_staff() -> None:
    cmd = CommandRes(SITE, account_id=7, row=None)
    assert decide(who(Role.RESIDENT, account=7), Action.COMMAND_READ, cmd).allowed
    assert not decide(who(Role.RESIDENT, account=8), Action.COMMAND_READ, cmd).allowed
    assert decide(who(Role.ENGINEER, account=8), Action.COMMAND_READ, cmd).allowed
    assert not decide(who(Role.AUDITOR, account=8), Action.COMMAND_READ, cmd).allowed
    other = CommandRes(OTHER_SITE, account_id=8, row=None)
    assert not decide(who(Role.ENGINEER, account=8), Action.COMMAND_READ, other).allowed


def test_resident_records_are_for_admins_and_unmasking_needs_a_reason() -> None:
    rec = ResidentRes(SITE, 5)
    assert decide(who(Role.ADMIN), Action.RESIDENT_READ, rec).allowed
    assert not decide(who(Role.ADMIN), Action.RESIDENT_READ, rec).obligations
    assert decide(who(Role.ADMIN), Action.RESIDENT_UNMASK, rec).requires(Obligation.REASON)
    for role in (Role.ENGINEER, Role.AUDITOR, Role.COURIER, Role.RESIDENT):
        assert not decide(who(role), Action.RESIDENT_READ, rec).allowed
        assert not decide(who(role), Action.RESIDENT_UNMASK, rec).allowed


def test_audit_is_for_auditors_verify_for_auditors_only() -> None:
    site = SiteRes(SITE)
    assert decide(who(Role.AUDITOR), Action.AUDIT_LIST, site).allowed
    assert decide(who(Role.ADMIN), Action.AUDIT_LIST, site).allowed
    assert decide(who(Role.AUDITOR), Action.AUDIT_VERIFY, site).allowed
    assert not decide(who(Role.ADMIN), Action.AUDIT_VERIFY, site).allowed
    assert not decide(who(Role.AUDITOR), Action.AUDIT_LIST, SiteRes(OTHER_SITE)).allowed


def test_self_actions_apply_to_the_callers_own_account_only() -> None:
    me = who(Role.COURIER, account=7)
    assert decide(me, Action.ME_READ, SelfRes(SITE, 7)).allowed
    assert not decide(me, Action.ME_READ, SelfRes(SITE, 8)).allowed
    assert not decide(me, Action.SESSION_END, SelfRes(OTHER_SITE, 7)).allowed


def test_a_notification_is_marked_read_by_its_addressee_only() -> None:
    mine = NotificationRes(SITE, resident_id=99, row=None)  # who() gives residents record 99
    assert decide(who(Role.RESIDENT), Action.NOTIFICATION_READ, mine).allowed
    theirs = NotificationRes(SITE, resident_id=98, row=None)
    assert not decide(who(Role.RESIDENT), Action.NOTIFICATION_READ, theirs).allowed
    elsewhere = NotificationRes(OTHER_SITE, resident_id=99, row=None)
    assert not decide(who(Role.RESIDENT), Action.NOTIFICATION_READ, elsewhere).allowed
    for role in (Role.ENGINEER, Role.ADMIN, Role.AUDITOR, Role.COURIER):
        assert not decide(who(role), Action.NOTIFICATION_READ, mine).allowed
    # Not through the account: the inbox (SelfRes) is for listing only.
    assert not decide(who(Role.RESIDENT), Action.NOTIFICATION_READ, SelfRes(SITE, 7)).allowed


def test_a_resource_of_the_wrong_kind_is_denied() -> None:
    # A rule never allows on an object it was not written for: deny by default.
    li = who(Role.RESIDENT, member(B1))
    assert not decide(li, Action.DOOR_UNLOCK, SiteRes(SITE)).allowed
    assert not decide(li, Action.COMMAND_READ, door(B1)).allowed
