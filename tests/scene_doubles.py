"""A two-square scene and test doubles built in place of SAM2 and YOLO through the real worker model cache: they
replay the scene's masks and boxes, finding each frame's index from the number drawn in it (sweep and watch tests)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from tests.replay import NoisyReplaySession, Scene
from tests.synth import Square, read_index

FRAMES, WIDTH, HEIGHT = 40, 320, 240
SCENE = Scene(
    (
        Square((230, 40, 40), y=40, x0=20, speed=2.0, size=44),
        Square((40, 200, 60), y=150, x0=240, speed=-2.0, size=44),
    ),
    height=HEIGHT,
    width=WIDTH,
)


class SceneSegmenter:
    """Test double built in place of SAM2 (through the real worker model cache): it replays the scene's masks with
    2 px of jitter, finding each subsequence's first frame from the index drawn in the frame."""

    built: ClassVar[int] = 0

    def __init__(self, checkpoint: Any, device: str, *args: Any, **kwargs: Any) -> None:
        SceneSegmenter.built += 1

    @contextmanager
    def session(self, frames_dir: Path) -> Iterator[NoisyReplaySession]:
        import cv2

        from sam2flow.core.types import Subsequence
        from sam2flow.io.frames import FrameReader

        reader = FrameReader(frames_dir)
        start = read_index(cv2.resize(reader.rgb(0), (WIDTH, HEIGHT)))
        yield NoisyReplaySession(SCENE, Subsequence(start, start, start + reader.count), 2, 0, 0.0, seed=0)


class SceneDetector:
    """Test double built in place of YOLO (through the real worker model cache): the scene's boxes on the frame
    whose index is drawn in the image, in that image's pixels."""

    names: ClassVar[dict[int, str]] = {0: "square"}

    def __init__(self, checkpoint: Any, device: str, confidence: float, nms_iou: float, image_size: int, *_: Any):
        self.image_size = image_size

    def __call__(self, image: Any) -> Any:
        import cv2
        import numpy as np

        from sam2flow.core.types import Detections

        frame = read_index(cv2.resize(image, (WIDTH, HEIGHT)))
        sx, sy = image.shape[1] / WIDTH, image.shape[0] / HEIGHT
        present = SCENE.present(frame)
        boxes = [[b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy] for b in (SCENE.box(i, frame) for i in present)]
        n = len(present)
        return Detections(np.array(boxes, np.float32).reshape(n, 4), np.full(n, 0.9, np.float32),
                          np.zeros(n, np.int64), ("square",) * n)  # fmt: skip
