"""The sandbox provider: a real OAuth2 server on 127.0.0.1 for tests, benchmarks and the demo."""

from cronlink.sandbox.app import Sandbox

__all__ = ["Sandbox"]
