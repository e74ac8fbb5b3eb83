"""The checkpoint table, ``checkpoints/manifest.yaml``: installed as package data of ``sam2flow.checkpoints``."""
