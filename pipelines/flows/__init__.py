"""Prefect flows: each module holds one flow that only puts small tasks in order.

Import order: Prefect reads its settings when it is first imported, so an entry point calls
:func:`pipelines.settings.apply_prefect_env` before it imports anything from this package (the
rule is written out there; the CLI and :mod:`pipelines.deployments` import the flows inside
their functions for that reason).
"""
