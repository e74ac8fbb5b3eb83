"""COCO RLE encoding, boxes and IoU."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as mask_utils

from sam2flow.core import rle


@settings(max_examples=60, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 40), st.integers(1, 40))))
def test_rle_round_trip(mask: np.ndarray) -> None:
    """encode → pycocotools decode gives back exactly the same pixels, and our decode agrees."""
    counts = rle.encode(mask)
    h, w = mask.shape
    theirs = mask_utils.decode({"size": [h, w], "counts": counts.encode()}).astype(bool)
    assert np.array_equal(theirs, mask)
    assert np.array_equal(rle.decode(counts, h, w), mask)


def test_bbox_and_iou() -> None:
    """Boxes are tight (x1/y1 exclusive) and IoU matches hand-computed values."""
    a = np.zeros((20, 30), bool)
    a[2:6, 3:9] = True
    b = np.zeros((20, 30), bool)
    b[4:8, 3:9] = True
    assert rle.bbox(a) == (3.0, 2.0, 9.0, 6.0)
    iou = rle.iou_rle([rle.encode(a)], [rle.encode(a), rle.encode(b)], 20, 30)
    assert iou.shape == (1, 2)
    assert iou[0, 0] == 1.0
    assert abs(iou[0, 1] - 12 / 36) < 1e-9
