"""sam2flow: YOLO-prompted SAM2 video segmentation and tracking for long videos, orchestrated by Prefect.

``import sam2flow`` needs neither Prefect nor a GPU.
"""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``from sam2flow import read_run`` without importing the reader (and pyarrow) on ``import sam2flow``."""
    if name == "read_run":
        from sam2flow.readers.run import read_run

        return read_run
    raise AttributeError(f"module 'sam2flow' has no attribute {name!r}")
