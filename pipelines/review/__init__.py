"""Reviewing anomaly reports: the feedback table (verdicts) and the review web app."""
