"""Serving a registered model: pure manifest builders, the Kubernetes and local targets, and the DAGs' deploy steps.

Modules, one job each: names, storage, manifests (pure builders), versions (deploy/versions.env),
deployment (the result type), smoke (the smoke test), kubernetes and local (the two targets),
processes (detached local processes), supervise (restarts a crashed local service), steps (what
the DAG tasks call) and render (the CLI the deploy-*.sh scripts use).
"""
