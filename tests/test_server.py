"""The real service setup: a Prefect server on PostgreSQL, `sam2flow serve`, and an archive run triggered through
the API on a folder with two small videos and a corrupt file."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.prefect_api import run_tree_artifacts

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (Debian's postgresql package); yields an asyncpg URL."""
    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed: scripts/setup.sh installs Debian's postgresql package")
        pytest.skip("PostgreSQL is not installed (scripts/setup.sh installs it)")
    root = Path(tempfile.mkdtemp(prefix="sam2flow-pg-"))
    root.chmod(0o755)
    data, port = root / "data", _free_port()
    as_pg: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(root, "postgres", "postgres")
        as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_pg, initdb, "-D", str(data), "-U", "prefect", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)  # fmt: skip
    opts = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off"
    subprocess.run([*as_pg, pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "pg.log"), "-w", "start"],
                   check=True, capture_output=True)  # fmt: skip
    try:
        createdb = _pg_binary("createdb") or "createdb"
        subprocess.run([*as_pg, createdb, "-h", "127.0.0.1", "-p", str(port), "-U", "prefect", "prefect"],
                       check=True, capture_output=True)  # fmt: skip
        yield f"postgresql+asyncpg://prefect@127.0.0.1:{port}/prefect"
    finally:
        subprocess.run([*as_pg, pg_ctl, "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def prefect_server(postgres: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`prefect server start` on that database; yields the API URL."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": postgres,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    log = home / "server.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=f, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/health", 120, proc, log)
        assert "postgresql" in postgres
        yield f"http://127.0.0.1:{port}/api"
    finally:
        proc.terminate()
        proc.wait(30)


def _serve(
    api: str, config: Path, home: Path, source: Path, out: Path, *extra: str
) -> tuple[subprocess.Popen[bytes], Path]:
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env["PREFECT_RUNNER_POLL_FREQUENCY"] = "2"  # look for scheduled runs every 2 s, not 10 (a quicker test)
    log = home / "serve.log"
    args = ["serve", "--config", str(config), "--source", str(source), "--out", str(out), *extra]
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [str(VENV_BIN / "sam2flow"), *args], env=env, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT
        )
    return proc, log


def _wait_deployment(
    api: str, name: str, serve: subprocess.Popen[bytes], log: Path, ready: Callable[[Any], bool] = lambda d: True
) -> Any:
    """Wait until `sam2flow serve` has registered the deployment (and, as registered, it satisfies ``ready``: an
    earlier test's serve may have registered it with other settings); return it."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        deadline = time.monotonic() + 120
        while True:
            try:
                deployment = client.read_deployment_by_name(name)
                if ready(deployment):
                    return deployment
                raise LookupError(f"{name} is registered, not yet as this test's serve registers it")
            except Exception as exc:
                if time.monotonic() > deadline or serve.poll() is not None:
                    raise RuntimeError(f"sam2flow serve did not register its deployments:\n{log.read_text()}") from exc
                time.sleep(1)


def _run_archive(api: str, parameters: dict[str, Any]) -> tuple[Any, list[Any]]:
    """Trigger the archive deployment through the API, wait for it, and read its artifacts back."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}):
        run = run_deployment("process_archive/sam2flow-archive", parameters=parameters, timeout=900)
        with get_client(sync_client=True) as client:
            _, artifacts = run_tree_artifacts(client, run.id)
    return run, artifacts


def _trigger_new_video(api: str, video: str, timeout: float = 300) -> Any:
    """Emit the new-video event and wait for the process_video run its trigger starts to finish."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # From a process of its own, like an upload script: this test process's events client may already be bound
    # to the test harness's server.
    code = "import sys; from sam2flow.flows.deployments import emit_new_video; emit_new_video(sys.argv[1])"
    env = {**os.environ, "PREFECT_API_URL": api}
    subprocess.run([sys.executable, "-c", code, video], env=env, cwd=ROOT, check=True, timeout=120)
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        only_video = DeploymentFilter(name=DeploymentFilterName(any_=["sam2flow-video"]))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(deployment_filter=only_video, limit=10)
            if runs and runs[0].state is not None and runs[0].state.is_final():
                return runs[0]
            time.sleep(2)
    raise TimeoutError(f"no finished process_video run within {timeout}s of the new-video event")


@pytest.mark.slow
def test_archive_deployment_on_postgres_backed_server(prefect_server: str, tmp_path: Path) -> None:
    """The archive deployment served against a PostgreSQL-backed Prefect server processes an archive and reports."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests.archives import make_archive

    archive, cfg = make_archive(tmp_path)
    config_file = tmp_path / "cfg.json"  # JSON is YAML
    config_file.write_text(json.dumps(cfg.model_dump(mode="json")))
    serve, log = _serve(prefect_server, config_file, tmp_path, source=archive, out=tmp_path / "out")
    try:
        _wait_deployment(prefect_server, "process_archive/sam2flow-archive", serve, log)
        params = {"source": str(archive), "out": str(tmp_path / "out"), "pattern": "*.mp4", "max_in_flight": 2}
        run, artifacts = _run_archive(prefect_server, params)
        assert run.state.is_failed(), run.state
        assert "2 done, 0 skipped, 1 failed of 3" in (run.state.message or "")
        table = next(a for a in artifacts if a.key == "archive-summary")
        data = table.data if isinstance(table.data, list) else json.loads(table.data)
        rows = {Path(r["video"]).name: r for r in data}
        assert [rows[n]["status"] for n in ("a.mp4", "b.mp4", "c_corrupt.mp4")] == ["done", "done", "failed"]
        assert "readable video" in rows["c_corrupt.mp4"]["reason"]
        assert sum(a.type == "markdown" and a.key.startswith("video-") for a in artifacts) == 3
        assert sum(a.type == "markdown" and a.key.startswith("report-") for a in artifacts) == 2
        assert sum(a.type == "progress" for a in artifacts) == 2
        for name in ("a.mp4", "b.mp4"):
            assert (Path(rows[name]["out_dir"]) / "_SUCCESS").is_file()

        again, _ = _run_archive(prefect_server, params)
        assert "0 done, 2 skipped, 1 failed of 3" in (again.state.message or "")

        # A new file under the served source, announced by an event, starts a process_video run through the
        # deployment's trigger; its results go to the served --out (an event cannot choose where to write).
        new_video = archive / "incoming" / "new.mp4"
        new_video.parent.mkdir()
        shutil.copy(archive / "a.mp4", new_video)
        triggered = _trigger_new_video(prefect_server, str(new_video))
        assert triggered.state.is_completed(), triggered.state
        assert triggered.parameters["video"] == str(new_video)
        assert list((tmp_path / "out").glob("new-*/_SUCCESS"))

        # Parameters are untrusted: a run asked to write outside the served folders is refused, writing nothing.
        from prefect.deployments import run_deployment

        elsewhere = tmp_path / "elsewhere"
        with temporary_settings({PREFECT_API_URL: prefect_server}):
            params = {"video": str(archive / "a.mp4"), "out": str(elsewhere)}
            refused = run_deployment("process_video/sam2flow-video", parameters=params, timeout=300)
        assert refused.state.is_failed() and not elsewhere.exists()
    finally:
        serve.terminate()
        serve.wait(30)


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    """The largest number of [start, end) spans that overlap."""
    edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    now = most = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        now += step
        most = max(most, now)
    return most


@pytest.mark.slow
def test_a_burst_of_new_video_events_waits_for_the_limit(prefect_server: str, tmp_path: Path) -> None:
    """Six new-video events at once with `sam2flow serve --limit 2`: every video is processed, never more than two
    runs at a time (from the flow runs' own start and end times), and the limit is reached."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from sam2flow.config import load_config
    from tests.archives import TINY
    from tests.synth import Square, write_clip

    source, out = tmp_path / "incoming", tmp_path / "out"
    source.mkdir()
    videos = [str(write_clip(source / f"cam{i}.mp4", 24, squares=(Square((230, 40, 40), 60, 20 + 3 * i, 1.0, 50),)))
              for i in range(6)]  # fmt: skip
    config = tmp_path / "cfg.json"
    cheap = ["render.enabled=false", "report.enabled=false", "video.max_frames=8"]  # short runs: 8 frames, no video
    cfg = load_config(ROOT / "configs" / "smoke.yaml", [*TINY, *cheap])
    config.write_text(json.dumps(cfg.model_dump(mode="json")))
    serve, log = _serve(prefect_server, config, tmp_path, source, out, "--limit", "2")
    try:
        limited = lambda d: d.global_concurrency_limit is not None and d.global_concurrency_limit.limit == 2  # noqa: E731
        _wait_deployment(prefect_server, "process_video/sam2flow-video", serve, log, limited)
        code = ("import sys; from prefect.events import emit_event; from prefect.events.worker import EventsWorker\n"
                "from sam2flow.flows.deployments import NEW_VIDEO_EVENT\n"
                "for v in sys.argv[1:]: emit_event(event=NEW_VIDEO_EVENT, resource={'prefect.resource.id': v})\n"
                "EventsWorker.drain_all(timeout=30)")  # fmt: skip
        env = {**os.environ, "PREFECT_API_URL": prefect_server}
        subprocess.run([sys.executable, "-c", code, *videos], env=env, cwd=ROOT, check=True, timeout=120)
        with temporary_settings({PREFECT_API_URL: prefect_server}), get_client(sync_client=True) as client:
            only_video = DeploymentFilter(name=DeploymentFilterName(any_=["sam2flow-video"]))
            deadline = time.monotonic() + 900
            while True:
                runs = [r for r in client.read_flow_runs(deployment_filter=only_video, limit=200)
                        if r.parameters.get("video") in videos]  # fmt: skip
                if len(runs) == len(videos) and all(r.state is not None and r.state.is_final() for r in runs):
                    break
                assert time.monotonic() < deadline, f"{len(runs)} run(s): {[r.state_name for r in runs]}"
                time.sleep(3)
    finally:
        serve.terminate()
        serve.wait(30)
    assert sorted(r.parameters["video"] for r in runs) == sorted(videos)
    assert all(r.state is not None and r.state.is_completed() for r in runs), [r.state for r in runs]
    spans = [(r.start_time.timestamp(), r.end_time.timestamp()) for r in runs if r.start_time and r.end_time]
    assert len(spans) == len(videos)
    assert _most_at_once(spans) == 2, sorted(spans)
    assert len(list(out.glob("cam*/_SUCCESS"))) == len(videos)


@pytest.mark.slow
def test_studio_runs_through_the_served_deployment(prefect_server: str, tmp_path: Path) -> None:
    """`sam2flow studio` with PREFECT_API_URL set and `sam2flow serve` serving: Run creates a flow run of the
    process_video deployment (not a local run) with the saved config, and reports its state, progress and UI link."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from sam2flow.config import load_config
    from tests.smoke import SMOKE
    from tests.studio_server import STUDIO_BASE as BASE
    from tests.studio_server import STUDIO_SQUARES as SQUARES
    from tests.studio_server import StudioProcess
    from tests.synth import write_clip

    root = tmp_path / "root"
    root.mkdir()
    write_clip(root / "clip.mp4", frames=48, squares=SQUARES)
    served = tmp_path / "served.json"  # the deployment's default config: the smoke config's own prompt
    served.write_text(json.dumps(load_config(SMOKE, BASE).model_dump(mode="json")))
    serve, serve_log = _serve(prefect_server, served, tmp_path, source=root, out=root / "out")
    overrides = [arg for o in BASE for arg in ("--set", o)]
    studio = StudioProcess(["--root", str(root), "--config", str(SMOKE), *overrides], tmp_path / "studio-tmp",
                           env={"PREFECT_API_URL": prefect_server})  # fmt: skip
    try:
        deployment = _wait_deployment(prefect_server, "process_video/sam2flow-video", serve, serve_log)
        prompts = [{"frame": 0, "obj_id": 1, "box": [20, 60, 70, 110], "class_name": "red"},
                   {"frame": 0, "obj_id": 2, "box": [250, 150, 290, 190], "class_name": "green"}]  # fmt: skip
        video, config = str(root / "clip.mp4"), str(root / "studio.yaml")
        body = {"video": video, "dest": config, "prompts": prompts, "zones": []}
        assert studio.client.post("/api/save", json=body).status_code == 200
        started = studio.client.post("/api/run", json={"video": video, "config": config, "out": str(root / "out")})
        started = started.json()
        assert started["via"] == "deployment"
        deadline = time.monotonic() + 420
        while (status := studio.client.get(f"/api/run/{started['id']}").json())["status"] == "running":
            assert time.monotonic() < deadline, status
            time.sleep(2)
        assert status["status"] == "done", status
        assert status["via"] == "deployment" and status["progress"] == ["segmented 100%"], status
        assert status["log_tail"] and status["note"].startswith("Completed"), status
        ui, flow_run_id = status["flow_run_url"].rsplit("/runs/flow-run/", 1)
        assert ui == prefect_server.removesuffix("/api")
        with temporary_settings({PREFECT_API_URL: prefect_server}), get_client(sync_client=True) as client:
            flow_run = client.read_flow_run(UUID(flow_run_id))
        assert flow_run.deployment_id == deployment.id and "studio" in flow_run.tags
        assert flow_run.state is not None and flow_run.state.is_completed()
        (out_dir,) = (root / "out").iterdir()
        assert (out_dir / "_SUCCESS").is_file()
        manifest = json.loads((out_dir / "manifest.json").read_text())
        assert [p["box"] for p in manifest["config"]["prompts"]] == [p["box"] for p in prompts]  # the studio's config
    finally:
        studio.stop()
        serve.terminate()
        serve.wait(30)


@pytest.mark.slow
def test_studio_runs_locally_when_the_server_serves_no_deployment(prefect_server: str, tmp_path: Path) -> None:
    """A configured server without the deployment: Run falls back to a local run that reports to that server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from sam2flow.config import load_config
    from sam2flow.studio import runs
    from tests.smoke import SMOKE
    from tests.studio_server import STUDIO_BASE as BASE
    from tests.studio_server import STUDIO_SQUARES as SQUARES
    from tests.synth import write_clip

    video = write_clip(tmp_path / "clip.mp4", frames=32, squares=SQUARES)
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(load_config(SMOKE, BASE).model_dump(mode="json")))
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        started = runs.start(str(video), str(config), str(tmp_path / "out"), load_config(config),
                             tmp_path / "run.log", "process_video/not-served")  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while (status := started.status())["flow_run_url"] is None:  # until the run has reported to the server
            assert status["status"] == "running" and time.monotonic() < deadline, status
            time.sleep(1)
    finally:
        started.proc.terminate()
        started.proc.wait(60)
    assert status["via"] == "local" and "serves no process_video/not-served deployment" in status["note"]
    assert str(status["flow_run_url"]).startswith(prefect_server.removesuffix("/api") + "/runs/flow-run/"), status
