"""Connections to providers' APIs: encrypted credentials, refresh, health."""

SECRET_KEY_ENV = "CRONLINK_SECRET_KEY"
"""The variable holding the keys that seal credentials (see `crypto`)."""
