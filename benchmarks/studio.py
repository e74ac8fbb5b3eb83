"""The studio's speed as a user meets it: `sam2flow studio` started as a user starts it, driven over its HTTP API
and, for playback, in Chromium.

- Track in the page: SAM2 frames per second over ``--frames`` frames for 1 and 2 prompted objects (the ``done``
  line of /api/track: SAM2's time, frame reading excluded), and the wall time of the whole request.
- Playback on the review page of a finished run: frames drawn per second while the video plays in the browser with
  the masks drawn from their RLE, against the video's own rate; and, side by side, the rate of the earlier way (one
  server-rendered JPEG per frame from /api/runframe, fetched one after another).

    .venv/bin/python -m benchmarks.studio [--config configs/smoke.yaml] [--frames 48] [--json out/studio.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def track_rate(client: Any, video: str, frames: int, boxes: list[list[int]]) -> dict[str, float]:
    """One /api/track request over ``frames`` frames with one box per object on frame 0."""
    prompts = [{"frame": 0, "obj_id": i + 1, "box": b} for i, b in enumerate(boxes)]
    t0 = time.perf_counter()
    done: dict[str, Any] = {}
    with client.stream("POST", "/api/track", json={"path": video, "start": 0, "stop": frames, "prompts": prompts},
                       timeout=3600) as r:  # fmt: skip
        r.raise_for_status()
        for line in r.iter_lines():
            d = json.loads(line)
            if "error" in d:
                raise RuntimeError(d["error"])
            done = d if d.get("done") else done
    wall = time.perf_counter() - t0
    return {"objects": len(boxes), "frames": done["frames"], "sam2_seconds": done["seconds"], "sam2_fps": done["fps"],
            "wall_seconds": round(wall, 2), "wall_fps": round(done["frames"] / wall, 2)}  # fmt: skip


def server_frames_rate(client: Any, run: str, frames: int) -> float:
    """Frames per second of /api/runframe fetched one after another (the review page's earlier playback)."""
    t0 = time.perf_counter()
    for f in range(frames):
        client.get("/api/runframe", params={"path": run, "frame": f}).raise_for_status()
    return round(frames / (time.perf_counter() - t0), 2)


def browser_rate(url: str, token: str | None, run: str, seconds: float) -> dict[str, float]:
    """Play the review page for ``seconds`` in Chromium; frames drawn per second and the video's rate."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{url}/?token={token}" if token else url)
        page.goto(f"{url}/review?run={run}")
        page.wait_for_selector("canvas[data-ready='1']", timeout=60_000)
        page.keyboard.press(" ")
        page.wait_for_timeout(int(seconds * 1000))
        page.keyboard.press(" ")
        played = float(page.get_attribute("canvas", "data-played-fps") or 0)
        fps = float(page.evaluate("info.fps"))
        mode = page.get_attribute("canvas", "data-mode")
        browser.close()
    return {"drawn_fps": played, "video_fps": round(fps, 3), "mode": mode}


def replayed_run(folder: Path) -> Path:
    """A finished 1280x720 run of four squares whose masks are exactly the squares (written without a model by the
    replay test double through the real driver and stitcher): masks shaped like objects, a few runs per column,
    unlike a random model's speckled ones."""
    from tests.replay import Scene, finished_run
    from tests.synth import Square

    squares = tuple(Square((60 * i, 200, 255 - 60 * i), y=100 + 140 * i, x0=50 + 100 * i, speed=3.0, size=160)
                    for i in range(4))  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    return finished_run(Scene(squares, height=720, width=1280), folder, 96)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "smoke.yaml"))
    ap.add_argument("--frames", type=int, default=48, help="frames to track and to fetch one by one")
    ap.add_argument("--play", type=float, default=4.0, help="seconds of playback in the browser")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from tests.studio_server import StudioProcess
    from tests.synth import Square, write_clip

    squares = (Square((230, 40, 40), y=120, x0=40, speed=2.0, size=90),
               Square((40, 200, 60), y=300, x0=900, speed=-2.0, size=80))  # fmt: skip
    boxes = [[40, 120, 130, 210], [900, 300, 980, 380]]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        video = write_clip(root / "clip.mp4", frames=max(args.frames, 96), width=1280, height=720, squares=squares)
        args_ = ["--root", str(root), "--config", args.config, "--set", "detector.enabled=false", "--local"]
        server = StudioProcess(args_, Path(tmp) / "t")
        try:
            client = server.client
            track_rate(client, str(video), 2, boxes[:1])  # loads the model
            tracks = [track_rate(client, str(video), args.frames, boxes[:k]) for k in (1, 2)]
            for t in tracks:
                print(f"track {t['objects']} object(s): {t['frames']} frames, SAM2 {t['sam2_fps']} frames/s, "
                      f"{t['wall_fps']} frames/s with frame reading ({t['wall_seconds']} s)")  # fmt: skip
            out = root / "out"
            prompts = f"prompts=[{{frame: 0, obj_id: 1, box: {boxes[0]}}}, {{frame: 0, obj_id: 2, box: {boxes[1]}}}]"
            subprocess.run([sys.executable, "-m", "sam2flow.cli", "run", str(video), "--config", args.config,
                            "--out", str(out), "--set", "detector.enabled=false", "--set", prompts],
                           check=True, capture_output=True)  # fmt: skip
            runs = {
                "object-shaped masks": str(replayed_run(root / "replayed")),
                "this model's masks": str(next(out.iterdir())),
            }
            play = {}
            for name, run in runs.items():
                play[name] = {**browser_rate(server.url, server.token, run, args.play),
                              "server_jpeg_fps": server_frames_rate(client, run, args.frames)}  # fmt: skip
                p = play[name]
                print(
                    f"review playback, {name} ({p['mode']}): {p['drawn_fps']} frames/s drawn, video "
                    f"{p['video_fps']} fps; server-rendered JPEGs one by one: {p['server_jpeg_fps']} frames/s"
                )
        finally:
            server.stop()
    result = {"config": args.config, "track": tracks, "playback": play}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
