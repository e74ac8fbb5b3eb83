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


def _sparse_masks() -> st.SearchStrategy[np.ndarray]:
    """Masks like SAM2's: mostly empty, one or two blobs, often touching an edge of the frame."""

    @st.composite
    def build(draw: st.DrawFn) -> np.ndarray:
        h, w = draw(st.integers(1, 60)), draw(st.integers(1, 60))
        mask = np.zeros((h, w), bool)
        for _ in range(draw(st.integers(1, 2))):
            y0, x0 = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
            y1, x1 = draw(st.integers(y0 + 1, h)), draw(st.integers(x0 + 1, w))
            mask[y0:y1, x0:x1] = True
        holes = draw(arrays(np.bool_, (h, w)))
        return mask & ~(holes & draw(st.booleans()))

    return build()


@settings(max_examples=300, deadline=None)
@given(st.one_of(_sparse_masks(), arrays(np.bool_, st.tuples(st.integers(1, 30), st.integers(1, 30)))))
def test_encode_is_exactly_pycocotools(mask: np.ndarray) -> None:
    """The encoder works inside the mask's box, and its counts string is byte for byte pycocotools' own; `describe`
    gives the same string, the tight box and the area."""
    theirs = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode("ascii")
    assert rle.encode(mask) == theirs
    if mask.any():
        counts, box, area = rle.describe(mask)
        assert (counts, box, area) == (theirs, rle.bbox(mask), int(mask.sum()))
