"""Benchmark suite."""
