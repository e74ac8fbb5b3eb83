"""sam2flow: YOLO-prompted SAM2 video segmentation and tracking for long videos, orchestrated by Prefect.

``import sam2flow`` needs neither Prefect nor a GPU.
"""

__version__ = "0.1.0"
