"""The studio as a hostile web page would meet it: Host allowlist (DNS rebinding), Origin check (cross-site posts),
session token, typed bodies (a 4xx naming the field, never a 500), and a stopped studio leaving nothing behind.

Over real HTTP against `sam2flow studio` processes; the pure checks of `sam2flow.studio.guard` are table-driven."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from sam2flow.studio.guard import Guard, valid_host
from tests.studio_server import StudioProcess
from tests.synth import Square, write_clip

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("guarded")
    write_clip(folder / "clip.mp4", frames=8, squares=(Square((230, 40, 40), y=60, x0=20, speed=2.0, size=50),))
    return folder


@pytest.fixture(scope="module")
def studio(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudioProcess]:
    server = StudioProcess(["--root", str(root), "--config", str(SMOKE), "--local"], tmp_path_factory.mktemp("t"))
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("guard", "host", "allowed"),
    [
        (Guard("127.0.0.1", 8765), "127.0.0.1:8765", True),
        (Guard("127.0.0.1", 8765), "localhost:8765", True),
        (Guard("127.0.0.1", 8765), "LOCALHOST:8765", True),
        (Guard("127.0.0.1", 8765), "[::1]:8765", True),
        (Guard("127.0.0.1", 8765), "localhost:9999", False),
        (Guard("127.0.0.1", 8765), "localhost", False),
        (Guard("127.0.0.1", 8765), "evil.example:8765", False),
        (Guard("127.0.0.1", 8765), "127.0.0.1.nip.io:8765", False),
        (Guard("127.0.0.1", 8765), "192.168.1.5:8765", False),
        (Guard("127.0.0.1", 8765), "localhost:notaport", False),
        (Guard("127.0.0.1", 8765), "", False),
        (Guard("0.0.0.0", 8765), "192.168.1.5:8765", True),  # an address cannot be rebound
        (Guard("0.0.0.0", 8765), "nas.local:8765", False),
        (Guard("10.0.0.2", 8765), "10.0.0.2:8765", True),
        (Guard("127.0.0.1", 8765, ("studio.example",)), "studio.example", True),
        (Guard("127.0.0.1", 8765, ("studio.example",)), "studio.example:443", True),
        (Guard("127.0.0.1", 8765, ("studio.example:443",)), "studio.example:80", False),
        (Guard("127.0.0.1", 8765, ("studio.example",)), "other.example", False),
    ],
)
def test_host_allowlist(guard: Guard, host: str, allowed: bool) -> None:
    """Only the studio's own address names (and --allow-host names) are answered; DNS-rebinding names are not."""
    assert (guard.host_refusal(host) is None) is allowed


@pytest.mark.parametrize(
    ("method", "origin", "site", "allowed"),
    [
        ("GET", "http://evil.example", "cross-site", True),  # reading: the token and CORS decide
        ("POST", "http://127.0.0.1:8765", "same-origin", True),
        ("POST", None, None, True),  # not a browser: it must hold the token
        ("POST", "http://evil.example", None, False),
        ("POST", "null", None, False),
        ("POST", "http://127.0.0.1:8765", "cross-site", False),
        ("POST", "http://127.0.0.1:8765", "same-site", False),  # another local port
        ("POST", "http://localhost:8765", None, False),  # Origin names another host than the request's
        ("PUT", "http://evil.example", None, False),
        ("DELETE", None, "cross-site", False),
    ],
)
def test_origin_check(method: str, origin: str | None, site: str | None, allowed: bool) -> None:
    """A request that changes something must come from the studio's own pages."""
    refusal = Guard("127.0.0.1", 8765).origin_refusal(method, "127.0.0.1:8765", origin, site)
    assert (refusal is None) is allowed


def test_tokens_and_host_names() -> None:
    """Each start has its own token, compared whole; --no-token lets every request through; --allow-host values."""
    a, b = Guard("127.0.0.1", 8765), Guard("127.0.0.1", 8765)
    assert a.token and b.token and a.token != b.token and len(a.token) >= 40
    assert a.token_ok(a.token, None, None) and a.token_ok(None, a.token, None)
    assert a.token_ok(None, None, f"token {a.token}") and a.token_ok(None, None, f"Token {a.token}")
    assert not a.token_ok(b.token, None, None) and not a.token_ok(a.token[:-1], None, None)
    assert not a.token_ok(None, None, f"Bearer {a.token}") and not a.token_ok(None, None, None)
    assert Guard("127.0.0.1", 8765, token=None).token_ok(None, None, None)
    assert (
        a.url() == f"http://127.0.0.1:8765/?token={a.token}"
        and Guard("::1", 80, token=None).url() == "http://[::1]:80/"
    )
    assert [valid_host(h) for h in ("studio.example", "studio.example:8443", "[::1]:80", "a b", "x:99999", ":80")] == [
        True, True, True, False, False, False
    ]  # fmt: skip


def test_a_foreign_host_gets_nothing(studio: StudioProcess, root: Path) -> None:
    """DNS rebinding: with Host evil.example the listing and frames are refused, token or not; own names answer."""
    clip = {"path": str(root / "clip.mp4"), "frame": 0}
    for host in ("evil.example", f"evil.example:{studio.port}", f"127.0.0.1.nip.io:{studio.port}"):
        for url, params in (("/api/list", None), ("/api/frame", clip), ("/", None)):
            r = studio.client.get(url, params=params, headers={"Host": host})
            assert r.status_code == 403 and "not allowed" in r.text and "--allow-host" in r.text, (host, url)
    for host in (f"localhost:{studio.port}", f"[::1]:{studio.port}", f"127.0.0.1:{studio.port}"):
        r = studio.client.get("/api/list", headers={"Host": host})
        assert r.status_code == 200 and r.json()["videos"] == [str(root / "clip.mp4")], host


def test_a_foreign_origin_changes_nothing(studio: StudioProcess, root: Path) -> None:
    """A cross-site post (even one carrying the cookie) writes no config; the studio's own pages may."""
    body = {"video": str(root / "clip.mp4"), "dest": str(root / "evil.yaml"), "prompts": [], "zones": []}
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        r = studio.client.post("/api/save", json=body, headers=headers)
        assert r.status_code == 403 and not (root / "evil.yaml").exists(), r.text
    foreign = studio.client.post("/api/save", json=body, headers={"Origin": "http://evil.example"})
    assert "Origin 'http://evil.example'" in foreign.text
    r = studio.client.post("/api/save", json={**body, "dest": str(root / "own.yaml")})
    assert r.status_code == 200 and (root / "own.yaml").is_file()


def test_the_token_is_required_and_kept_in_a_cookie(studio: StudioProcess) -> None:
    """Without the token nothing is served; the printed address sets an HttpOnly, SameSite=Strict cookie and drops
    the token from the address; the cookie then suffices."""
    import httpx

    assert studio.token and f"?token={studio.token}" in "".join(studio.lines)
    bare = httpx.Client(base_url=studio.url)
    for url in ("/", "/prompt", "/api/list", "/studio.js"):
        r = bare.get(url)
        assert r.status_code == 403 and "token" in r.text, url
    assert bare.get("/api/list", params={"token": "wrong"}).status_code == 403
    assert bare.get("/api/list", headers={"Authorization": "token wrong"}).status_code == 403
    first = bare.get("/prompt", params={"video": "/x/y.mp4", "token": studio.token})
    assert first.status_code == 303 and first.headers["location"] == "/prompt?video=%2Fx%2Fy.mp4"
    cookie = first.headers["set-cookie"]
    assert cookie.startswith(f"sam2flow-studio-{studio.port}={studio.token}")
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert bare.get("/api/list").status_code == 200, "the cookie stands in for the token"
    bare.close()


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/api/preview", {"path": "ROOT/clip.mp4", "frame": "abc"}, "body.frame"),
        ("/api/preview", {"path": "ROOT/clip.mp4", "frame": -1}, "body.frame"),
        ("/api/preview", {"path": "ROOT/clip.mp4", "objects": [{"box": [1, 2]}]}, "body.objects.0.box"),
        ("/api/preview", {"path": "ROOT/clip.mp4", "objects": [{"box": [9, 9, 1, 1]}]}, "body.objects.0"),
        ("/api/preview", {"path": "ROOT/clip.mp4", "objects": [{"points": [1, 2], "labels": [1]}]}, "points.0"),
        ("/api/preview", {"path": "ROOT/clip.mp4", "objects": [{"points": [[1, 2]], "labels": []}]}, "one label"),
        ("/api/preview", {"path": "ROOT/clip.mp4", "objects": [{"points": [[1, 2]], "labels": [7]}]}, "labels.0"),
        ("/api/preview", {"path": "ROOT/clip.mp4", "objects": "none"}, "body.objects"),
        ("/api/preview", {"path": "ROOT/clip.mp4", "extra": 1}, "body.extra"),
        ("/api/preview", [1, 2], "body"),
        ("/api/preview", {"frame": 0}, "body.path"),
        ("/api/save", {"video": "ROOT/clip.mp4", "dest": "ROOT/a.yaml", "zones": [{"name": "z"}]}, "zones.0.polygon"),
        ("/api/run", {"video": "ROOT/clip.mp4", "config": 5}, "body.config"),
        ("/api/corrections", {"path": "ROOT", "corrections": {"delete": ["x"]}}, "body.corrections.delete.0"),
        ("/api/references", {"path": "ROOT", "frames": "1", "tracks": [[1, "a"]], "dest": "ROOT/l"}, "body.frames"),
        ("/api/references", {"path": "ROOT", "frames": [1], "tracks": [[1]], "dest": "ROOT/l"}, "body.tracks.0"),
        ("/api/apply", {}, "body.path"),
        ("/api/apply", {"path": "ROOT", "rerender": "maybe"}, "body.rerender"),
        ("/api/track", {"path": "ROOT/clip.mp4", "stop": 10}, "body.prompts"),
        (
            "/api/track",
            {"path": "ROOT/clip.mp4", "start": 9, "stop": 5, "prompts": [{"frame": 9, "box": [1, 1, 9, 9]}]},
            "stop - start",
        ),
        ("/api/track", {"path": "ROOT/clip.mp4", "stop": 5, "prompts": [{"frame": 0}]}, "at least one point or box"),
        ("/api/track", {"path": "ROOT/clip.mp4", "stop": 5, "prompts": [{"box": [1, 1, 9, 9]}]}, "prompts.0.frame"),
        ("/api/rerun", {"path": 3}, "body.path"),
        ("/api/find", {"path": "ROOT/clip.mp4", "text": []}, "body.text"),
        ("/api/find", {"path": "ROOT/clip.mp4", "text": [""]}, "body.text.0"),
        ("/api/find", {"path": "ROOT/clip.mp4", "text": "person"}, "body.text"),
        ("/api/find", {"path": "ROOT/clip.mp4", "frame": -3, "text": ["person"]}, "body.frame"),
        ("/api/save", {"video": "ROOT/clip.mp4", "dest": "ROOT/a.yaml", "text": ["x" * 201]}, "body.text.0"),
    ],
)
def test_bad_bodies_are_4xx_naming_the_field(studio: StudioProcess, root: Path, url: str, body: object,
                                             field: str) -> None:  # fmt: skip
    """Every JSON body is a typed model: a bad one is answered 422 with the field named, never a 500."""
    if isinstance(body, dict):
        body = {k: v.replace("ROOT", str(root)) if isinstance(v, str) else v for k, v in body.items()}
    r = studio.client.post(url, json=body)
    assert r.status_code == 422 and field in r.json()["detail"], r.text


def test_bad_query_values_and_broken_json_are_4xx(studio: StudioProcess, root: Path) -> None:
    """Query parameters are typed too, and a body that is not JSON is a 422, not a 500."""
    r = studio.client.get("/api/frame", params={"path": str(root / "clip.mp4"), "frame": "abc"})
    assert r.status_code == 422 and "query.frame" in r.json()["detail"]
    r = studio.client.post("/api/preview", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["detail"]
    r = studio.client.get("/api/hit", params={"path": str(root), "frame": 0, "x": "left", "y": 1})
    assert r.status_code == 422 and "query.x" in r.json()["detail"]
    r = studio.client.get("/api/runmasks", params={"path": str(root), "start": 0})
    assert r.status_code == 422 and "query.stop" in r.json()["detail"]
    body = {"path": str(root / "clip.mp4"), "start": 40, "stop": 60, "prompts": [{"frame": 40, "box": [1, 1, 9, 9]}]}
    r = studio.client.post("/api/track", json=body)
    assert r.status_code == 400 and "past the video's last frame" in r.json()["detail"]
    r = studio.client.get("/api/config", params={"path": str(root / "none.yaml")})
    assert r.status_code == 200 and r.json()["exists"] is False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_studio_leaves_nothing_behind(root: Path, tmp_path: Path, sig: int) -> None:
    """With --allow-host and --no-token: a proxy's Host name is answered without a token; after a preview and a
    stop (Ctrl-C or a service manager's SIGTERM) its temporary directory holds nothing of it."""
    tmp = tmp_path / "tmp"
    args = ["--root", str(root), "--config", str(SMOKE), "--allow-host", "studio.example", "--no-token"]
    server = StudioProcess(args, tmp)
    assert server.token is None
    proxied = server.session(Host="studio.example", Origin="https://studio.example")
    body = {"path": str(root / "clip.mp4"), "frame": 3, "objects": [{"box": [20, 60, 70, 110]}]}
    r = proxied.post("/api/preview", json=body)
    assert r.status_code == 200 and len(r.json()["masks"]) == 1, r.text
    assert [p.name.split("-")[1] for p in tmp.iterdir()] == ["studio"], "its scratch folder, while it runs"
    assert server.stop(sig) in (0, -sig)  # uvicorn shuts down cleanly, then lets a SIGTERM end the process
    assert list(tmp.iterdir()) == [] and "Traceback" not in "".join(server.lines)


def test_the_new_endpoints_refuse_a_foreign_host_a_foreign_origin_and_no_token(studio: StudioProcess,
                                                                                root: Path) -> None:  # fmt: skip
    """Track, run again, find, media, run masks and saved configs pass the same guard: 403 for a foreign Host, for a
    cross-site post and without the token, and nothing runs or is written."""
    import httpx

    clip = str(root / "clip.mp4")
    posts = (("/api/track", {"path": clip, "stop": 2, "prompts": [{"frame": 0, "box": [1, 1, 9, 9]}]}),
             ("/api/rerun", {"path": str(root)}), ("/api/find", {"path": clip, "text": ["person"]}))  # fmt: skip
    gets = (("/api/media", {"path": clip}), ("/api/runmasks", {"path": str(root), "stop": 2}),
            ("/api/config", {"path": str(root / "x.yaml")}))  # fmt: skip
    bare = httpx.Client(base_url=studio.url)
    for url, body in posts:
        assert studio.client.post(url, json=body, headers={"Origin": "http://evil.example"}).status_code == 403, url
        assert studio.client.post(url, json=body, headers={"Host": "evil.example"}).status_code == 403, url
        assert bare.post(url, json=body).status_code == 403, url
    for url, params in gets:
        assert studio.client.get(url, params=params, headers={"Host": "evil.example"}).status_code == 403, url
        assert bare.get(url, params=params).status_code == 403, url
    bare.close()
    assert not list(studio.tmp.rglob("rerun-*.yaml")), "no run was started"


def test_find_without_sam3_weights_says_how_to_get_them(studio: StudioProcess, root: Path) -> None:
    """Find on a studio whose config names no SAM 3 model looks for `sam3`; offline and not in the hub's cache, the
    answer is a 4xx saying how to get the gated weights, not a 500."""
    r = studio.client.post("/api/find", json={"path": str(root / "clip.mp4"), "text": ["person"]})
    assert 400 <= r.status_code < 500, r.text
    assert "huggingface.co/facebook/sam3" in r.json()["detail"] and "HF_TOKEN" in r.json()["detail"]
