"""`sam2flow studio`: every API endpoint (with refusals outside the roots), and both pages in a real headless
browser, all over real HTTP against the command a user types. Models are the smoke config's random SAM2 at 256 px;
the reviewed run is a real process_video run started from the studio."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from sam2flow.config import load_config
from sam2flow.core import rle
from tests.studio_server import STUDIO_BASE, STUDIO_SQUARES, StudioProcess, local_studio, not_blank, studio_clip
from tests.synth import read_index

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"
SQUARES, BASE = STUDIO_SQUARES, STUDIO_BASE
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return studio_clip(tmp_path_factory.mktemp("studio"))


@pytest.fixture(scope="module")
def finished(client, root: Path) -> Path:  # type: ignore[no-untyped-def]
    """A run started from the studio: Save a config with two boxed objects, then Run it (`sam2flow run`)."""
    boxes = [[20, 60, 70, 110], [250, 150, 290, 190]]
    prompts = [
        {"frame": 0, "obj_id": i + 1, "box": b, "class_name": c}
        for i, (b, c) in enumerate(zip(boxes, ["red", "green"]))
    ]
    saved = client.post(
        "/api/save",
        json={"video": str(root / "clip.mp4"), "dest": str(root / "run.yaml"), "prompts": prompts, "zones": []},
    )
    assert saved.status_code == 200, saved.text
    body = {"video": str(root / "clip.mp4"), "config": str(root / "run.yaml"), "out": str(root / "out")}
    started = client.post("/api/run", json=body)
    run_id = started.json()["id"]
    again = client.post("/api/run", json=body)  # a double click: the first run is still going
    assert again.status_code == 409 and run_id in again.json()["detail"], again.text
    deadline = time.time() + 600
    while (status := client.get(f"/api/run/{run_id}").json())["status"] == "running" and time.time() < deadline:
        time.sleep(1)
    assert status["status"] == "done" and status["via"] == "local", status["log_tail"]
    (run,) = (root / "out").iterdir()
    return run


@pytest.fixture(scope="module")
def studio(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudioProcess]:
    """`sam2flow studio` on the clip's folder with the smoke config; Run starts local runs."""
    server = local_studio(root, tmp_path_factory.mktemp("t"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(studio: StudioProcess) -> httpx.Client:
    return studio.client


def test_pages_and_listing(client, root: Path) -> None:  # type: ignore[no-untyped-def]
    """The pages and assets are served and the listing shows the root's videos."""
    for page in ("/", "/prompt", "/review"):
        r = client.get(page)
        assert r.status_code == 200 and "sam2flow studio" in r.text
    for asset, kind in (("/studio.css", "text/css"), ("/studio.js", "text/javascript")):
        r = client.get(asset)
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind) and "Shared by" in r.text
    listing = client.get("/api/list").json()
    assert str(root / "clip.mp4") in listing["videos"] and listing["roots"] == [str(root.resolve())]


def test_frames_are_the_frames_the_pipeline_reads(client, root: Path) -> None:  # type: ignore[no-untyped-def]
    """The studio's frames are the video's frames (each draws its own index); a frame past the end is a 400."""
    info = client.get("/api/video", params={"path": str(root / "clip.mp4")}).json()
    assert (info["width"], info["height"], info["num_frames"]) == (320, 240, 48)
    for f in (0, 17, 47):
        r = client.get("/api/frame", params={"path": str(root / "clip.mp4"), "frame": f})
        image = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
        assert r.headers["content-type"] == "image/jpeg" and read_index(image) == f
    r = client.get("/api/frame", params={"path": str(root / "clip.mp4"), "frame": 48})
    assert r.status_code == 400 and "outside the video" in r.json()["detail"]


@pytest.mark.parametrize(
    ("method", "url", "payload"),
    [
        ("get", "/api/video", {"path": "/etc/passwd"}),
        ("get", "/api/frame", {"path": "/etc/hostname", "frame": 0}),
        ("get", "/api/video", {"path": "ROOT/../outside.mp4"}),
        ("post", "/api/save", {"video": "ROOT/clip.mp4", "dest": "/tmp/elsewhere.yaml"}),
        ("post", "/api/preview", {"path": "/etc/passwd", "frame": 0}),
        ("post", "/api/run", {"video": "ROOT/clip.mp4", "config": "ROOT/c.yaml", "out": "/tmp/out-elsewhere"}),
        ("get", "/api/runinfo", {"path": "/tmp"}),
        ("get", "/api/runframe", {"path": "/", "frame": 0}),
        ("get", "/api/hit", {"path": "/", "frame": 0, "x": 1, "y": 1}),
        ("post", "/api/corrections", {"path": "/tmp", "corrections": {}}),
        ("post", "/api/apply", {"path": "/tmp"}),
        ("post", "/api/rerun", {"path": "/tmp"}),
        ("get", "/api/runmasks", {"path": "/tmp", "start": 0, "stop": 9}),
        ("get", "/api/media", {"path": "/etc/hostname"}),
        ("get", "/api/config", {"path": "/etc/elsewhere.yaml"}),
        ("post", "/api/track", {"path": "/etc/passwd", "stop": 2, "prompts": [{"frame": 0, "box": [1, 1, 9, 9]}]}),
        ("post", "/api/references", {"path": "/tmp", "frames": [0], "tracks": [[1, "a"]], "dest": "ROOT/lib"}),
    ],
)
def test_paths_outside_the_roots_are_refused(client, root: Path, method: str, url: str, payload: dict) -> None:  # type: ignore[no-untyped-def, type-arg]
    """Every endpoint refuses a path outside the studio's roots with a 403 naming it."""
    data = {k: v.replace("ROOT", str(root)) if isinstance(v, str) else v for k, v in payload.items()}
    r = client.get(url, params=data) if method == "get" else client.post(url, json=data)
    assert r.status_code == 403 and "outside the studio's roots" in r.json()["detail"]


def test_media_serves_videos_under_the_roots_only(client, root: Path, finished: Path) -> None:  # type: ignore[no-untyped-def]
    """The page's video: a video under the roots (with ranges, as a browser asks), a run's source video; not a file
    that is no video, nor a file a run's manifest names outside the roots."""
    whole = client.get("/api/media", params={"path": str(root / "clip.mp4")})
    assert whole.status_code == 200 and whole.content == (root / "clip.mp4").read_bytes()
    part = client.get("/api/media", params={"path": str(finished)}, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == (root / "clip.mp4").read_bytes()[:100]
    (root / "notes.txt").write_text("not a video")
    assert client.get("/api/media", params={"path": str(root / "notes.txt")}).status_code == 400
    crafted = root / "crafted"
    shutil.copytree(finished, crafted)
    manifest = json.loads((crafted / "manifest.json").read_text())
    manifest["input"] = manifest["local_input"] = "/etc/hostname"
    (crafted / "manifest.json").write_text(json.dumps(manifest))
    r = client.get("/api/media", params={"path": str(crafted)})
    assert r.status_code == 403 and "outside the studio's roots" in r.json()["detail"]
    shutil.rmtree(crafted)


def test_run_progress_and_failure_reason_from_the_log() -> None:
    """A local run's status reads its progress frame by frame, and why it failed, from the log `sam2flow run`
    writes."""
    from sam2flow.studio.runs import progress_of, reason_of

    log = ["12:00:01 INFO subsequence 1/2: reusing /out/parts/a.parquet",
           "12:00:02 INFO subsequence 2/2: frame 8/32", "12:00:03 INFO subsequence 2/2: frame 16/32"]  # fmt: skip
    assert progress_of(log) == ["segmented 75% (subsequence 2/2, frame 16/32)"]
    assert progress_of(["starting"]) == []
    failed = [*log, "error: /in/clip.mp4: no video stream: check the file", "Aborted."]
    assert reason_of(failed) == "error: /in/clip.mp4: no video stream: check the file"


def test_preview_segments_the_prompted_object(client, root: Path) -> None:  # type: ignore[no-untyped-def]
    """Preview returns one mask per prompted object, at the source size, with an overlay."""
    body = {
        "path": str(root / "clip.mp4"),
        "frame": 5,
        "objects": [{"box": [30, 60, 80, 110]}, {"points": [[270, 170]], "labels": [1]}],
    }
    client.post("/api/preview", json=body)  # the first call loads the model
    r = client.post("/api/preview", json=body).json()
    assert len(r["masks"]) == 2 and r["overlay"].startswith("data:image/png;base64,")
    assert rle.decode(r["masks"][0], r["height"], r["width"]).shape == (240, 320)
    assert 0 < r["seconds"] < 30


def test_save_writes_a_config_run_accepts(client, root: Path) -> None:  # type: ignore[no-untyped-def]
    """Save writes a config `sam2flow run` accepts; a prompt without points or a box is a 422 naming it."""
    prompts = [{"frame": 3, "obj_id": 1, "points": [[10.5, 20.25]], "labels": [1], "box": None, "class_name": "red"}]
    zones = [{"name": "door", "polygon": [[0, 0], [100, 0], [100, 80]]}]
    dest = root / "cfg" / "clip.yaml"
    r = client.post(
        "/api/save", json={"video": str(root / "clip.mp4"), "dest": str(dest), "prompts": prompts, "zones": zones}
    )
    assert r.status_code == 200, r.text
    cfg = load_config(dest)
    assert cfg.prompts[0].points == [(10.5, 20.25)] and cfg.zones.regions[0].name == "door"
    bad = client.post(
        "/api/save", json={"video": str(root / "clip.mp4"), "dest": str(dest), "prompts": [{"frame": 1}], "zones": []}
    )
    assert bad.status_code == 422 and "body.prompts.0" in bad.json()["detail"] and "points or a box" in bad.text
    assert client.get("/api/run/nope").status_code == 400


def test_run_refuses_an_unreachable_prefect_server(tmp_path: Path) -> None:
    """With PREFECT_API_URL naming a server that does not answer, Run says so instead of starting anything (a local
    run would fail the same way, reporting to it)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from sam2flow.errors import InputError
    from sam2flow.flows.remote import DEPLOYMENT
    from sam2flow.studio import runs

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/api"
    with temporary_settings({PREFECT_API_URL: dead}), pytest.raises(InputError, match="does not answer"):
        runs.start("v.mp4", "c.yaml", "out", load_config(SMOKE), tmp_path / "run.log", DEPLOYMENT)
    assert not (tmp_path / "run.log").exists()


def test_review_api(client, finished: Path) -> None:  # type: ignore[no-untyped-def]
    """The review API gives the run's tracks, the track under a click, frames with tracks drawn, typed corrections."""
    info = client.get("/api/runinfo", params={"path": str(finished)}).json()
    assert info["frames"] == 48 and len(info["tracks"]) == 2
    rows = [r for r in pq.read_table(finished / "masks.parquet").to_pylist() if r["frame"] == 5]
    top = rows[-1]  # the highest track id on the frame: on top where masks overlap
    ys, xs = np.nonzero(rle.decode(top["rle"], top["height"], top["width"]))
    where = {"path": str(finished), "frame": 5, "x": float(xs[0]), "y": float(ys[0])}
    assert client.get("/api/hit", params=where).json()["track_id"] == top["track_id"]
    frame = client.get("/api/runframe", params={"path": str(finished), "frame": 10})
    assert frame.status_code == 200 and frame.headers["content-type"] == "image/jpeg"
    bad = client.post("/api/corrections", json={"path": str(finished), "corrections": {"merge": [[1]]}})
    assert bad.status_code == 422 and "body.corrections.merge.0" in bad.json()["detail"]


@pytest.fixture(scope="module")
def browser_page(studio: StudioProcess) -> Iterator[tuple[str, object]]:
    """A headless Chromium that opened the address the studio printed (the token is then kept in a cookie)."""
    if CHROMIUM is None and not os.environ.get("CI"):
        pytest.skip("no chromium (scripts/setup.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{studio.url}/?token={studio.token}")
        assert page.url == f"{studio.url}/", "the token is taken out of the address bar"
        yield studio.url, page
        browser.close()


def test_prompt_page_in_a_browser(browser_page, root: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """In Chromium: points, a box and a zone clicked on a scaled canvas are saved in source pixels; Run runs once."""
    url, page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{url}/prompt?video={root / 'clip.mp4'}")
    page.wait_for_selector("canvas[data-ready='1']")
    box = page.locator("canvas").bounding_box()
    scale = box["width"] / 320  # the canvas is shown scaled: clicks are mapped back to source pixels
    assert abs(scale - 1) > 0.2, "the test clicks on a scaled display"

    def at(dx: float, dy: float) -> tuple[int, int]:  # a whole page pixel (mouse events report whole pixels)
        return round(box["x"] + dx), round(box["y"] + dy)

    def source(dx: float, dy: float) -> list[float]:
        x, y = at(dx, dy)
        return [(x - box["x"]) / scale, (y - box["y"]) / scale]

    page.mouse.click(*at(100, 80))
    page.check("input[value=neg]")
    page.mouse.click(*at(150, 90))
    page.check("input[value=box]")
    page.mouse.move(*at(200, 100))
    page.mouse.down()
    page.mouse.move(*at(260, 160), steps=5)
    page.mouse.up()
    page.check("input[value=zone]")
    corners = ((10, 10), (300, 10), (300, 200))
    for dx, dy in corners:
        page.mouse.click(*at(dx, dy))
    page.fill("#zoneName", "door")
    page.click("#closeZone")
    page.click("#preview")
    page.wait_for_selector("canvas[data-previewed='1']", timeout=60_000)
    page.click("#save")
    page.wait_for_function("document.getElementById('yaml').textContent.length > 0")
    page.fill("#out", str(root / "out-browser"))
    page.dblclick("#run")  # the second click finds the button disabled: one run
    assert page.is_disabled("#run")
    page.wait_for_selector("#runStatus[data-status]:not([data-status='running'])", timeout=300_000)
    assert page.get_attribute("#runStatus", "data-status") == "done", page.inner_text("#runStatus")
    assert "(local run)" in page.inner_text("#runStatus") and page.is_enabled("#run")
    assert len(list((root / "out-browser").glob("*/_SUCCESS"))) == 1
    page.screenshot(path=str(tmp_path / "prompt.png"), full_page=True)
    saved = yaml.safe_load((root / "clip.studio.yaml").read_text())
    (p,) = saved["prompts"]
    assert p["points"] == [pytest.approx(source(100, 80), abs=0.01), pytest.approx(source(150, 90), abs=0.01)]
    assert p["labels"] == [1, 0]
    assert p["box"] == pytest.approx([*source(200, 100), *source(260, 160)], abs=0.01)
    (zone,) = saved["zones"]["regions"]
    assert zone["name"] == "door"
    assert zone["polygon"] == [pytest.approx(source(dx, dy), abs=0.01) for dx, dy in corners]
    load_config(root / "clip.studio.yaml")  # `sam2flow run --config` accepts it unchanged
    assert errors == [] and not_blank(tmp_path / "prompt.png")


def test_review_page_makes_a_reference_library(browser_page, finished: Path, root: Path) -> None:  # type: ignore[no-untyped-def]
    """Name two tracks and take a frame on the review page: the library holds them, with ids in naming order."""
    from sam2flow.readers.references import load_references

    url, page = browser_page
    page.goto(f"{url}/review?run={finished}")
    page.wait_for_selector("canvas[data-ready='1']")
    for track, name in ((2, "green"), (1, "red")):
        page.click(f"#tracks .track[data-track='{track}'] b")
        page.fill("#refName", name)
        page.click("#refTrack")
    page.fill("#frameNum", "6")
    page.dispatch_event("#frameNum", "change")
    page.wait_for_selector("canvas[data-ready='1']")
    page.click("#refFrame")
    page.fill("#refDest", str(root / "refs" / "two"))
    page.click("#refMake")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('reference library')")
    refs = load_references(root / "refs" / "two")
    assert [(i.name, i.track_id) for i in refs.identities] == [("green", 1), ("red", 2)]
    assert [f.source_frame for f in refs.frames] == [6] and set(refs.frames[0].masks) == {"green", "red"}
    page.click("#refMake")  # the folder exists now: one clear message, nothing overwritten
    page.wait_for_function("document.getElementById('status').textContent.startsWith('not made')")
    assert "exists" in page.text_content("#status")


def test_review_page_merges_two_tracks(browser_page, finished: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """In Chromium: checking two tracks, Merge and Apply leave one track and write the merge to corrections.yaml."""
    url, page = browser_page
    before = pq.read_table(finished / "tracks.parquet").to_pylist()
    assert len(before) == 2
    frames = {r["frame"] for r in pq.read_table(finished / "masks.parquet").to_pylist()}
    page.goto(f"{url}/review?run={finished}")
    page.wait_for_selector("canvas[data-ready='1']")
    page.check("#tracks input[value='1']")
    page.check("#tracks input[value='2']")
    page.click("#merge")
    page.click("#apply")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('applied')", timeout=60_000)
    page.screenshot(path=str(tmp_path / "review.png"), full_page=True)
    after = pq.read_table(finished / "tracks.parquet").to_pylist()
    assert [t["track_id"] for t in after] == [1] and after[0]["num_frames"] == len(frames)
    assert yaml.safe_load((finished / "corrections.yaml").read_text())["merge"] == [[1, 2]]
    assert not_blank(tmp_path / "review.png")
