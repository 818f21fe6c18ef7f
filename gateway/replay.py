"""The replay guard: the stateful half of accepting a signed command.

:func:`cloud_sync.protocol.verify_command` does the stateless checks (size, signature, key,
gateway binding, action, lifetime, window). What it cannot know is whether this gateway has seen the
command before; that needs state that outlives the process:

* a command id that was seen before is refused ``replayed``;
* a ``seq`` at or below the highest seq accepted for the signing key is refused
  ``out_of_sequence`` — so even a command whose id record was pruned can never run twice;
* an action this gateway has no handler for is refused ``unsupported_action``, and a target that
  is not one of the gateway's things that action applies to (``door.unlock``: its doors,
  ``meter.read``: its meters) is refused ``unknown_target`` — a door id in a ``meter.read`` too.

:meth:`ReplayGuard.accept` records the accepted seq and the command inside the caller's
transaction, which the caller commits (``synchronous=FULL``) *before* anything actuates: a crash
after the commit loses at most a pulse, never lets the same bytes pulse twice. Commands whose
signature did not verify are never recorded, so forged messages cannot poison the id table. A
refused command does not advance its key's seq.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from cloud_sync.protocol import (
    CommandBody,
    CommandRefused,
    CommandStatus,
    RefusalReason,
    verify_command,
)
from gateway.store import Store, Transaction
from trust import VerifyKey

__all__ = ["AUTHENTICATED_REFUSALS", "ReplayGuard", "ReplayState"]

#: Refusals made after the signature verified and the command was addressed to this gateway:
#: only for these may the gateway report a status for the command's id. (A forged message's id is
#: not the cloud's; a ``replayed`` id's status belongs to its first delivery.)
AUTHENTICATED_REFUSALS = frozenset(
    {
        RefusalReason.UNKNOWN_TARGET,
        RefusalReason.UNSUPPORTED_ACTION,
        RefusalReason.EXPIRED,
        RefusalReason.NOT_YET_VALID,
        RefusalReason.LIFETIME_TOO_LONG,
        RefusalReason.OUT_OF_SEQUENCE,
    }
)


@dataclass(frozen=True, slots=True)
class ReplayState:
    """The highest accepted seq of one signing key."""

    kid: str
    last_seq: int
    updated_ms: int


class ReplayGuard:
    """Verifies signed commands and refuses any that ran, or could have run, before."""

    def __init__(
        self,
        store: Store,
        keys: Mapping[str, VerifyKey],
        gateway_id: str,
        targets: Mapping[str, Collection[str]],
    ) -> None:
        """``targets``: for each action this gateway executes, the ids its commands may name."""
        self._store = store
        self._keys = dict(keys)
        self._gateway = gateway_id
        self._targets = {action: frozenset(ids) for action, ids in targets.items()}

    @property
    def actions(self) -> frozenset[str]:
        """The actions this guard lets through (each needs a handler)."""
        return frozenset(self._targets)

    def verify(self, data: bytes, now_ms: int) -> CommandBody:
        """The stateless checks; raises :class:`CommandRefused`."""
        return verify_command(data, self._keys, self._gateway, now_ms)

    def accept(self, tx: Transaction, body: CommandBody, now_ms: int) -> None:
        """Refuse a replay, or record ``body`` as accepted (status ``sent``) inside ``tx``."""
        seen = tx.execute("SELECT 1 FROM commands WHERE id = ?", (body.id,)).fetchone()
        if seen is not None:
            raise CommandRefused(RefusalReason.REPLAYED, body.id)
        row = tx.execute("SELECT last_seq FROM replay_keys WHERE kid = ?", (body.kid,)).fetchone()
        if row is not None and body.seq <= row[0]:
            raise CommandRefused(RefusalReason.OUT_OF_SEQUENCE, body.id)
        targets = self._targets.get(body.action)
        if targets is None:
            raise CommandRefused(RefusalReason.UNSUPPORTED_ACTION, body.id)
        if body.target not in targets:
            raise CommandRefused(RefusalReason.UNKNOWN_TARGET, body.id)
        tx.execute(
            "INSERT INTO replay_keys (kid, last_seq, updated_ms) VALUES (?, ?, ?)"
            " ON CONFLICT (kid) DO UPDATE SET last_seq = excluded.last_seq,"
            " updated_ms = excluded.updated_ms",
            (body.kid, body.seq, now_ms),
        )
        # The ``door`` column holds the target of any action (it was named when unlocks were the
        # only commands); the lifecycle of every command is recorded the same way.
        tx.execute(
            "INSERT INTO commands (id, kid, seq, door, action, actor, status, reason,"
            " received_ms, expires_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                body.id,
                body.kid,
                body.seq,
                body.target,
                body.action,
                body.actor,
                CommandStatus.SENT.value,
                None,
                now_ms,
                body.expires_at,
                now_ms,
            ),
        )

    def state(self, kid: str) -> ReplayState | None:
        """The replay state of one key, if it ever signed an accepted command."""
        rows = self._store.query(
            "SELECT kid, last_seq, updated_ms FROM replay_keys WHERE kid = ?", (kid,)
        )
        return ReplayState(*rows[0]) if rows else None

    def prune(self, before_ms: int) -> int:
        """Forget finished command records last touched before ``before_ms``.

        Safe because the per-key seq stays: a pruned command's bytes are refused
        ``out_of_sequence`` (or ``expired``) forever after.
        """
        with self._store.transaction() as tx:
            return tx.execute(
                "DELETE FROM commands WHERE updated_ms < ? AND expires_ms < ?"
                " AND status NOT IN ('sent', 'acknowledged')",
                (before_ms, before_ms),
            ).rowcount
