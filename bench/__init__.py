"""Benchmarks: the proxy side by side with the LiteLLM proxy, and the ledger at scale (see README.md)."""
