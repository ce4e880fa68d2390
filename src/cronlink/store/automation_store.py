"""The automation domain's verbs, on either engine (`store.automations`), declared over
their SQL: automations and their polls in `automation_queries`, the events' lifecycle in
`event_queries`."""

from __future__ import annotations

from cronlink.store import automation_queries as q
from cronlink.store import event_queries as eq
from cronlink.store.verbs import SubStore, reads, writes


class AutomationStore(SubStore):
    add = writes(q.insert_automation)
    get = reads(q.get_automation)
    find = reads(q.list_automations)
    set_state = writes(q.set_state)
    delete = writes(q.delete_automation)
    take_due = writes(q.take_due)
    record_polls = writes(q.record_polls)
    record_poll_failure = writes(q.record_poll_failure)
    mark_stalled = writes(q.mark_stalled)
    due_scheduled = reads(q.due_scheduled)
    add_event = writes(q.add_event)

    event = reads(eq.get_event)
    events = reads(eq.list_events)
    take_event = writes(eq.take_event)
    save_progress = writes(eq.save_progress)
    replay = writes(eq.replay)
    orphaned = reads(eq.orphaned)
    pending_automations = reads(eq.pending_automations)
    settle_orphan = writes(eq.settle_orphan)
    purge = writes(eq.purge)
