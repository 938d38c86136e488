"""Synthetic events for demos, staging and benchmarks, and bulk loading them."""
