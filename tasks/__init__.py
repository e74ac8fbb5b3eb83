"""Thin Prefect task wrappers around the `sam2flow` stages, one module per stage."""
