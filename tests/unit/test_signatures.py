"""Signed calls: good once within five minutes, bound to method, path, body and secret."""

from __future__ import annotations

from cronlink.signatures import Verifier, sign

SECRET = "s3cret-for-signing-0001"
NOW = 2_000_000_000.0


def test_a_signature_is_good_once_for_its_request() -> None:
    verifier = Verifier(["old-secret-000000000", SECRET])
    header = sign(SECRET, "POST", "/cron/ok", b"{}", at=NOW)
    assert verifier.accepts(header, "POST", "/cron/ok", b"{}", now=NOW + 10)
    assert not verifier.accepts(header, "POST", "/cron/ok", b"{}", now=NOW + 11)  # replayed


def test_anything_changed_or_late_is_refused() -> None:
    verifier = Verifier([SECRET])
    header = sign(SECRET, "POST", "/cron/ok", b"{}", at=NOW)
    assert not verifier.accepts(header, "POST", "/cron/other", b"{}", now=NOW)
    assert not verifier.accepts(header, "GET", "/cron/ok", b"{}", now=NOW)
    assert not verifier.accepts(header, "POST", "/cron/ok", b"{ }", now=NOW)
    assert not verifier.accepts(header, "POST", "/cron/ok", b"{}", now=NOW + 301)
    assert not verifier.accepts(header, "POST", "/cron/ok", b"{}", now=NOW - 301)
    other = sign("another-secret-000000", "POST", "/cron/ok", b"{}", at=NOW)
    assert not verifier.accepts(other, "POST", "/cron/ok", b"{}", now=NOW)
    for garbage in ("", "t=,v1=", "v1=abc", "t=abc,v1=00", "t=2000000000,v1=\u00e9"):
        assert not verifier.accepts(garbage, "POST", "/cron/ok", b"{}", now=NOW)
    assert verifier.accepts(header, "POST", "/cron/ok", b"{}", now=NOW + 300)
