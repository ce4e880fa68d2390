"""The SSRF guard in the one HTTP client: forbidden addresses are refused before any
connection is attempted (names through an injected resolver, addresses in every written
form, every redirect hop), the address dialled is the one checked, and credentials do not
follow a redirect to another origin. Only 127.0.0.1 is ever dialled (the tripwire)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from ipaddress import IPv4Network, ip_address
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from cronlink.config import load_settings
from cronlink.egress import ALLOW_PRIVATE_ENV, LOOPBACK, PRIVATE_NETWORKS_ENV, EgressPolicy
from cronlink.errors import AddressRefusedError
from cronlink.http_client import new_session
from tests.acceptance.egress_kit import TableResolver, Tripwire, serving, tripwire

__all__ = ["tripwire"]

NAMES = {
    "metadata.internal": "169.254.169.254",
    "intranet.test": "10.1.2.3",
    "cgnat.test": "100.64.0.9",
    "ula.test": "fd00::1",
    "mapped.test": "::ffff:127.0.0.1",
    "nat64.test": "64:ff9b::a9fe:a9fe",
    "mixed.test": "93.184.216.34 10.0.0.1",  # one bad address spoils the answer
    "multicast.test": "224.0.0.251",
    "zero.test": "0.0.0.0",
}


async def _echo(request: web.Request) -> web.Response:
    return web.json_response({"authorization": request.headers.get("Authorization"),
                              "cookie": request.headers.get("Cookie")})  # fmt: skip


async def _redirect(request: web.Request) -> web.Response:
    return web.Response(status=int(request.query.get("status", "302")),
                        headers={"Location": request.query["to"]})  # fmt: skip


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async with serving([web.get("/echo", _echo), web.route("*", "/to", _redirect)]) as url:
        yield url


@pytest.mark.parametrize(
    ("url", "address"),
    [(f"http://{name}/path?token=s3cret", answer.split()[-1]) for name, answer in NAMES.items()]
    + [
        ("http://10.0.0.1/", "10.0.0.1"),
        ("http://127.0.0.1:1/", "127.0.0.1"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://[::1]/", "::1"),
        ("http://[::]/", "::"),
        ("http://0.0.0.0/", "0.0.0.0"),
        ("http://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254"),
        ("http://[64:ff9b::a9fe:a9fe]/", "64:ff9b::a9fe:a9fe"),
        ("http://[2002:a9fe:a9fe::]/", "2002:a9fe:a9fe::"),
        ("http://[fe80::1%25eth0]/", "fe80::1"),
        ("http://0x7f000001/", "127.0.0.1"),
        ("http://2130706433/", "127.0.0.1"),
        ("http://127.1/", "127.0.0.1"),
        ("http://0177.0.0.1/", "127.0.0.1"),
        ("http://user:s3cret@10.0.0.1/", "10.0.0.1"),
        ("http://public.example@127.0.0.1/", "127.0.0.1"),
        ("http://127.0.0.1#@public.example/", "127.0.0.1"),
    ],
)  # fmt: skip
async def test_refused_before_any_connection(tripwire: Tripwire, url: str, address: str) -> None:
    resolver = TableResolver(NAMES)
    async with new_session(EgressPolicy(), resolver=resolver) as session:
        with pytest.raises(AddressRefusedError) as refused:
            await session.get(url)
    assert refused.value.host == URL(url).raw_host
    assert refused.value.address == str(ip_address(address))
    assert str(refused.value).startswith(f"refused to connect to {refused.value.host}")
    assert "s3cret" not in str(refused.value)
    assert "path" not in str(refused.value)
    assert tripwire.connects == []


async def test_the_address_dialled_is_the_address_checked(tripwire: Tripwire, server: str) -> None:
    """DNS rebinding: the name answers 127.0.0.1 (allowed) once, then the metadata address.
    The connection goes to the answer that was checked; the next lookup is refused."""
    port = int(server.rsplit(":", 1)[1])
    resolver = TableResolver({"rebind.test": ["127.0.0.1", "169.254.169.254"]})
    async with new_session(LOOPBACK, resolver=resolver) as session:
        async with session.get(f"http://rebind.test:{port}/echo") as response:
            assert response.status == 200
        async with session.get(f"http://rebind.test:{port}/echo") as response:
            assert response.status == 200  # the same checked connection, kept alive
    assert resolver.lookups == ["rebind.test"]
    assert tripwire.connects == [("127.0.0.1", port)]
    async with new_session(LOOPBACK, resolver=resolver) as session:
        with pytest.raises(AddressRefusedError, match=r"rebind\.test \(169\.254\.169\.254\)"):
            await session.get(f"http://rebind.test:{port}/echo")
    assert tripwire.connects == [("127.0.0.1", port)]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize(
    "location",
    ["http://metadata.internal/latest", "http://10.0.0.1/", "http://[::ffff:a9fe:a9fe]/",
     "http://0x0a000001/", "http://intranet.test:5432/"],
)  # fmt: skip
async def test_every_redirect_hop_is_checked(
    tripwire: Tripwire, server: str, status: int, location: str
) -> None:
    port = int(server.rsplit(":", 1)[1])
    async with new_session(LOOPBACK, resolver=TableResolver(NAMES)) as session:
        with pytest.raises(AddressRefusedError):
            await session.post(f"{server}/to", params={"to": location, "status": str(status)},
                               data=b"body")  # fmt: skip
    assert tripwire.connects == [("127.0.0.1", port)]


async def test_credentials_do_not_follow_a_redirect_to_another_origin(
    tripwire: Tripwire, server: str
) -> None:
    """Another port on the same host is another origin: the token stays behind."""
    async with serving([web.get("/echo", _echo)]) as other, new_session(LOOPBACK) as session:
        headers = {"Authorization": "Bearer s3cret", "Cookie": "session=s3cret"}
        crossed = await session.get(f"{server}/to", params={"to": f"{other}/echo"},
                                    headers=headers)  # fmt: skip
        with_userinfo = server.replace("http://", "http://user:s3cret@")
        basic = await session.get(f"{with_userinfo}/to", params={"to": f"{other}/echo"})
        same = await session.get(f"{server}/to", params={"to": "/echo"}, headers=headers)
        assert await crossed.json() == {"authorization": None, "cookie": None}
        assert await basic.json() == {"authorization": None, "cookie": None}
        assert (await same.json())["authorization"] == "Bearer s3cret"
    assert {host for host, _ in tripwire.connects} == {"127.0.0.1"}


async def test_the_default_refuses_loopback_and_the_settings_open_it(
    tripwire: Tripwire, server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PRIVATE_NETWORKS_ENV)
    toml = tmp_path / "cronlink.toml"
    toml.write_text("")

    async def reaches(egress: EgressPolicy) -> bool:
        async with new_session(egress) as session:
            try:
                async with session.get(f"{server}/echo") as response:
                    return response.status == 200
            except AddressRefusedError:
                return False

    assert not await reaches(load_settings(toml).egress)
    assert tripwire.connects == []  # refused before dialling
    assert await reaches(EgressPolicy(allow_private=True))
    assert await reaches(EgressPolicy(networks=(IPv4Network("127.0.0.0/8"),)))
    assert not await reaches(EgressPolicy(networks=(IPv4Network("10.0.0.0/8"),)))
    toml.write_text('private_networks = ["127.0.0.1"]\n')
    assert await reaches(load_settings(toml).egress)
    toml.write_text("")
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")
    assert await reaches(load_settings(toml).egress)


async def test_a_plain_failure_is_still_a_client_error(tripwire: Tripwire) -> None:
    """An allowed address that does not answer is a network error, not a refusal."""
    async with new_session(LOOPBACK) as session:
        with pytest.raises(aiohttp.ClientConnectorError):
            await session.get("http://127.0.0.1:9/")
    assert tripwire.connects == [("127.0.0.1", 9)]
