"""The CRM's contacts, in memory: upserts keyed by `external_id`, read back in id order.

A contact is its fields as last written, merged over the earlier ones, plus `id` (the
CRM's, `"1"`, `"2"`… in creation order), `created_at` and `updated_at`. An upsert of an
external id already stored updates that contact; one whose fields all equal the stored
ones changes nothing and counts as a duplicate write (a replayed batch shows as these).
Every operation is dict lookups and list appends: a batch costs its size, whatever the
number of contacts stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RESERVED = ("id", "created_at", "updated_at")


@dataclass
class ContactStats:
    created: int = 0
    updated: int = 0
    rejected: int = 0
    duplicates: int = 0
    """Writes whose fields equal what was stored for their external id."""
    batches: int = 0
    """Batches applied (not replays, not refused ones)."""
    replays: int = 0
    """Batches answered from an earlier answer to their `Idempotency-Key`."""
    refused_batches: int = 0
    """Batches refused whole: over the limit, not a list, a reused `Idempotency-Key`."""
    largest_batch: int = 0


@dataclass
class Contacts:
    stored: list[dict[str, Any]] = field(default_factory=list)
    """In id order: contact `n` is at index `n - 1`."""
    by_external: dict[str, dict[str, Any]] = field(default_factory=dict)
    stats: ContactStats = field(default_factory=ContactStats)

    def upsert(self, records: list[Any], now: str) -> dict[str, Any]:
        """Apply `records` in order; the answer lists each accepted record's outcome and
        each rejected one's index and reason."""
        self.stats.batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(records))
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for index, record in enumerate(records):
            reason = _invalid(record)
            if reason is not None:
                external = record.get("external_id") if isinstance(record, dict) else None
                errors.append({"index": index, "external_id": external, "reason": reason})
                continue
            given = {**record, "external_id": str(record["external_id"])}
            contact, status = self._write(given, now)
            results.append({"index": index, "id": contact["id"],
                            "external_id": given["external_id"], "status": status})  # fmt: skip
        self.stats.rejected += len(errors)
        counts = {s: sum(1 for r in results if r["status"] == s) for s in STATUSES}
        return {**counts, "rejected": len(errors), "results": results, "errors": errors}

    def _write(self, given: dict[str, Any], now: str) -> tuple[dict[str, Any], str]:
        contact = self.by_external.get(given["external_id"])
        if contact is None:
            contact = {"id": str(len(self.stored) + 1), **given,
                       "created_at": now, "updated_at": now}  # fmt: skip
            self.stored.append(contact)
            self.by_external[given["external_id"]] = contact
            self.stats.created += 1
            return contact, "created"
        if all(k in contact and contact[k] == v for k, v in given.items()):
            self.stats.duplicates += 1
            return contact, "unchanged"
        contact.update(given, updated_at=now)
        self.stats.updated += 1
        return contact, "updated"

    def page(self, cursor: str, limit: int) -> dict[str, Any]:
        """The `limit` contacts after id `cursor` (empty: from the first), and the cursor
        of the next page (None on the last). `ValueError` for a cursor not ours."""
        after = int(cursor) if cursor else 0
        if after < 0:
            raise ValueError(cursor)
        chosen = self.stored[after : after + limit]
        more = after + limit < len(self.stored)
        return {"contacts": chosen, "next_cursor": chosen[-1]["id"] if more else None}

    def get(self, contact_id: str) -> dict[str, Any] | None:
        if not contact_id.isdigit() or not 0 < int(contact_id) <= len(self.stored):
            return None
        return self.stored[int(contact_id) - 1]

    def reset(self) -> None:
        self.stored.clear()
        self.by_external.clear()
        self.stats = ContactStats()


STATUSES = ("created", "updated", "unchanged")


def _invalid(record: Any) -> str | None:
    """Why the CRM refuses `record`, or None."""
    if not isinstance(record, dict):
        return "a record must be an object"
    external = record.get("external_id")
    if isinstance(external, bool) or not isinstance(external, str | int) or external == "":
        return "missing external_id (a non-empty string or an integer)"
    email = record.get("email")
    if email is None or email == "":
        return "missing email"
    if not isinstance(email, str) or email.count("@") != 1 or not all(email.split("@")):
        return "invalid email"
    reserved = [name for name in RESERVED if name in record]
    if reserved:
        return f"{', '.join(reserved)}: set by the CRM, not writable"
    return None
