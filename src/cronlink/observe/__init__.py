"""Seeing what cronlink does: metrics, alerts, usage and cost advice."""
