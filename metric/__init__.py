"""LPIPS and baselines."""
