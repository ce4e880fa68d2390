"""`cronlink connections` and `cronlink keys`: tokens in by stdin or file, never out."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from cronlink.cli import cli
from cronlink.connections.crypto import generate_key
from tests.postgres import fresh_schema

CANARY_ACCESS = "at-canary-5b1f0e"
CANARY_REFRESH = "rt-canary-9d27c4"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "cronlink.toml").write_text(
        f'database_url = "sqlite:///{tmp_path / "c.db"}"\n[connections]\n'
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CRONLINK_SECRET_KEY", generate_key())
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return tmp_path


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)
    return result.exit_code, result.output


def _tokens() -> str:
    return json.dumps(
        {"access_token": CANARY_ACCESS, "refresh_token": CANARY_REFRESH, "expires_in": 3600}
    )


def test_add_from_stdin_then_list_show_and_events_never_print_a_token(home: Path) -> None:
    code, out = run(
        "connections", "add", "--provider", "sandbox", "--owner", "alice", "--tokens", "-",
        stdin=_tokens(),
    )  # fmt: skip
    assert (code, out) == (0, "connection 1 added (sandbox, owner alice)\n")
    (home / "tokens.json").write_text(_tokens())
    code, out = run(
        "connections", "add", "--provider", "xero", "--owner", "bob", "--tokens", "tokens.json"
    )
    assert code == 0
    outputs = [
        run("connections", "list")[1],
        run("connections", "list", "--json")[1],
        run("connections", "show", "1")[1],
        run("connections", "show", "2", "--json")[1],
        run("connections", "events")[1],
        run("jobs")[1],
    ]
    listed = json.loads(outputs[1])
    assert [(c["id"], c["provider"], c["state"]) for c in listed] == [
        (1, "sandbox", "active"),
        (2, "xero", "active"),
    ]
    assert "refresh-tokens" in outputs[5]
    for text in outputs:
        assert CANARY_ACCESS not in text
        assert CANARY_REFRESH not in text
    db = (home / "c.db").read_bytes()
    assert CANARY_ACCESS.encode() not in db
    assert CANARY_REFRESH.encode() not in db


def test_bad_input_names_what_is_wrong(home: Path) -> None:
    code, out = run("connections", "add", "--provider", "nope", "--owner", "a", "--tokens", "-",
                    stdin=_tokens())  # fmt: skip
    assert code == 2
    assert "unknown provider 'nope'; known: github" in out
    code, out = run("connections", "add", "--provider", "sandbox", "--owner", "a", "--tokens",
                    "-", stdin="{not json")  # fmt: skip
    assert code == 2
    assert "stdin is not JSON" in out
    code, out = run("connections", "add", "--provider", "sandbox", "--owner", "a")
    assert code == 2
    assert "give the access token" in out
    for bad, expected in (
        ('{"access_token": "a", "expires_in": 1e300}', "must be seconds between 0 and"),
        ('{"access_token": "a", "expires_in": true}', "expires_in must be a number"),
        ('{"access_token": "a", "refresh_token": 7}', "refresh_token must be a string"),
    ):
        code, out = run("connections", "add", "--provider", "sandbox", "--owner", "a",
                        "--tokens", "-", stdin=bad)  # fmt: skip
        assert code == 2, out
        assert expected in out
    code, out = run("connections", "show", "99")
    assert code == 1
    assert "no connection has id 99" in out


def test_disable_enable_delete(home: Path) -> None:
    run("connections", "add", "--provider", "sandbox", "--owner", "a", "--tokens", "-",
        stdin=_tokens())  # fmt: skip
    code, out = run("connections", "disable", "1", "--json")
    assert (code, json.loads(out)["state"]) == (0, "disabled")
    code, out = run("connections", "enable", "1", "--json")
    assert (code, json.loads(out)["state"]) == (0, "active")
    assert run("connections", "delete", "1") == (0, "connection 1 deleted\n")
    assert json.loads(run("connections", "list", "--json")[1]) == []


def test_keys_rotate_then_the_old_key_is_refused_loudly(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = os.environ["CRONLINK_SECRET_KEY"]
    for owner in ("a", "b"):
        run("connections", "add", "--provider", "sandbox", "--owner", owner, "--tokens", "-",
            stdin=_tokens())  # fmt: skip
    new = run("keys", "generate")[1].strip()
    assert len(new) == 44
    monkeypatch.setenv("CRONLINK_SECRET_KEY", new)
    code, out = run("connections", "list")
    assert code == 2
    assert "start-up refused" in out
    assert old not in out
    assert new not in out
    monkeypatch.setenv("CRONLINK_SECRET_KEY", f"{new},{old}")
    code, out = run("keys", "rotate")
    assert (code, out) == (0, "re-encrypted 2 connections with the first key; older keys can go\n")
    monkeypatch.setenv("CRONLINK_SECRET_KEY", new)
    assert run("connections", "list")[0] == 0


def test_a_lost_key_leaves_delete_and_forget_lost_as_ways_out(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lost = os.environ["CRONLINK_SECRET_KEY"]
    for owner in ("a", "b", "c"):
        run("connections", "add", "--provider", "sandbox", "--owner", owner, "--tokens", "-",
            stdin=_tokens())  # fmt: skip
    kept = generate_key()
    monkeypatch.setenv("CRONLINK_SECRET_KEY", f"{kept},{lost}")
    run("connections", "add", "--provider", "sandbox", "--owner", "d", "--tokens", "-",
        stdin=_tokens())  # fmt: skip
    monkeypatch.setenv("CRONLINK_SECRET_KEY", kept)  # the first key is lost for good
    code, out = run("connections", "list")
    assert code == 2
    assert "cronlink keys forget-lost" in out
    assert run("connections", "delete", "3") == (0, "connection 3 deleted\n")
    assert run("keys", "forget-lost", stdin="n\n")[0] == 1  # asked, and refused
    assert run("connections", "list")[0] == 2  # nothing forgotten without a yes
    code, out = run("keys", "forget-lost", "--yes")
    assert code == 0
    assert "forgot the credentials of 2 connections sealed with lost key id" in out
    assert "(1, 2)" in out
    code, out = run("connections", "list", "--json")
    assert code == 0
    states = {c["owner"]: (c["state"], c["last_error"]) for c in json.loads(out)}
    assert states["d"] == ("active", None)
    assert {states[o][0] for o in ("a", "b")} == {"needs_reauth"}
    assert all("lost" in str(states[o][1]) for o in ("a", "b"))
    assert CANARY_ACCESS not in out
    assert run("keys", "forget-lost", "--yes")[1].startswith("every stored credential opens")
    code, out = run("connections", "refresh", "1")
    assert code != 0
    assert "needs_reauth" in out
    assert run("keys", "rotate")[0] == 0  # every row opens with a key held again


def test_no_key_or_no_section_is_a_clear_error(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRONLINK_SECRET_KEY")
    code, out = run("connections", "list")
    assert code == 2
    assert "CRONLINK_SECRET_KEY is not set" in out
    (home / "cronlink.toml").write_text(f'database_url = "sqlite:///{home / "c.db"}"\n')
    code, out = run("connections", "list")
    assert code == 2
    assert "add a [connections] section" in out


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_a_deleted_connections_id_is_never_given_again(engine: str, home: Path) -> None:
    """Alice's connection is deleted, Bob's added: Bob's gets a new id, none of Alice's
    events, and his own refresh run (its dedupe key holds the id)."""
    with contextlib.ExitStack() as stack:
        if engine == "postgres":
            url = stack.enter_context(fresh_schema())
            (home / "cronlink.toml").write_text(f'database_url = "{url}"\n[connections]\n')
        add_delete_add()


def add_delete_add() -> None:
    add = ("connections", "add", "--provider", "sandbox", "--tokens", "-")
    assert run(*add, "--owner", "alice", stdin=_tokens()) == (
        0, "connection 1 added (sandbox, owner alice)\n",
    )  # fmt: skip
    assert run("connections", "delete", "1") == (0, "connection 1 deleted\n")
    code, out = run(*add, "--owner", "bob", stdin=_tokens())
    assert (code, out) == (0, "connection 2 added (sandbox, owner bob)\n")
    bobs = json.loads(run("connections", "events", "2", "--json")[1])
    assert [e["kind"] for e in bobs] == ["created"]
    code, out = run("runs", "--job", "refresh-connection", "--json")
    assert code == 0, out
    queued = [e["run"]["payload"]["connection_id"] for e in json.loads(out)]
    assert sorted(queued) == [1, 2]


def test_names_are_given_shown_changed_and_refused_naming_the_bad_one(home: Path) -> None:
    def add(owner: str, *more: str) -> tuple[int, str]:
        return run("connections", "add", "--provider", "sandbox", "--owner", owner,
                   "--tokens", "-", *more, stdin=_tokens())  # fmt: skip

    assert add("alice", "--name", "mail") == (
        0, "connection 1 added (sandbox, owner alice, named mail)\n"
    )  # fmt: skip
    assert add("bob", "--name", "mail")[0] == 0  # another owner's name is no clash
    code, out = add("alice", "--name", "mail")
    assert code != 0
    assert "alice has a connection named 'mail' already (connection 1)" in out
    code, out = add("alice", "--name", "9lives")
    assert code != 0
    assert "name: '9lives' is not a connection name: give 1-64 letters" in " ".join(out.split())
    assert add("alice")[0] == 0
    assert run("connections", "rename", "3", "crm-main") == (0, "connection 3 is named crm-main\n")
    code, out = run("connections", "rename", "3", "x" * 65)
    assert code != 0
    assert f"'{'x' * 65}' is not a connection name" in out.replace("\n", "")
    listed = json.loads(run("connections", "list", "--owner", "alice", "--json")[1])
    assert [(c["id"], c["name"]) for c in listed] == [(1, "mail"), (3, "crm-main")]
    assert "crm-main" in run("connections", "list")[1]
    assert run("connections", "rename", "1", "--remove") == (0, "connection 1 has no name now\n")
    assert json.loads(run("connections", "show", "1", "--json")[1])["name"] is None
    assert run("connections", "rename", "1")[0] == 2  # neither a name nor --remove
