"""The studio's web app: pages, and a JSON API over videos (frames, preview, config, runs) and finished runs
(frames with tracks, corrections, re-stitching).

Every request passes the guard first (Host, Origin, session token: `sam2flow.studio.guard`); every body is a typed
model (`sam2flow.studio.bodies`), so a bad one is a 422 naming the field; every path must lie under a root (403).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from importlib import resources
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse

from sam2flow.config import PipelineConfig
from sam2flow.core import rle
from sam2flow.errors import InputError, describe, is_permanent
from sam2flow.flows import remote
from sam2flow.io.lock import FolderBusyError
from sam2flow.stages.stitch import corrections
from sam2flow.studio import bodies, views
from sam2flow.studio.guard import Guard, install_guard
from sam2flow.studio.preview import PreviewObject
from sam2flow.studio.roots import PathRefused, Roots
from sam2flow.studio.state import RunConflict, Studio

PAGES = ("index", "prompt", "review")


ASSETS = {"studio.css": "text/css", "studio.js": "text/javascript", "player.js": "text/javascript"}
"""What the pages share, served at /<name>."""

STATUS = ((PathRefused, 403), (RunConflict, 409), (FolderBusyError, 409), (InputError, 400), (FileNotFoundError, 404))
"""What the API answers for the errors its code raises (the first that matches): never a 500 for a bad request."""


def _static(name: str) -> str:
    return resources.files("sam2flow.studio").joinpath("static", name).read_text()


def validation_detail(exc: RequestValidationError) -> str:
    """A body, query or path parameter that does not fit, as one line naming each field (``body.frame: …``)."""
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e.get("loc", ())) or "request"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "; ".join(parts)


def create_app(roots: list[str], base: PipelineConfig, guard: Guard, base_data: dict[str, Any] | None = None,
               device: str | list[str] = "cpu", deployment: str | None = remote.DEPLOYMENT) -> FastAPI:  # fmt: skip
    """The studio for these roots, answering only requests ``guard`` lets through; ``base`` (and its YAML data) is the
    config that Save starts from.

    Run goes through ``deployment`` when a Prefect server is configured and serves it (None: always local runs).
    The studio's scratch folder goes when the app shuts down.
    """
    data = base_data if base_data is not None else base.model_dump(mode="json")
    studio = Studio(Roots(roots), base, data, device, deployment)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            studio.close()

    app = FastAPI(title="sam2flow studio", docs_url="/api/docs", redoc_url=None, lifespan=lifespan)
    app.state.studio = studio
    install_guard(app, guard)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_detail(exc)}, status_code=422)

    @app.exception_handler(OSError)
    async def _os(request: Request, exc: OSError) -> JSONResponse:  # no room, no permission: the user's to fix
        return JSONResponse({"detail": describe(exc)}, status_code=400 if is_permanent(exc) else 500)

    for kind, code in STATUS:
        app.add_exception_handler(kind, _answer(code))
    for name in PAGES:
        app.add_api_route("/" if name == "index" else f"/{name}", _page_route(name), response_class=HTMLResponse)
    for name in ASSETS:
        app.add_api_route(f"/{name}", _asset_route(name), include_in_schema=False)
    _video_routes(app, studio)
    _run_routes(app, studio)
    return app


def _answer(code: int) -> Any:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=code)

    return handler


def _page_route(name: str) -> Any:
    def page() -> str:
        return _static(f"{name}.html")

    return page


def _asset_route(name: str) -> Any:
    def asset() -> Response:
        return Response(_static(name), media_type=ASSETS[name])

    return asset


def _preview_object(o: bodies.PreviewObject) -> PreviewObject:
    return PreviewObject(tuple(o.points), tuple(o.labels), o.box)


def _video_routes(app: FastAPI, studio: Studio) -> None:
    @app.get("/api/list")
    def listing() -> dict[str, Any]:
        return {"roots": studio.roots.names(), **studio.roots.listing()}

    @app.get("/api/video")
    def video(path: str = Query(...)) -> dict[str, Any]:
        v, info = studio.video(path)
        return {"path": v, **info.to_dict(), "fps_float": info.fps_float}

    @app.get("/api/frame")
    def frame(path: str = Query(...), frame: int = Query(0, ge=0)) -> Response:
        v, info = studio.video(path)
        return views.jpeg(views.frame_image(v, info, frame))

    @app.post("/api/preview")
    def preview(body: bodies.PreviewRequest) -> dict[str, Any]:
        v, info = studio.video(body.path)
        image = views.frame_image(v, info, body.frame)
        objects = [_preview_object(o) for o in body.objects]
        masks, seconds = studio.previewer.masks((v, body.frame), image, objects)
        ids = [o.obj_id if o.obj_id is not None else i + 1 for i, o in enumerate(body.objects) if o.points or o.box]
        return {"seconds": round(seconds, 3), "height": info.height, "width": info.width, "ids": ids,
                "masks": [rle.encode(m) for m in masks], "boxes": [views.box_of(m) for m in masks],
                "overlay": views.overlay(masks, ids)}  # fmt: skip

    @app.post("/api/find")
    def find(body: bodies.FindRequest) -> dict[str, Any]:
        v, info = studio.video(body.path)
        return studio.finder.find(views.frame_image(v, info, body.frame), list(body.text))

    @app.post("/api/track")
    def track(body: bodies.TrackRequest) -> StreamingResponse:
        from sam2flow.studio.track import TrackPrompt, track_lines

        v, info = studio.video(body.path)
        if body.stop > info.num_frames:
            raise InputError(f"stop {body.stop} is past the video's last frame ({info.num_frames - 1})")
        prompts = [TrackPrompt(p.obj_id if p.obj_id is not None else 1, p.frame, tuple(p.points), tuple(p.labels),
                               p.box) for p in body.prompts]  # fmt: skip
        lines = track_lines(studio.previewer, studio.scratch / "track", v, info, range(body.start, body.stop), prompts)
        return StreamingResponse(lines, media_type="application/x-ndjson", headers={"Cache-Control": "no-store"})

    @app.get("/api/config")
    def saved_config(path: str = Query(...)) -> dict[str, Any]:
        return studio.read_config(path)

    @app.get("/api/media")
    def media(path: str = Query(...)) -> Response:
        return FileResponse(studio.media(path), headers={"Cache-Control": "no-store"})

    @app.post("/api/save")
    def save(body: bodies.SaveRequest) -> dict[str, Any]:
        return studio.save_config(studio.roots.check(body.video), body.dest, body.prompts, body.zones, body.text)

    @app.post("/api/run")
    def run(body: bodies.RunRequest) -> dict[str, Any]:
        return studio.start_run(body.video, body.config, body.out)

    @app.post("/api/rerun")
    def rerun(body: bodies.RunPath) -> dict[str, Any]:
        return studio.rerun(body.path)

    @app.get("/api/run/{run_id}")
    def run_status(run_id: str) -> dict[str, Any]:
        return studio.run_status(run_id)


def _run_routes(app: FastAPI, studio: Studio) -> None:
    @app.get("/api/runinfo")
    def run_info(path: str = Query(...)) -> dict[str, Any]:
        return views.run_info(studio.run(path))

    @app.get("/api/runframe")
    def run_frame(path: str = Query(...), frame: int = Query(0, ge=0)) -> Response:
        return views.jpeg(views.run_frame(studio.run(path), frame))

    @app.get("/api/runmasks")
    def run_masks(path: str = Query(...), start: int = Query(0, ge=0), stop: int = Query(..., ge=1)) -> dict[str, Any]:
        return views.run_masks(studio.run(path), start, stop)

    @app.get("/api/hit")
    def hit(
        path: str = Query(...), frame: int = Query(0, ge=0), x: float = Query(...), y: float = Query(...)
    ) -> dict[str, Any]:
        return {"track_id": views.hit(studio.run(path), frame, x, y)}

    @app.post("/api/corrections")
    def save_corrections(body: bodies.CorrectionsRequest) -> dict[str, Any]:
        return studio.save_corrections(body.path, body.corrections)

    @app.get("/api/review")
    def review_list(path: str = Query(...)) -> dict[str, Any]:
        from sam2flow.readers.review import read_review

        rows = read_review(studio.run(path).path)
        return {"items": [asdict(r) for r in rows], "reviewed": sum(r.reviewed for r in rows)}

    @app.post("/api/review/mark")
    def review_mark(body: bodies.ReviewMarkRequest) -> dict[str, Any]:
        from sam2flow.stages.stitch.review import set_reviewed

        run = studio.run(body.path)
        marked = set_reviewed(run.path, list(body.keys), body.reviewed)
        fixes = corrections.load(run.path) or corrections.Corrections()
        return {"marked": marked, "reviewed": list(fixes.reviewed)}

    @app.post("/api/references")
    def references(body: bodies.ReferencesRequest) -> dict[str, Any]:
        return studio.make_references(body.path, body.frames, body.tracks, body.dest)

    @app.post("/api/apply")
    def apply(body: bodies.ApplyRequest) -> dict[str, Any]:
        from sam2flow.stages.stitch.restitch import restitch

        run = studio.run(body.path)
        return {**asdict(restitch(run.path, rerender=body.rerender)), "rerendered": body.rerender}
