"""Prefect flows: compositions of `tasks/` only."""
