"""Benchmarks behind ``semiseg bench`` (scripts in ``benchmarks/`` call these)."""
