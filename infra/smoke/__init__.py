"""infra/smoke.sh: the production topology on 127.0.0.1, run for real (see infra/README.md)."""
