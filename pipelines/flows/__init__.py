"""Prefect flows: each module holds one flow that only puts small tasks in order.

Entry points import these modules only after :func:`pipelines.settings.apply_prefect_env`
(Prefect's import-order rule is written there).
"""
