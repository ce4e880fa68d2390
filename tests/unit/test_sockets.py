"""Which sockets the service keeps: each address's share and the total, idle ones pushed
out for newcomers, trusted proxies bounded by the total only."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import ValidationError

from cronlink.config_models import ServeModel
from cronlink.web.sockets import SocketLimits, Sockets


class Fake:
    def __init__(self, *, idle: bool = True) -> None:
        self.idle = idle
        self.pushed_out = False

    def push_out(self) -> None:
        self.pushed_out = True


def sockets(total: int = 10, per_address: int = 2, trusted: str | None = None) -> Sockets:
    networks = (ipaddress.ip_network(trusted),) if trusted else ()
    return Sockets(
        SocketLimits(header_timeout=10, total=total, per_address=per_address, trusted=networks)
    )


def test_an_address_over_its_share_pushes_out_its_own_oldest_idle_socket() -> None:
    held = sockets(per_address=2)
    busy, idle, other = Fake(idle=False), Fake(), Fake()
    assert held.admit(busy, "10.0.0.1")
    assert held.admit(idle, "10.0.0.1")
    assert held.admit(other, "10.0.0.2")
    newcomer = Fake()
    assert held.admit(newcomer, "10.0.0.1")
    assert (busy.pushed_out, idle.pushed_out, other.pushed_out) == (False, True, False)
    assert len(held) == 3
    held.release(idle)  # its close comes later: a second release changes nothing
    assert len(held) == 3


def test_an_address_whose_sockets_are_all_busy_gets_no_more() -> None:
    held = sockets(per_address=2)
    for _ in range(2):
        assert held.admit(Fake(idle=False), "10.0.0.1")
    assert not held.admit(Fake(), "10.0.0.1")
    assert held.admit(Fake(), "10.0.0.2")
    assert len(held) == 3


def test_a_full_service_pushes_out_the_oldest_idle_socket_of_any_address() -> None:
    held = sockets(total=3, per_address=3)
    first, second, third = Fake(idle=False), Fake(), Fake()
    for socket, peer in ((first, "10.0.0.1"), (second, "10.0.0.2"), (third, "10.0.0.3")):
        assert held.admit(socket, peer)
    assert held.admit(Fake(), "10.0.0.4")
    assert [s.pushed_out for s in (first, second, third)] == [False, True, False]
    second.idle = third.idle = False
    held.release(second)
    assert held.admit(Fake(idle=False), "10.0.0.5")
    assert not held.admit(Fake(), "10.0.0.6")


def test_a_trusted_proxy_is_bounded_by_the_total_only() -> None:
    held = sockets(total=5, per_address=1, trusted="10.9.0.0/16")
    for _ in range(5):
        assert held.admit(Fake(idle=False), "10.9.0.7")
    assert not held.admit(Fake(idle=False), "10.9.0.7")


def test_an_ipv6_client_is_its_64_and_an_ipv4_mapped_one_its_ipv4_address() -> None:
    held = sockets(per_address=1)
    assert held.admit(Fake(idle=False), "2001:db8:1:2::1")
    assert not held.admit(Fake(), "2001:db8:1:2:ffff::9")
    assert held.admit(Fake(), "2001:db8:1:3::1")
    assert held.admit(Fake(idle=False), "::ffff:192.0.2.1")
    assert not held.admit(Fake(), "192.0.2.1")
    assert held.admit(Fake(idle=False), None)  # a Unix socket: one "unknown" address
    assert not held.admit(Fake(), "not an address")


@pytest.mark.parametrize("value", ["0s", 0, "later"])
def test_a_header_timeout_must_leave_some_time(value: str | int) -> None:
    with pytest.raises(ValidationError, match="header_timeout"):
        ServeModel.model_validate({"header_timeout": value})
