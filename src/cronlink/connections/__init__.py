"""Connections to providers' APIs: encrypted credentials, refresh, health."""
