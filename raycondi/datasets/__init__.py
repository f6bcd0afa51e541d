"""Datasets: the synthetic action benchmark, dataset layouts and clip shards."""
