"""What can be validated of infra/ without GPUs, containers or a cluster."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

INFRA = Path(__file__).resolve().parents[1] / "infra"


def test_prefect_yaml_names_real_flows_schedule_and_trigger() -> None:
    """infra/prefect.yaml names importable flows, a valid schedule and GPU job variables."""
    from prefect.client.schemas.schedules import CronSchedule

    from sam2flow.flows.deployments import NEW_VIDEO_EVENT

    spec = yaml.safe_load((INFRA / "prefect.yaml").read_text())
    names = {}
    for d in spec["deployments"]:
        module, func = d["entrypoint"].rsplit(".", 1)  # module-path entrypoints: the image installs the package
        flow = getattr(importlib.import_module(module), func)
        names[d["name"]] = flow.name
        assert d["work_pool"]["job_variables"]["gpus"] == 1
    assert names == {"sam2flow-video": "process_video", "sam2flow-archive": "process_archive"}
    archive = next(d for d in spec["deployments"] if d["name"] == "sam2flow-archive")
    CronSchedule(cron=archive["schedules"][0]["cron"], timezone=archive["schedules"][0]["timezone"])
    video = next(d for d in spec["deployments"] if d["name"] == "sam2flow-video")
    assert video["triggers"][0]["expect"] == [NEW_VIDEO_EVENT]
    assert set(video["triggers"][0]["parameters"]) == {"video"}, "an event cannot choose where results go"
    limits = {d["name"]: d["concurrency_limit"] for d in spec["deployments"]}
    assert limits["sam2flow-archive"]["limit"] == 1 and limits["sam2flow-video"]["limit"] >= 1
    assert {lim["collision_strategy"] for lim in limits.values()} == {"ENQUEUE"}, "a burst waits, none is dropped"
    for d in spec["deployments"]:
        env = d["work_pool"]["job_variables"]["env"]
        assert env["SAM2FLOW_INPUT_ROOTS"] and env["SAM2FLOW_OUTPUT_ROOTS"]


def test_k8s_template_requests_gpus_and_declares_every_variable() -> None:
    """The Kubernetes work-pool template requests GPUs, runs unprivileged and declares every variable it uses."""
    template = json.loads((INFRA / "k8s" / "gpu-work-pool-template.json").read_text())
    pod = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "{{ gpus }}"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "{{ gpus }}"
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", json.dumps(template["job_configuration"])))
    assert used <= set(template["variables"]["properties"]), used - set(template["variables"]["properties"])


def test_compose_file() -> None:
    """The compose stack: server on loopback behind basic auth, passwords only from the environment, no published
    database, worker serving with read/write roots as a non-root user without extra privileges."""
    text = (INFRA / "compose.yaml").read_text()
    spec = yaml.safe_load(text)
    services = spec["services"]
    assert {"postgres", "prefect-server", "worker"} <= set(services)
    url = services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert url.startswith("postgresql+asyncpg://") and "@postgres:5432/" in url
    assert all(p.startswith("127.0.0.1:") for p in services["prefect-server"]["ports"])
    assert "ports" not in services["postgres"]
    assert services["prefect-server"]["environment"]["PREFECT_SERVER_API_AUTH_STRING"].startswith("${PREFECT_AUTH:?")
    assert services["worker"]["environment"]["PREFECT_API_AUTH_STRING"].startswith("${PREFECT_AUTH:?")
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert "prefect:prefect@" not in text, "no password is written in the file"
    command = services["worker"]["command"]
    assert command[:2] == ["sam2flow", "serve"] and "--source" in command and "--out" in command
    for name in ("prefect-server", "worker"):
        assert not services[name]["user"].startswith("0") and services[name]["cap_drop"] == ["ALL"]
    dockerfile = (INFRA / "Dockerfile").read_text().splitlines()
    assert [line for line in dockerfile if line.startswith("USER ")][-1] == "USER 10001:10001"
    assert "infra/.env" in (INFRA.parent / ".gitignore").read_text()
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("docker compose is not installed: only the YAML structure was checked")
    proc = subprocess.run([docker, "compose", "-f", str(INFRA / "compose.yaml"), "config", "-q"], capture_output=True)
    assert proc.returncode == 0, proc.stderr


def test_deployments_carry_the_config_form() -> None:
    """The deployments carry the config as a typed form, the schedule, and a new-video trigger limited to the source."""
    from sam2flow.config import PipelineConfig
    from sam2flow.flows.deployments import build_deployments

    video, archive = build_deployments(PipelineConfig(), source="/data/in", out="/data/out", cron="0 2 * * *")
    assert archive.schedules and archive.schedules[0].schedule.cron == "0 2 * * *"
    assert archive.parameters["source"] == "/data/in" and video.parameters["out"] == "/data/out"
    # New-video events are taken only under the served source, and cannot choose where results go.
    (trigger,) = video.triggers
    assert trigger.match.model_dump() == {"prefect.resource.id": "/data/in/*"}
    assert set(trigger.parameters) == {"video"}
    assert build_deployments(PipelineConfig(), out="/data/out")[0].triggers == []
    schema = json.dumps(video._parameter_openapi_schema.model_dump())
    # descriptions, choices and bounds of the config reach the UI form
    assert "Frames per subsequence" in schema and '"carry"' in schema and '"minimum": 17' in schema
