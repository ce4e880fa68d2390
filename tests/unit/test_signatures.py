"""Signed calls: keyed with CRON_SIGNING_KEY (never the bearer), bound to the method, path,
query, body and instant, good once within five minutes; every malformed header a clear
problem; and the canonical string exactly as docs/api.md shows it, in Python and in a shell."""

from __future__ import annotations

import hashlib
import hmac
import re
import subprocess
from pathlib import Path

import pytest

from cronlink.errors import ConfigError
from cronlink.signatures import Request, Verifier, canonical, sign, signing_keys

KEY = "s1gning-key-for-tests-0123456789abcdef"
OLD = "old-signing-key-0123456789abcdef-x"
BEARER = "s3cret-bearer-0123456789"
NOW = 2_000_000_000.0
CALL = Request(method="POST", path="/cron/ok", query="wait=true", body=b"{}")
DOCS = Path(__file__).parents[2] / "docs" / "api.md"
EXAMPLE = "v2=5d6899ca28f3d84ffeb5371de1f848355a1a7f95b469d411eb7c360bde4387d0"


def test_a_signature_is_good_once_and_with_either_key_of_a_rotation() -> None:
    verifier = Verifier([KEY, OLD])
    for key in (KEY, OLD):
        header = sign(key, CALL, at=NOW)
        assert verifier.problem(header, CALL, now=NOW + 10) is None
        assert verifier.problem(header, CALL, now=NOW + 11) == (
            "X-Cronlink-Signature was already used"
        )


@pytest.mark.parametrize(
    "changed",
    [
        Request(method="GET", path="/cron/ok", query="wait=true", body=b"{}"),
        Request(method="POST", path="/cron/other", query="wait=true", body=b"{}"),
        Request(method="POST", path="/cron/ok", query="wait=false", body=b"{}"),
        Request(method="POST", path="/cron/ok", query="", body=b"{}"),
        Request(method="POST", path="/cron/ok", query="wait=true", body=b"{ }"),
    ],
)
def test_any_change_to_what_is_signed_is_refused(changed: Request) -> None:
    header = sign(KEY, CALL, at=NOW)
    assert Verifier([KEY]).problem(header, changed, now=NOW) == (
        "X-Cronlink-Signature does not match the request and CRON_SIGNING_KEY"
    )


def test_a_capture_re_signed_with_the_bearer_or_late_is_refused() -> None:
    verifier = Verifier([KEY])
    assert "does not match" in (verifier.problem(sign(BEARER, CALL, at=NOW), CALL, now=NOW) or "")
    for late in (NOW + 301, NOW - 301):
        assert "more than 300 s" in (verifier.problem(sign(KEY, CALL, at=NOW), CALL, late) or "")


@pytest.mark.parametrize(
    ("header", "said"),
    [
        ("", "expected comma-separated name=value fields"),
        ("t=,n=,v2=", "t must be the signing time"),
        ("t=abc,n=0123456789abcdef,v2=" + "0" * 64, "t must be the signing time"),
        ("t=" + "9" * 5000 + ",n=0123456789abcdef,v2=" + "0" * 64, "longer than 256"),
        ("t=" + "9" * 13 + ",n=0123456789abcdef,v2=" + "0" * 64, "t must be the signing time"),
        ("t=\u0662\u0660\u0660,n=0123456789abcdef,v2=" + "0" * 64, "t must be the signing time"),
        ("t=-5,n=0123456789abcdef,v2=" + "0" * 64, "t must be the signing time"),
        ("t=2000000000,n=short,v2=" + "0" * 64, "n must be 16 to 64"),
        ("t=2000000000,n=0123456789abcdef,v2=xyz", "v2 must be 64 hexadecimal"),
        ("t=2000000000,n=0123456789abcdef,v2=\u00e9", "v2 must be 64 hexadecimal"),
        ("t=1,t=2,n=0123456789abcdef,v2=" + "0" * 64, "field 't' given twice"),
        ("t=2000000000,n=0123456789abcdef", "field v2 is missing"),
        ("t=2000000000,n=0123456789abcdef,v1=" + "0" * 64, "v1 signatures are no longer"),
        ("t=2000000000,n=0123456789abcdef,v2=" + "0" * 64 + ",x=1", "unknown field 'x'"),
    ],
)
def test_every_malformed_header_names_its_problem(header: str, said: str) -> None:
    problem = Verifier([KEY]).problem(header, CALL, now=NOW)
    assert problem is not None
    assert problem.startswith("X-Cronlink-Signature is malformed: ")
    assert said in problem


def test_without_a_signing_key_nothing_is_accepted() -> None:
    assert "has no CRON_SIGNING_KEY" in (Verifier([]).problem(sign(KEY, CALL), CALL) or "")


def test_signing_keys_are_long_and_never_a_bearer() -> None:
    assert signing_keys({"CRON_SIGNING_KEY": f" {KEY} , {OLD}"}) == [KEY, OLD]
    assert signing_keys({}) == []
    with pytest.raises(ConfigError, match=r"CRON_SIGNING_KEY: value #2 is shorter than 32"):
        signing_keys({"CRON_SIGNING_KEY": f"{KEY},short"})
    with pytest.raises(ConfigError, match="CRON_SIGNING_KEY must differ from every CRON_SECRET"):
        signing_keys({"CRON_SIGNING_KEY": KEY, "CRON_SECRET": f"{BEARER},{KEY}"})


def _example() -> Request:
    return Request(method="post", path="/cron/report", query="wait=true",
                   body=b'{"day":"2026-01-01"}')  # fmt: skip


def test_the_canonical_string_is_the_documented_one() -> None:
    docs = DOCS.read_text()
    stamp, nonce = 1767225600, "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    signed = canonical(_example(), stamp, nonce)
    assert f"```text\n{signed.decode()}\n```" in docs
    digest = hmac.new(b"example-signing-key-0123456789abcdef", signed, hashlib.sha256)
    assert f"v2={digest.hexdigest()}" == EXAMPLE
    assert f"t={stamp},n={nonce},{EXAMPLE}" in docs


def test_the_documented_python_signs_as_cronlink_verifies() -> None:
    [code] = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    scope: dict[str, object] = {}
    exec(code, scope)  # the example's own assert checks the worked example
    header = scope["signature"](KEY, "POST", "/cron/ok", "wait=true", b"{}")  # type: ignore[operator]
    assert Verifier([KEY]).problem(header, CALL) is None


def test_the_documented_shell_signs_as_cronlink_verifies() -> None:
    [code] = re.findall(r"```sh\n(key=.*?)```", DOCS.read_text(), re.S)
    # `curl` stands in for the call: it prints the signature header it was given.
    script = (
        'curl() { for a; do case $a in X-Cronlink-Signature:*) echo "${a#*: }";; esac; done; }\n'
    )
    env = {"PATH": "/usr/bin:/bin", "CRON_SIGNING_KEY": f"{KEY},{OLD}",
           "CRON_SECRET": BEARER, "APP_URL": "http://127.0.0.1:9"}  # fmt: skip
    done = subprocess.run(["bash", "-c", script + code], env=env, capture_output=True,
                          text=True, check=True)  # fmt: skip
    header = done.stdout.strip()
    call = Request(method="POST", path="/cron/report", query="wait=true",
                   body=b'{"day":"2026-01-01"}')  # fmt: skip
    assert Verifier([KEY]).problem(header, call) is None, header
