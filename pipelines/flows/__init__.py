"""Prefect flows: each module holds one flow that only puts small tasks in order.

Tasks take typed arguments and return small dataclasses (``TrainingData``, ``Registered``,
``ScoreModel``, ``BatchScores``...); a flow returns a plain dict built from them, with the keys
the CLI renders and prints as JSON (dicts also serialise as Prefect flow-run results).

Entry points import these modules only after :func:`pipelines.settings.apply_prefect_env`
(Prefect's import-order rule is written there).
"""
