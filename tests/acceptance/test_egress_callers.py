"""Every caller of the guarded client reports a refused address as what it is: an HTTP
target job fails at once with the refusal, an `http` step fails for good (in a heavy run's
process too), a provider on a private address is a refresh `config` error, a failed probe
and a poll error, and every run is given its worker's policy. Only 127.0.0.1 is dialled."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Network

import pytest
from yarl import URL

from cronlink.automations import http_step
from cronlink.automations.steps import HttpStep, StepContext
from cronlink.context import RunContext, RunLog
from cronlink.egress import LOOPBACK, EgressPolicy
from cronlink.errors import RefreshError, StepError
from cronlink.http_client import new_session
from cronlink.jobs import HttpTarget, build_job, new_run
from cronlink.records.automations import EventState
from cronlink.records.connections import ConnectionState, Health
from cronlink.records.runs import Reason, RunState, Tier
from cronlink.store import Store
from tests.acceptance.automation_kit import STEPS, AutoKit, auto, heavy_worker
from tests.acceptance.egress_kit import TableResolver, Tripwire, egress_seen, tripwire
from tests.acceptance.sandbox_kit import kit
from tests.acceptance.worker_kit import finished, running_worker, wait_until

__all__ = ["auto", "kit", "tripwire"]
PRIVATE_HINT = (
    "set allow_private_networks = true in cronlink.toml (or CRONLINK_ALLOW_PRIVATE_NETWORKS=1), "
    "or add its network to private_networks, to allow it"
)


@pytest.mark.parametrize("tier", [Tier.LIGHT, Tier.HEAVY])
async def test_an_http_target_job_fails_at_once_with_the_refusal(
    sqlite_store: Store, tripwire: Tripwire, monkeypatch: pytest.MonkeyPatch, tier: Tier
) -> None:
    monkeypatch.setenv("HOOK_HOST", "hooks-s3cret.test")
    resolver = TableResolver(
        {"metadata.internal": "169.254.169.254", "hooks-s3cret.test": "10.0.0.1"}
    )
    urls = ["http://metadata.internal/latest/?key=s3cret", "http://${HOOK_HOST}/x"]
    runs = []
    for index, url in enumerate(urls):
        job = build_job(name=f"call-{index}", schedules=[], tier=tier.value, max_attempts=3,
                        min_backoff=0.01, target=HttpTarget(url=url))  # fmt: skip
        run_id = await sqlite_store.enqueue(new_run(job, Reason.API), datetime.now(UTC))
        async with running_worker(sqlite_store, tier, {job.name: job}, EgressPolicy(), resolver):
            runs.append(await finished(sqlite_store, run_id))
    metadata, hooks = runs
    assert [(r.state, r.attempt) for r in runs] == [(RunState.FAILED, 1)] * 2  # not retried
    assert metadata.error is not None
    assert metadata.error.type == "AddressRefusedError"
    assert metadata.error.message == (
        "refused to connect to metadata.internal (169.254.169.254): a cloud metadata address; "
        "add its network to private_networks in cronlink.toml to allow it"
    )
    assert hooks.error is not None
    assert hooks.error.message.startswith("refused to connect to *** (10.0.0.1): a private")
    assert not [t for r in runs for t in (r.error.message, r.error.traceback) if "s3cret" in t]  # type: ignore[union-attr]
    assert tripwire.connects == []


async def test_an_http_step_fails_for_good_with_the_refusal(tripwire: Tripwire) -> None:
    step = HttpStep(url="http://hooks.internal/x?token=s3cret", connection=False)
    resolver = TableResolver({"hooks.internal": "10.9.8.7"})
    async with new_session(EgressPolicy(), resolver=resolver) as session:
        with pytest.raises(StepError) as failed:
            await http_step.call(step, {}, _step_context(session))
    assert not failed.value.retryable
    assert str(failed.value) == (
        f"POST: refused to connect to hooks.internal (10.9.8.7): a private address; {PRIVATE_HINT}"
    )
    assert tripwire.connects == []


REFUSED_BY_POLICY = [
    # A host that is neither an IP address nor a host name: no resolver may see it.
    ("http://%31%32%37.0.0.1:1/x?t=s3cret",
     "refused to connect to %31%32%37.0.0.1: it is neither an IP address nor a valid host name"),
    ("http://exa%20mple.test/", "refused to connect to exa%20mple.test: it is neither an IP "
     "address nor a valid host name"),
    # Not HTTP: aiohttp's own refusal, which is policy too, not a network failure.
    ("ftp://127.0.0.1:1/x?t=s3cret", "refused to connect to the URL: 'ftp' is not http or https"),
]  # fmt: skip


@pytest.mark.parametrize(("url", "message"), REFUSED_BY_POLICY)
async def test_a_target_refused_by_policy_fails_at_once_and_nothing_is_looked_up(
    sqlite_store: Store, tripwire: Tripwire, url: str, message: str
) -> None:
    resolver = TableResolver({})
    job = build_job(name="call", schedules=[], max_attempts=3, min_backoff=0.01,
                    target=HttpTarget(url=url))  # fmt: skip
    run_id = await sqlite_store.enqueue(new_run(job, Reason.API), datetime.now(UTC))
    async with running_worker(sqlite_store, Tier.LIGHT, {job.name: job}, LOOPBACK, resolver):
        run = await finished(sqlite_store, run_id)
    assert (run.state, run.attempt) == (RunState.FAILED, 1)  # not retried
    assert run.error is not None
    assert (run.error.type, run.error.message) == ("AddressRefusedError", message)
    assert "s3cret" not in run.error.message + run.error.traceback
    assert resolver.lookups == []
    assert tripwire.connects == []


@pytest.mark.parametrize(("url", "message"), REFUSED_BY_POLICY)
async def test_a_step_refused_by_policy_fails_for_good(
    tripwire: Tripwire, url: str, message: str
) -> None:
    resolver = TableResolver({})
    step = HttpStep(url=url, connection=False)
    async with new_session(LOOPBACK, resolver=resolver) as session:
        with pytest.raises(StepError) as failed:
            await http_step.call(step, {}, _step_context(session))
    assert not failed.value.retryable
    assert str(failed.value) == f"POST: {message}"
    assert resolver.lookups == []
    assert tripwire.connects == []


async def test_an_http_step_in_a_heavy_run_is_refused_and_dead_lettered(auto: AutoKit) -> None:
    """The heavy run's process gets the worker's policy (loopback only here); its first
    step arms a tripwire in that process, so the refused step could not have dialled."""
    cid = await auto.kit.connect()
    added = await auto.automations.add(
        name="hooks", connection_id=cid, trigger="new_item", start="beginning", steps=[
            {"name": "arm", "call": "tests.acceptance.egress_kit:arm_tripwire"},
            {"name": "post", "http": {"url": "http://10.9.8.7/x?t=s3cret", "connection": False}},
        ],
    )  # fmt: skip
    await auto.feed(count=1)
    await auto.poll(timedelta(0))
    async with heavy_worker(auto):

        async def settled() -> bool:
            events = await auto.automations.events(added.id)
            return bool(events) and events[0].state is EventState.DEAD_LETTER

        await wait_until(settled, within=60)
    [event] = await auto.automations.events(added.id)
    assert event.error == (
        f"step 1 (post): POST: refused to connect to 10.9.8.7: a private address; {PRIVATE_HINT}"
    )


async def test_a_provider_on_a_private_address_is_refused_everywhere(
    auto: AutoKit, tripwire: Tripwire, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sandbox's base URL renamed `sandbox.internal`: answering 10.0.0.7, the refresh,
    the probe and the poll are refused; answering 127.0.0.1 (loopback allowed), they work."""
    cid = await auto.kit.connect()
    added = await auto.automations.add(
        name="inbox", connection_id=cid, trigger="new_email", steps=STEPS, start="beginning"
    )
    await auto.feed(count=2)
    port = URL(auto.kit.sandbox.url).port
    monkeypatch.setenv("CRONLINK_SANDBOX_URL", f"http://sandbox.internal:{port}")
    dialled = len(tripwire.connects)
    refusal = (
        f"refused to connect to sandbox.internal (10.0.0.7): a private address; {PRIVATE_HINT}"
    )
    private = TableResolver({"sandbox.internal": "10.0.0.7"})
    async with new_session(LOOPBACK, resolver=private) as session:
        auto.use(session)
        with pytest.raises(RefreshError) as refused:
            await auto.kit.connections.refresh(cid)
        assert refused.value.kind == "config"
        assert str(refused.value) == f"sandbox token endpoint: {refusal}"
        connection = await auto.kit.connections.get(cid)
        assert connection.state is ConnectionState.ACTIVE  # the operator's to fix, not the user's
        checked = await auto.kit.connections.check(cid)
        assert checked.health is Health.DEGRADED
        tally = await auto.poll()
        assert (tally.polls, tally.failed) == (0, 1)
        assert (await auto.automations.get(added.id)).last_error == refusal
    assert tripwire.connects[dialled:] == []
    # The sandbox's OAuth2 server takes plain http from 127.0.0.1 only, by its Host header.
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    loopback = TableResolver({"sandbox.internal": "127.0.0.1"})
    async with new_session(LOOPBACK, resolver=loopback) as session:
        auto.use(session)
        assert (await auto.kit.connections.refresh(cid)).last_error is None
        assert (await auto.kit.connections.check(cid)).health is Health.HEALTHY
        tally = await auto.poll(timedelta(hours=1))
        assert (tally.polls, tally.failed, tally.events) == (1, 0, 2)
    assert {host for host, _ in tripwire.connects} == {"127.0.0.1"}


@pytest.mark.parametrize("tier", [Tier.LIGHT, Tier.HEAVY])
async def test_every_run_is_given_its_workers_policy(sqlite_store: Store, tier: Tier) -> None:
    job = build_job(name="seen", schedules=[], tier=tier.value, handler=egress_seen,
                    handler_path="tests.acceptance.egress_kit:egress_seen")  # fmt: skip
    egress = EgressPolicy(networks=(IPv4Network("10.1.0.0/16"), IPv4Network("127.0.0.0/8")))
    run_id = await sqlite_store.enqueue(new_run(job, Reason.API), datetime.now(UTC))
    async with running_worker(sqlite_store, tier, {job.name: job}, egress):
        run = await finished(sqlite_store, run_id)
    assert run.result is not None
    assert json.loads(run.result) == {"allow_private": False,
                                      "networks": ["10.1.0.0/16", "127.0.0.0/8"]}  # fmt: skip


async def test_a_heavy_handler_session_gets_the_policy_and_is_not_retried(
    sqlite_store: Store,
) -> None:
    job = build_job(name="fetch", schedules=[], tier="heavy", max_attempts=3, min_backoff=0.01,
                    handler_path="tests.acceptance.egress_kit:fetch_private")  # fmt: skip
    run_id = await sqlite_store.enqueue(new_run(job, Reason.API), datetime.now(UTC))
    async with running_worker(sqlite_store, Tier.HEAVY, {job.name: job}, LOOPBACK):
        run = await finished(sqlite_store, run_id)
    assert (run.state, run.attempt) == (RunState.FAILED, 1)
    assert run.error is not None
    assert run.error.type == "AddressRefusedError"
    assert run.error.message.startswith("refused to connect to 10.9.8.7: a private address")


def _step_context(session: object) -> StepContext:
    async def enqueue(job: str, payload: object, not_before: datetime | None) -> int:
        raise AssertionError("not expected")

    run = RunContext(
        run_id=1, job="process-automation", scheduled_for=None, attempt=1, idempotency_key="k",
        payload=None, log=RunLog("process-automation", 1), _enqueue=enqueue,
    )  # fmt: skip
    return StepContext(
        event_id=1, automation="hooks", step="post", attempt=1, idempotency_key="k:post",
        outputs={}, params={}, connection_id=1, base_url="http://provider.test", log=run.log,
        session=session, index=0, run=run,  # type: ignore[arg-type]
    )  # fmt: skip
