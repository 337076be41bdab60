"""Aggregated tables and figures over every (dataset, backbone, seed) run."""
