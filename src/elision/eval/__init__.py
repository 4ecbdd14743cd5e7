"""Evaluation: datasets (built from files fetched by `elision data fetch`/`make data`) and metrics."""
