"""Benchmarks of fer_engine: classifier and pipeline speed against baselines measured in the same run."""
