"""Prefect flows: each module holds one flow that only puts small tasks in order."""
