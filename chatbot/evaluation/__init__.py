"""Scoring a skill on held-out data with the metric that fits its kind."""
