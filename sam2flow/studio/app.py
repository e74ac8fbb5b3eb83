"""The studio's web app: pages, and a JSON API over videos (frames, preview, config, runs) and finished runs
(frames with tracks, corrections, re-stitching). Every path it is given must lie under one of its roots."""

from __future__ import annotations

import base64
import json
import tempfile
import uuid
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from fastapi import Body, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ValidationError

from sam2flow import corrections
from sam2flow.config import ConfigError, PipelineConfig, format_validation_error, load_config
from sam2flow.core import rle
from sam2flow.errors import InputError
from sam2flow.io import storage
from sam2flow.io.render import draw, masks_rows, track_colour
from sam2flow.io.video import VideoProbe, iter_frames, probe
from sam2flow.reader import Run
from sam2flow.report.stats import spans
from sam2flow.studio import runs
from sam2flow.studio.preview import Previewer, PreviewObject
from sam2flow.studio.roots import PathRefused, Roots

PAGES = ("index", "prompt", "review")


ASSETS = {"studio.css": "text/css", "studio.js": "text/javascript"}
"""What the pages share, served at /<name>."""


def _static(name: str) -> str:
    return resources.files("sam2flow.studio").joinpath("static", name).read_text()


def _jpeg(image: np.ndarray) -> Response:
    ok, data = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise InputError("the frame could not be encoded")
    return Response(data.tobytes(), media_type="image/jpeg", headers={"Cache-Control": "no-store"})


def _frame(video: str, info: VideoProbe, frame: int) -> np.ndarray:
    if not 0 <= frame < info.num_frames:
        raise InputError(f"frame {frame} is outside the video (0 to {info.num_frames - 1})")
    for image in iter_frames(video, info, max_frames=1, start=frame):
        return image
    raise InputError(f"frame {frame} of {video} could not be decoded")


def _overlay(masks: np.ndarray) -> str:
    """The masks as one RGBA PNG (data URL), each in its track colour at half opacity."""
    h, w = masks.shape[1:] if masks.ndim == 3 else (1, 1)
    out = np.zeros((h, w, 4), np.uint8)
    for i, m in enumerate(masks):
        out[m] = (*track_colour(i + 1), 140)
    ok, data = cv2.imencode(".png", out[:, :, [2, 1, 0, 3]])
    return "data:image/png;base64," + base64.b64encode(data.tobytes()).decode("ascii") if ok else ""


class Studio:
    """What the routes share: the roots, the base config, the previewer and the runs started here."""

    def __init__(self, roots: Roots, base: PipelineConfig, base_data: dict[str, Any], device: str | list[str],
                 deployment: str | None) -> None:  # fmt: skip
        self.roots, self.base, self.base_data, self.deployment = roots, base, base_data, deployment
        self.previewer = Previewer(base, device)
        self.runs: dict[str, runs.StartedRun] = {}
        self.logs = Path(tempfile.mkdtemp(prefix="sam2flow-studio-"))

    def video(self, path: str) -> tuple[str, VideoProbe]:
        video = self.roots.check(path)
        return video, probe(video)

    def run(self, path: str) -> Run:
        return Run(self.roots.check(path))

    def save_config(
        self, video: str, dest: str, prompts: list[dict[str, Any]], zones: list[dict[str, Any]]
    ) -> dict[str, Any]:
        target = self.roots.check(dest)
        if not target.endswith((".yaml", ".yml")):
            raise InputError(f"{dest}: a config file name ends in .yaml")
        data = {**self.base_data, "prompts": prompts, "zones": {**self.base_data.get("zones", {}), "regions": zones}}
        try:
            PipelineConfig.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, dest)) from exc
        text = f"# sam2flow config for {video}, made with `sam2flow studio`\n" + yaml.safe_dump(data, sort_keys=False)
        storage.write_bytes(target, text.encode())
        return {"path": target, "yaml": text}

    def start_run(self, video: str, config: str, out: str) -> dict[str, Any]:
        video, config, out = self.roots.check(video), self.roots.check(config), self.roots.check(out)
        cfg = load_config(config)
        run_id = uuid.uuid4().hex[:12]
        self.runs[run_id] = runs.start(video, config, out, cfg, self.logs / f"{run_id}.log", self.deployment)
        return {"id": run_id, "via": self.runs[run_id].via}

    def make_references(self, path: str, frames: list[Any], tracks: list[Any], dest: str) -> dict[str, Any]:
        """A reference library from a finished run under the roots, written under the roots; ``tracks`` is a list of
        [track id, name] pairs, in the order that gives the identities their ids."""
        from sam2flow.references import load_references, make_references, parse_tracks

        run, target = self.run(path), self.roots.check(dest)
        named = parse_tracks(",".join(f"{track}:{name}" for track, name in tracks))
        made = load_references(make_references(run.path, [int(f) for f in frames], named, target))
        identities = [{"name": i.name, "track_id": i.track_id} for i in made.identities]
        return {"path": target, "identities": identities, "frames": [f.source_frame for f in made.frames]}

    def run_status(self, run_id: str) -> dict[str, Any]:
        started = self.runs.get(run_id)
        if started is None:
            raise InputError(f"no run {run_id} was started by this studio")
        return started.status()


def _run_info(run: Run) -> dict[str, Any]:
    m = run.masks(columns=["frame", "track_id"])
    tracks = run.tracks().to_pylist()
    class_of = {t["track_id"]: t["class_name"] for t in tracks}
    by_track = (
        {s.track_id: s for s in spans(m["frame"].to_numpy(), m["track_id"].to_numpy(), class_of)} if m.num_rows else {}
    )
    return {
        "path": run.path,
        "video_id": run.video_id,
        "frames": run.num_frames,
        "width": run.width,
        "height": run.height,
        "fps": run.fps,
        "tracks": [
            {
                **t,
                "colour": "rgb{}".format(track_colour(t["track_id"])),
                "spans": by_track[t["track_id"]].spans if t["track_id"] in by_track else [],
            }
            for t in tracks
        ],
        "corrections": (corrections.load(run.path) or corrections.Corrections()).model_dump(mode="json"),
    }


def _run_frame(run: Run, frame: int) -> np.ndarray:
    video = run.local_video()
    if video is None:
        raise InputError(f"the source video of {run.path} ({run.manifest.get('input')}) cannot be read here")
    rows = masks_rows(run.file("masks.parquet"), range(frame, frame + 1))
    image = _frame(video, run.info, frame)
    cfg = PipelineConfig.model_validate(run.manifest["config"]).render
    return draw(image, rows, cfg) if rows else image


def _hit(run: Run, frame: int, x: float, y: float) -> int | None:
    """The track whose mask holds pixel (x, y) on the frame (the highest id where masks overlap)."""
    hit = None
    for r in masks_rows(run.file("masks.parquet"), range(frame, frame + 1)):
        x0, y0, x1, y1 = r.bbox
        if x0 <= x < x1 and y0 <= y < y1 and rle.decode(r.rle, r.height, r.width)[int(y), int(x)]:
            hit = int(r.track_id)
    return hit


def create_app(roots: list[str], base: PipelineConfig, base_data: dict[str, Any] | None = None,
               device: str | list[str] = "cpu", deployment: str | None = runs.DEPLOYMENT) -> FastAPI:  # fmt: skip
    """The studio for these roots; ``base`` (and its YAML data) is the config that Save starts from.

    Run goes through ``deployment`` when a Prefect server is configured and serves it (None: always local runs).
    """
    data = base_data if base_data is not None else base.model_dump(mode="json")
    studio = Studio(Roots(roots), base, data, device, deployment)
    app = FastAPI(title="sam2flow studio", docs_url="/api/docs", redoc_url=None)
    app.state.studio = studio

    @app.exception_handler(PathRefused)
    async def _refused(request: Request, exc: PathRefused) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=403)

    @app.exception_handler(InputError)
    async def _bad(request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(FileNotFoundError)
    async def _missing(request: Request, exc: FileNotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    for name in PAGES:
        app.add_api_route("/" if name == "index" else f"/{name}", _page_route(name), response_class=HTMLResponse)
    for name in ASSETS:
        app.add_api_route(f"/{name}", _asset_route(name), include_in_schema=False)
    _video_routes(app, studio)
    _run_routes(app, studio)
    return app


def _page_route(name: str) -> Any:
    def page() -> str:
        return _static(f"{name}.html")

    return page


def _asset_route(name: str) -> Any:
    def asset() -> Response:
        return Response(_static(name), media_type=ASSETS[name])

    return asset


def _preview_object(o: dict[str, Any]) -> PreviewObject:
    points = tuple((float(x), float(y)) for x, y in o.get("points") or [])
    box = o.get("box")
    corners = (float(box[0]), float(box[1]), float(box[2]), float(box[3])) if box else None
    return PreviewObject(points, tuple(int(v) for v in o.get("labels") or []), corners)


def _video_routes(app: FastAPI, studio: Studio) -> None:
    @app.get("/api/list")
    def listing() -> dict[str, Any]:
        return {"roots": studio.roots.names(), **studio.roots.listing()}

    @app.get("/api/video")
    def video(path: str = Query(...)) -> dict[str, Any]:
        v, info = studio.video(path)
        return {"path": v, **info.to_dict()}

    @app.get("/api/frame")
    def frame(path: str = Query(...), frame: int = Query(0)) -> Response:
        v, info = studio.video(path)
        return _jpeg(_frame(v, info, frame))

    @app.post("/api/preview")
    def preview(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        v, info = studio.video(str(body.get("path", "")))
        image = _frame(v, info, int(body.get("frame", 0)))
        objects = [_preview_object(o) for o in body.get("objects", [])]
        masks, seconds = studio.previewer.masks((v, int(body.get("frame", 0))), image, objects)
        return {"seconds": round(seconds, 3), "height": info.height, "width": info.width,
                "masks": [rle.encode(m) for m in masks], "overlay": _overlay(masks)}  # fmt: skip

    @app.post("/api/save")
    def save(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        video = studio.roots.check(str(body.get("video", "")))
        return studio.save_config(video, str(body.get("dest", "")), body.get("prompts", []), body.get("zones", []))

    @app.post("/api/run")
    def run(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return studio.start_run(str(body.get("video", "")), str(body.get("config", "")), str(body.get("out", "")))

    @app.get("/api/run/{run_id}")
    def run_status(run_id: str) -> dict[str, Any]:
        return studio.run_status(run_id)


def _run_routes(app: FastAPI, studio: Studio) -> None:
    @app.get("/api/runinfo")
    def run_info(path: str = Query(...)) -> dict[str, Any]:
        return _run_info(studio.run(path))

    @app.get("/api/runframe")
    def run_frame(path: str = Query(...), frame: int = Query(0)) -> Response:
        return _jpeg(_run_frame(studio.run(path), frame))

    @app.get("/api/hit")
    def hit(
        path: str = Query(...), frame: int = Query(0), x: float = Query(...), y: float = Query(...)
    ) -> dict[str, Any]:
        return {"track_id": _hit(studio.run(path), frame, x, y)}

    @app.post("/api/corrections")
    def save_corrections(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        run = studio.run(str(body.get("path", "")))
        fixes = corrections.parse(json.dumps(body.get("corrections", {})), corrections.FILE)
        return {"path": corrections.save(run.path, fixes), "corrections": fixes.model_dump(mode="json")}

    @app.post("/api/references")
    def references(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        frames, tracks = body.get("frames") or [], body.get("tracks") or []
        pairs = isinstance(tracks, list) and all(isinstance(t, list) and len(t) == 2 for t in tracks)
        if not isinstance(frames, list) or not all(isinstance(f, int) for f in frames) or not pairs:
            raise InputError("references: frames is a list of frame numbers, tracks a list of [track id, name]")
        return studio.make_references(str(body.get("path", "")), frames, tracks, str(body.get("dest", "")))

    @app.post("/api/apply")
    def apply(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        from sam2flow.restitch import restitch

        run = studio.run(str(body.get("path", "")))
        return asdict(restitch(run.path))
