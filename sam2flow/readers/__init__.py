"""Finished runs read back: `run` (``read_run``, the Python reader), `evaluate` (scores against ground truth) and
`references` (reference libraries made from a run's tracks)."""
