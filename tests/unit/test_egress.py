"""The SSRF guard's policy: every form of a non-public address is refused with its kind
and how to allow it; `allow_private_networks` and `private_networks` open what they say,
from cronlink.toml or the environment."""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path

import pytest

from cronlink.config import load_settings
from cronlink.egress import (
    ALLOW_PRIVATE_ENV,
    PRIVATE_NETWORKS_ENV,
    EgressPolicy,
    host_refusal,
    ip_literal,
    parse_networks,
    policy_from,
)
from cronlink.errors import ConfigError

LOOPBACK, PRIVATE, SHARED = "a loopback address", "a private address", "a carrier-grade NAT"
METADATA, LINK_LOCAL, MULTICAST = "a cloud metadata address", "a link-local address", "a multicast"
UNSPECIFIED, RESERVED = "the unspecified address", "a reserved address"

REFUSED = [
    ("127.0.0.1", LOOPBACK), ("127.255.255.254", LOOPBACK), ("::1", LOOPBACK),
    ("10.0.0.1", PRIVATE), ("172.16.0.1", PRIVATE), ("172.31.255.255", PRIVATE),
    ("192.168.1.1", PRIVATE), ("fc00::1", PRIVATE), ("fd12:3456::1", PRIVATE),
    ("fec0::1", PRIVATE), ("64:ff9b:1::a00:1", PRIVATE),
    ("100.64.0.1", SHARED), ("100.127.255.255", SHARED),
    ("169.254.169.254", METADATA), ("169.254.170.2", METADATA), ("100.100.100.200", METADATA),
    ("fd00:ec2::254", METADATA),
    ("169.254.1.1", LINK_LOCAL), ("fe80::1", LINK_LOCAL),
    ("224.0.0.251", MULTICAST), ("239.255.255.250", MULTICAST), ("ff02::1", MULTICAST),
    ("ff0e::1", MULTICAST),
    ("0.0.0.0", UNSPECIFIED), ("::", UNSPECIFIED),
    ("0.1.2.3", RESERVED), ("240.0.0.1", RESERVED), ("255.255.255.255", RESERVED),
    ("192.0.0.8", RESERVED), ("192.0.2.1", RESERVED), ("198.18.0.1", RESERVED),
    ("198.51.100.1", RESERVED), ("203.0.113.1", RESERVED), ("2001:db8::1", RESERVED),
    ("100::1", RESERVED), ("::7f00:1", RESERVED),  # IPv4-compatible 127.0.0.1
    # An IPv4 address inside an IPv6 one is judged as itself: mapped, NAT64, 6to4, Teredo.
    ("::ffff:127.0.0.1", f"it maps 127.0.0.1, {LOOPBACK}"),
    ("::ffff:a9fe:a9fe", f"it maps 169.254.169.254, {METADATA}"),
    ("::ffff:10.0.0.1", f"it maps 10.0.0.1, {PRIVATE}"),
    ("64:ff9b::a9fe:a9fe", f"it maps 169.254.169.254, {METADATA}"),
    ("64:ff9b::7f00:1", f"it maps 127.0.0.1, {LOOPBACK}"),
    ("2002:7f00:1::", f"it maps 127.0.0.1, {LOOPBACK}"),
    ("2002:a9fe:a9fe::1", f"it maps 169.254.169.254, {METADATA}"),
    ("2002:a00:1::", f"it maps 10.0.0.1, {PRIVATE}"),
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", f"it maps 10.0.0.1, {PRIVATE}"),  # Teredo client
]  # fmt: skip
PUBLIC = [
    "8.8.8.8", "93.184.216.34", "100.63.255.255", "100.128.0.1", "172.32.0.1",
    "169.253.255.255", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808",
    "2002:808:808::1", "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
]  # fmt: skip
OPENED_BY_ALLOW_PRIVATE = {LOOPBACK, PRIVATE, SHARED, LINK_LOCAL}


@pytest.mark.parametrize(("address", "kind"), REFUSED)
def test_non_public_addresses_are_refused_with_their_kind(address: str, kind: str) -> None:
    reason = EgressPolicy().refusal(ip_address(address))
    assert reason is not None
    assert reason.startswith(kind)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert EgressPolicy().refusal(ip_address(address)) is None


@pytest.mark.parametrize(("address", "kind"), REFUSED)
def test_allow_private_opens_private_kinds_not_metadata_or_multicast(
    address: str, kind: str
) -> None:
    opened = any(kind.endswith(private) for private in OPENED_BY_ALLOW_PRIVATE)
    reason = EgressPolicy(allow_private=True).refusal(ip_address(address))
    assert (reason is None) is opened


def test_the_reason_says_how_to_allow_it() -> None:
    private = EgressPolicy().refusal(ip_address("10.0.0.1"))
    metadata = EgressPolicy().refusal(ip_address("169.254.169.254"))
    assert private == (
        "a private address; set allow_private_networks = true in cronlink.toml (or "
        "CRONLINK_ALLOW_PRIVATE_NETWORKS=1), or add its network to private_networks, to allow it"
    )
    assert metadata == (
        "a cloud metadata address; add its network to private_networks in cronlink.toml to allow it"
    )


def test_listed_networks_open_exactly_themselves() -> None:
    policy = EgressPolicy(networks=parse_networks(["10.1.0.0/16", "169.254.169.254", "fd12::/64"]))
    allowed = ["10.1.2.3", "169.254.169.254", "fd12::7", "::ffff:10.1.2.3", "8.8.8.8"]
    refused = ["10.2.0.1", "169.254.169.253", "fd13::1", "127.0.0.1", "::ffff:10.2.0.1"]
    assert [a for a in allowed if policy.refusal(ip_address(a)) is not None] == []
    assert [a for a in refused if policy.refusal(ip_address(a)) is None] == []


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("10.0.0.1", "10.0.0.1"), ("127.1", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"), ("0x7f.0.0.1", "127.0.0.1"), ("2130706433", "127.0.0.1"),
        ("017700000001", "127.0.0.1"), ("127.0.0.1.", "127.0.0.1"), ("[::1]", "::1"),
        ("::ffff:a9fe:a9fe", "::ffff:a9fe:a9fe"), ("fe80::1%eth0", "fe80::1"),
        ("fe80::1%25eth0", "fe80::1"),
        ("example.com", None), ("localhost", None), ("127.0.0.1.nip.io", None),
        ("%31%32%37.0.0.1", None), ("", None),
    ],
)  # fmt: skip
def test_an_address_is_read_in_every_form_the_resolver_reads(
    host: str, address: str | None
) -> None:
    found = ip_literal(host)
    assert (None if found is None else str(found)) == address


@pytest.mark.parametrize(
    "host",
    ["%31%32%37.0.0.1", "exa mple.test", "a..b", "-lead.test", "trail-.test", "x" * 64 + ".test",
     "", "a/b", "a@b", "a\x00b", "ex%00ample.test"],
)  # fmt: skip
def test_a_host_that_is_no_host_name_is_refused_before_any_lookup(host: str) -> None:
    assert host_refusal(host) == "it is neither an IP address nor a valid host name"


@pytest.mark.parametrize(
    "host", ["example.com", "example.com.", "localhost", "xn--bcher-kva.example", "my_svc.internal"]
)
def test_a_host_name_passes_on_to_the_resolver(host: str) -> None:
    assert host_refusal(host) is None


def test_a_bad_network_is_named() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33' is not an IP network like"):
        parse_networks(["10.1.0.0/16", "10.0.0.0/33"])


def test_the_environment_replaces_the_file() -> None:
    assert policy_from(True, ["10.1.0.0/16"], {}) == EgressPolicy(
        allow_private=True, networks=parse_networks(["10.1.0.0/16"])
    )
    off = policy_from(True, [], {ALLOW_PRIVATE_ENV: "0"})
    on = policy_from(False, [], {ALLOW_PRIVATE_ENV: "1"})
    assert (off.allow_private, on.allow_private) == (False, True)
    listed = policy_from(
        False, ["10.1.0.0/16"], {PRIVATE_NETWORKS_ENV: "192.168.5.0/24, fd12::/64"}
    )
    assert [str(n) for n in listed.networks] == ["192.168.5.0/24", "fd12::/64"]
    with pytest.raises(ConfigError, match="CRONLINK_ALLOW_PRIVATE_NETWORKS: 'maybe' is not 1 or 0"):
        policy_from(False, [], {ALLOW_PRIVATE_ENV: "maybe"})
    with pytest.raises(ConfigError, match="CRONLINK_PRIVATE_NETWORKS: 'ten' is not an IP network"):
        policy_from(False, [], {PRIVATE_NETWORKS_ENV: "ten"})


@pytest.fixture
def toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(PRIVATE_NETWORKS_ENV, raising=False)
    monkeypatch.delenv(ALLOW_PRIVATE_ENV, raising=False)
    return tmp_path / "cronlink.toml"


def test_the_default_is_public_addresses_only(toml: Path) -> None:
    toml.write_text("")
    assert load_settings(toml).egress == EgressPolicy()


def test_the_file_opens_private_networks(toml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml.write_text('allow_private_networks = true\nprivate_networks = ["10.1.0.0/16"]\n')
    assert load_settings(toml).egress == EgressPolicy(
        allow_private=True, networks=parse_networks(["10.1.0.0/16"])
    )
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "0")
    assert not load_settings(toml).egress.allow_private


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('private_networks = ["10.1.0.0/16", "intranet"]',
         "private_networks: 'intranet' is not an IP network like 10.1.0.0/16"),
        ('allow_private_networks = "yes"', "allow_private_networks: Input should be a valid bool"),
    ],
)  # fmt: skip
def test_a_bad_entry_names_the_file_key_and_value(toml: Path, text: str, message: str) -> None:
    toml.write_text(text + "\n")
    with pytest.raises(ConfigError, match=f"^{toml}: {message}"):
        load_settings(toml)
