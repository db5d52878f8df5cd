"""Prometheus metrics and the health pages, served on a listener of their own."""
