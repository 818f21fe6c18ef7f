"""THE policy decision point of the cloud: who may do what to which object.

Every non-public route names an :class:`Action`; the route guard (:mod:`cloud_sync.service.routes`)
loads the :data:`Resource` the request is about and calls :func:`decide` before the handler runs.
Handlers never decide anything themselves. List endpoints that show a subset (the doors a caller
may open) filter through :func:`decide` as well, so there is exactly one place that answers "may".

A decision combines **role** and **relationship**:

* every rule requires the object to belong to the caller's site (staff are assigned to one site);
* a resident may act on a door only through a membership of a unit in the building the door
  serves, valid at the time of the request (``valid_from <= now < valid_until``); on a meter,
  only through such a membership of the unit the meter measures;
* a command may be read by the account that issued it;
* a **courier** acts on the sites it serves (``courier_sites``), never through its account's own
  ``site_id``: it may deposit into a bank, look up a recipient and get a courier pass at those
  sites only, and it may act on (reopen, cancel, retrieve) only the parcels it deposited there;
  it may read the parcels it deposited;
* a parcel is the recipient's: only a resident with a currently valid membership of the parcel's
  unit may see its pickup code and QR or open it remotely — never staff, never a courier; its
  view may also be read by its depositing courier and by the site's engineers and admins;
* a notification is its resident's alone: only the resident it is addressed to may mark it read;
* some permissions come with an **obligation** the service must enforce (a recorded reason).

List endpoints are guarded by a *list* action on the caller's own :class:`SiteRes` (may this
caller ask for such a list at all) and then show only the items a per-item decision allows
(``parcel.read`` for each parcel, ``bank.list`` on each :class:`BankRes`).

Anything :data:`POLICY` does not allow is denied. A denial is reported as 404 ``not_found``,
exactly like a missing object, so the API never confirms that something exists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "POLICY",
    "Action",
    "BankRes",
    "CommandRes",
    "Decision",
    "DoorRes",
    "GatewayRes",
    "MembershipFact",
    "MeterRes",
    "NotificationRes",
    "Obligation",
    "ParcelRes",
    "Principal",
    "ResidentRes",
    "Resource",
    "Role",
    "SelfRes",
    "SiteRes",
    "decide",
]


class Role(StrEnum):
    """What an account is at its site."""

    RESIDENT = "resident"
    ENGINEER = "engineer"
    ADMIN = "admin"
    AUDITOR = "auditor"
    COURIER = "courier"


class Action(StrEnum):
    """Everything a route can do, named for the policy."""

    SESSION_END = "session.end"
    ME_READ = "me.read"
    DOOR_LIST = "door.list"
    DOOR_UNLOCK = "door.unlock"
    COMMAND_READ = "command.read"
    GATEWAY_LIST = "gateway.list"
    ALARM_LIST = "alarm.list"
    AUDIT_LIST = "audit.list"
    AUDIT_VERIFY = "audit.verify"
    RESIDENT_READ = "resident.read"
    RESIDENT_UNMASK = "resident.unmask"
    METER_LIST = "meter.list"
    METER_READINGS = "meter.readings"
    METER_READ_NOW = "meter.read_now"
    DEVICE_LIST = "device.list"
    BANK_LIST = "bank.list"
    BANK_COMPARTMENTS = "bank.compartments"
    RECIPIENT_LOOKUP = "recipient.lookup"
    PARCEL_LIST = "parcel.list"
    PARCEL_READ = "parcel.read"
    PARCEL_DEPOSIT = "parcel.deposit"
    PARCEL_COURIER_ACT = "parcel.courier_act"
    PARCEL_PICKUP = "parcel.pickup"
    PARCEL_CODE = "parcel.code"
    COURIER_PASS = "courier.pass"  # noqa: S105  # an action name, not a password
    NOTIFICATION_LIST = "notification.list"
    NOTIFICATION_READ = "notification.read"


class Obligation(StrEnum):
    """A condition attached to a permission that the service must enforce."""

    #: The request must carry a reason, and the reason is written to the audit log.
    REASON = "reason"


@dataclass(frozen=True, slots=True)
class MembershipFact:
    """A resident's membership of a unit, as the policy needs it."""

    unit_id: int
    unit_label: str
    building_id: int
    valid_from: int
    valid_until: int | None

    def valid_at(self, now_ms: int) -> bool:
        """Whether the membership holds at ``now_ms``."""
        return self.valid_from <= now_ms and (self.valid_until is None or now_ms < self.valid_until)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller, with the facts the policy needs, as of ``at_ms``."""

    account_id: int
    login: str
    role: Role
    site_id: int
    resident_id: int | None
    token_hash: str
    at_ms: int
    memberships: tuple[MembershipFact, ...] = ()
    company: str | None = None
    """A courier's delivery company (None for every other account)."""
    courier_sites: frozenset[int] = frozenset()
    """The sites a courier serves (empty for every other account)."""

    @property
    def actor(self) -> str:
        """How this caller is named in commands and audit records."""
        return f"account:{self.account_id}"

    def units(self) -> frozenset[int]:
        """Units where the caller holds a membership valid now."""
        return frozenset(m.unit_id for m in self.memberships if m.valid_at(self.at_ms))

    def buildings(self) -> frozenset[int]:
        """Buildings where the caller holds a membership valid now."""
        return frozenset(m.building_id for m in self.memberships if m.valid_at(self.at_ms))


# -- resources: the facts about an object the policy decides on, plus the loaded object -----


@dataclass(frozen=True, slots=True)
class SiteRes:
    """The caller's site as a whole (list endpoints)."""

    site_id: int


@dataclass(frozen=True, slots=True)
class SelfRes:
    """The caller's own account, session or profile."""

    site_id: int
    account_id: int


@dataclass(frozen=True, slots=True)
class DoorRes:
    """A door, and the building it serves."""

    site_id: int
    building_id: int
    row: Any = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class CommandRes:
    """A door command, and who issued it."""

    site_id: int
    account_id: int
    row: Any = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ResidentRes:
    """A resident's record."""

    site_id: int
    resident_id: int


@dataclass(frozen=True, slots=True)
class MeterRes:
    """A meter, and the unit it measures (None: common areas or not yet assigned)."""

    site_id: int
    unit_id: int | None
    row: Any = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class GatewayRes:
    """A gateway (a courier pass is issued for one)."""

    site_id: int
    row: Any = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class BankRes:
    """A locker bank."""

    site_id: int
    row: Any = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ParcelRes:
    """A parcel, its recipient unit (None: unknown to the cloud) and who deposited it."""

    site_id: int
    unit_id: int | None
    courier_account_id: int | None
    row: Any = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class NotificationRes:
    """An in-app notification, and the resident it is addressed to."""

    site_id: int
    resident_id: int
    row: Any = field(compare=False, repr=False)


Resource = (
    SiteRes
    | SelfRes
    | DoorRes
    | CommandRes
    | ResidentRes
    | MeterRes
    | GatewayRes
    | BankRes
    | ParcelRes
    | NotificationRes
)


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer: allowed or not, the rule that decided, and obligations on an allow."""

    allowed: bool
    rule: str
    obligations: frozenset[Obligation] = frozenset()

    def requires(self, obligation: Obligation) -> bool:
        """Whether the service must enforce ``obligation`` for this request."""
        return self.allowed and obligation in self.obligations


# -- rules: small, named predicates; the table below composes them ----------------------------

Rule = Callable[[Principal, Resource], Decision | None]
_DENY = Decision(False, "deny_by_default")


def _staff(*roles: Role, obligations: frozenset[Obligation] = frozenset()) -> Rule:
    """Callers with one of ``roles`` at the object's site."""
    name = "staff:" + "|".join(r.value for r in roles)

    def rule(p: Principal, r: Resource) -> Decision | None:
        if p.role in roles and p.site_id == r.site_id:
            return Decision(True, name, obligations)
        return None

    return rule


def _self(p: Principal, r: Resource) -> Decision | None:
    """The caller's own account."""
    if isinstance(r, SelfRes) and r.account_id == p.account_id and r.site_id == p.site_id:
        return Decision(True, "self")
    return None


def _resident_of_building(p: Principal, r: Resource) -> Decision | None:
    """A resident with a currently valid membership of a unit in the door's building."""
    if (
        p.role is Role.RESIDENT
        and isinstance(r, DoorRes)
        and r.site_id == p.site_id
        and r.building_id in p.buildings()
    ):
        return Decision(True, "resident_of_building")
    return None


def _resident_of_unit(p: Principal, r: Resource) -> Decision | None:
    """A resident with a currently valid membership of the meter's unit."""
    if (
        p.role is Role.RESIDENT
        and isinstance(r, MeterRes)
        and r.site_id == p.site_id
        and r.unit_id is not None
        and r.unit_id in p.units()
    ):
        return Decision(True, "resident_of_unit")
    return None


def _resident_of_parcel_unit(p: Principal, r: Resource) -> Decision | None:
    """A resident with a currently valid membership of the parcel's (recipient) unit."""
    if (
        p.role is Role.RESIDENT
        and isinstance(r, ParcelRes)
        and r.site_id == p.site_id
        and r.unit_id is not None
        and r.unit_id in p.units()
    ):
        return Decision(True, "resident_of_parcel_unit")
    return None


def _resident_self(p: Principal, r: Resource) -> Decision | None:
    """A resident's own account (their inbox)."""
    if p.role is Role.RESIDENT and p.resident_id is not None:
        return _self(p, r)
    return None


def _addressee(p: Principal, r: Resource) -> Decision | None:
    """The resident a notification is addressed to."""
    if (
        p.role is Role.RESIDENT
        and isinstance(r, NotificationRes)
        and p.resident_id is not None
        and r.resident_id == p.resident_id
        and r.site_id == p.site_id
    ):
        return Decision(True, "addressee")
    return None


def _courier_serving(*kinds: type) -> Rule:
    """A courier at a site it serves (``courier_sites``), for a resource of one of ``kinds``."""
    name = "courier_serving"

    def rule(p: Principal, r: Resource) -> Decision | None:
        if p.role is Role.COURIER and isinstance(r, kinds) and r.site_id in p.courier_sites:
            return Decision(True, name)
        return None

    return rule


def _depositor(*, serving: bool) -> Rule:
    """The courier who deposited the parcel (with ``serving``: still serving its site)."""
    name = "depositor_serving" if serving else "depositor"

    def rule(p: Principal, r: Resource) -> Decision | None:
        if (
            p.role is Role.COURIER
            and isinstance(r, ParcelRes)
            and r.courier_account_id == p.account_id
            and (not serving or r.site_id in p.courier_sites)
        ):
            return Decision(True, name)
        return None

    return rule


def _may_list(*roles: Role) -> Rule:
    """Callers with one of ``roles`` asking for a list (their own :class:`SiteRes`).

    Only the gate of a list route: the list then shows each item only if the item's own
    decision allows it.
    """
    name = "list:" + "|".join(r.value for r in roles)

    def rule(p: Principal, r: Resource) -> Decision | None:
        if isinstance(r, SiteRes) and p.role in roles and r.site_id == p.site_id:
            return Decision(True, name)
        return None

    return rule


def _issuer(p: Principal, r: Resource) -> Decision | None:
    """The account that issued the command."""
    if isinstance(r, CommandRes) and r.account_id == p.account_id and r.site_id == p.site_id:
        return Decision(True, "issuer")
    return None


_REASON = frozenset({Obligation.REASON})
_R = Role

#: The whole policy. An action absent here, or a request no rule of its action allows, is denied.
POLICY: Mapping[Action, tuple[Rule, ...]] = {
    Action.SESSION_END: (_self,),
    Action.ME_READ: (_self,),
    Action.DOOR_LIST: (_staff(_R.RESIDENT, _R.ENGINEER, _R.ADMIN),),
    # Staff may open a resident's door only with a recorded reason (the audit log keeps it).
    Action.DOOR_UNLOCK: (_resident_of_building, _staff(_R.ENGINEER, _R.ADMIN, obligations=_REASON)),
    Action.COMMAND_READ: (_issuer, _staff(_R.ENGINEER, _R.ADMIN)),
    Action.GATEWAY_LIST: (_staff(_R.ENGINEER, _R.ADMIN),),
    Action.ALARM_LIST: (_staff(_R.ENGINEER, _R.ADMIN),),
    Action.AUDIT_LIST: (_staff(_R.AUDITOR, _R.ADMIN),),
    Action.AUDIT_VERIFY: (_staff(_R.AUDITOR),),
    Action.RESIDENT_READ: (_staff(_R.ADMIN),),
    Action.RESIDENT_UNMASK: (_staff(_R.ADMIN, obligations=_REASON),),
    # The list filters through METER_READINGS per meter; residents see their own unit's only.
    Action.METER_LIST: (_staff(_R.RESIDENT, _R.ENGINEER, _R.ADMIN),),
    Action.METER_READINGS: (_resident_of_unit, _staff(_R.ENGINEER, _R.ADMIN)),
    Action.METER_READ_NOW: (_resident_of_unit, _staff(_R.ENGINEER, _R.ADMIN)),
    Action.DEVICE_LIST: (_staff(_R.ENGINEER, _R.ADMIN),),
    # Parcel lockers. Couriers act through the sites they serve; a parcel's code, QR and remote
    # open belong to the residents of its unit alone.
    # The gate (SiteRes) and each bank of the list (BankRes).
    Action.BANK_LIST: (
        _may_list(_R.COURIER, _R.ENGINEER, _R.ADMIN),
        _courier_serving(BankRes),
        _staff(_R.ENGINEER, _R.ADMIN),
    ),
    # Each compartment's state and fault reason, in the bank list.
    Action.BANK_COMPARTMENTS: (_staff(_R.ENGINEER, _R.ADMIN),),
    Action.RECIPIENT_LOOKUP: (_courier_serving(BankRes),),
    # The list filters through PARCEL_READ per parcel.
    Action.PARCEL_LIST: (_may_list(_R.RESIDENT, _R.COURIER, _R.ENGINEER, _R.ADMIN),),
    Action.PARCEL_READ: (
        _resident_of_parcel_unit,
        _depositor(serving=False),
        _staff(_R.ENGINEER, _R.ADMIN),
    ),
    Action.PARCEL_DEPOSIT: (_courier_serving(BankRes),),
    Action.PARCEL_COURIER_ACT: (_depositor(serving=True),),
    Action.PARCEL_PICKUP: (_resident_of_parcel_unit,),
    Action.PARCEL_CODE: (_resident_of_parcel_unit,),
    Action.COURIER_PASS: (_courier_serving(GatewayRes),),
    Action.NOTIFICATION_LIST: (_resident_self,),
    Action.NOTIFICATION_READ: (_addressee,),
}


def decide(principal: Principal | None, action: Action, resource: Resource) -> Decision:
    """May ``principal`` do ``action`` to ``resource``? Deny unless a rule of the action allows."""
    if principal is None:
        return Decision(False, "anonymous")
    for rule in POLICY.get(action, ()):
        decision = rule(principal, resource)
        if decision is not None:
            return decision
    return _DENY
