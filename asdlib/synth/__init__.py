"""Synthetic data for tests and demos: DCASE-format corpora (every year's layout) and random-init
upstream checkpoints in the official formats. Nothing here is used to prepare real data."""
