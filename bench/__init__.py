"""Benchmarks of the Omniloyal HTTP API on PostgreSQL, beside raw pgbench baselines.

Not a test: `python -m bench` (or `make bench`) creates a throw-away PostgreSQL database,
seeds it through the product's own operations, serves the app with gunicorn, drives it
with wrk, measures the same work with pgbench in the same run, and prints a table
(also written to bench/results/latest.md). See bench/README.md.
"""
