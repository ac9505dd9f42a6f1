"""Prefect flows and their deployment."""
