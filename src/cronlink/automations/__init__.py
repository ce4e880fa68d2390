"""Automations: triggers polled on connections, and the steps run on each new event."""
