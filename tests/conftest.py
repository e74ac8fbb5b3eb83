"""Test settings: every cache and state folder goes to a temporary directory; nothing is written to the repo."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_STATE = Path(tempfile.mkdtemp(prefix="sam2flow-tests-"))
os.environ.setdefault("SAM2FLOW_CACHE", str(_STATE / "cache"))
os.environ["YOLO_CONFIG_DIR"] = str(_STATE / "ultralytics")
os.environ["YOLO_OFFLINE"] = "1"
os.environ["HF_HOME"] = str(_STATE / "huggingface")  # the model hub's cache: empty, and never fetched into
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["PREFECT_HOME"] = str(_STATE / "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_EXTRA_LOGGERS"] = "sam2flow"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the state folder (model caches, Prefect's database): each run starts from an empty one anyway."""
    shutil.rmtree(_STATE, ignore_errors=True)


ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect test server for the whole session (starting one takes seconds)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def shared_video() -> Path:
    """A short real clip from ../shared/data (the test is skipped when the folder is absent)."""
    path = SHARED_DATA / "bedroom.mp4"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path
