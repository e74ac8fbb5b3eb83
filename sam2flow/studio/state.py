"""The studio's state: its roots and base config, the previewer, the runs started from its pages and its scratch
folder. The routes (`sam2flow.studio.app`) call these methods; every path given is checked against the roots."""

from __future__ import annotations

import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import yaml
from pydantic import ValidationError

from sam2flow.config import ConfigError, ManualPrompt, PipelineConfig, Zone, format_validation_error, load_config
from sam2flow.errors import InputError
from sam2flow.io import storage
from sam2flow.io.scratch import own_folder
from sam2flow.io.video import VideoProbe, probe
from sam2flow.readers.run import Run
from sam2flow.stages.stitch import corrections
from sam2flow.stages.stitch.corrections import Corrections
from sam2flow.studio import runs
from sam2flow.studio.find import Finder, text_model
from sam2flow.studio.preview import Previewer
from sam2flow.studio.roots import Roots


class RunConflict(InputError):
    """A run of the same video into the same output folder is still going (answered 409)."""


@dataclass
class _Started:
    video: str
    out: str
    run: runs.StartedRun


class Studio:
    """What the routes share: the roots, the base config, the previewer and the runs started here.

    Its scratch files (the previewed frame, the runs' logs) live in one folder of its own in the temporary
    directory, removed by `close`; one that a killed studio left behind is removed when the next one starts.
    """

    def __init__(self, roots: Roots, base: PipelineConfig, base_data: dict[str, Any], device: str | list[str],
                 deployment: str | None) -> None:  # fmt: skip
        self.roots, self.base, self.base_data, self.deployment = roots, base, base_data, deployment
        self.scratch = own_folder(Path(tempfile.gettempdir()), "sam2flow-studio-")
        self.logs = self.scratch / "logs"
        self.logs.mkdir(parents=True)
        self.previewer = Previewer(base, self.scratch / "preview", device)
        self.finder = Finder(base, device)
        self.runs: dict[str, _Started] = {}
        self._starting = threading.Lock()

    def close(self) -> None:
        """Remove the scratch folder (runs started here are stopped by the command's reaper,
        `sam2flow.control.reaper`)."""
        self.previewer.close()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def video(self, path: str) -> tuple[str, VideoProbe]:
        video = self.roots.check(path)
        return video, probe(video)

    def run(self, path: str) -> Run:
        return Run(self.roots.check(path))

    def media(self, path: str) -> str:
        """The video file the page plays: a video under the roots, or a finished run's source video when that is
        under the roots too (a run's manifest is not trusted to name any file). Only a file ffprobe reads as a
        video is served."""
        target = self.roots.check(path)
        if not Path(target).is_file():
            video = self.run(path).local_video()
            if video is None:
                raise InputError(f"the source video of {target} cannot be read here")
            target = self.roots.check(video)
        probe(target)
        return target

    def read_config(self, path: str) -> dict[str, Any]:
        """A saved config's prompts and zones, for the prompt page to show (``exists`` false when there is none)."""
        target = self.roots.check(path)
        if not Path(target).is_file():
            return {"path": target, "exists": False, "prompts": [], "zones": [], "text": None}
        cfg = load_config(target)
        return {"path": target, "exists": True, "prompts": [p.model_dump(mode="json") for p in cfg.prompts],
                "zones": [z.model_dump(mode="json") for z in cfg.zones.regions], "text": cfg.detector.text}  # fmt: skip

    def save_config(
        self, video: str, dest: str, prompts: list[ManualPrompt], zones: list[Zone], text: list[str] | None = None
    ) -> dict[str, Any]:
        target = self.roots.check(dest)
        if not target.endswith((".yaml", ".yml")):
            raise InputError(f"{dest}: a config file name ends in .yaml")
        regions = [z.model_dump(mode="json") for z in zones]
        data = {**self.base_data, "prompts": [p.model_dump(mode="json", exclude_none=True) for p in prompts],
                "zones": {**self.base_data.get("zones", {}), "regions": regions}}  # fmt: skip
        if text:  # the detector finds these phrases with SAM 3 in runs of this config
            detector = {k: v for k, v in self.base_data.get("detector", {}).items() if k != "classes"}
            data["detector"] = {**detector, "enabled": True, "text": text, "model": text_model(self.base)}
        try:
            PipelineConfig.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, dest)) from exc
        body = f"# sam2flow config for {video}, made with `sam2flow studio`\n" + yaml.safe_dump(data, sort_keys=False)
        storage.write_bytes(target, body.encode())
        return {"path": target, "yaml": body}

    def start_run(self, video: str, config: str, out: str) -> dict[str, Any]:
        """Start a run, unless one of the same video into the same output folder is still going.

        Raises:
            RunConflict: Naming the run still going.
        """
        video, config, out = self.roots.check(video), self.roots.check(config), self.roots.check(out)
        return self._start(video, config, out, load_config(config))

    def rerun(self, path: str) -> dict[str, Any]:
        """Run a finished run's video again with its own config into the same output folder: its corrections'
        prompts re-segment the subsequences they touch, the rest is reused (`sam2flow run`)."""
        run = self.run(path)
        video, out = self.roots.check(run.manifest.input), self.roots.check(str(Path(run.path).parent))
        config = self.logs / f"rerun-{uuid.uuid4().hex[:12]}.yaml"
        config.write_text(yaml.safe_dump(run.manifest.config.model_dump(mode="json"), sort_keys=False))
        return self._start(video, str(config), out, run.manifest.config)

    def _start(self, video: str, config: str, out: str, cfg: PipelineConfig) -> dict[str, Any]:
        with self._starting:  # two clicks in quick succession: the second sees the first
            for run_id, s in self.runs.items():
                if (s.video, s.out) == (video, out) and s.run.status()["status"] == "running":
                    raise RunConflict(f"run {run_id} of {video} into {out} is still going: wait for it to end")
            run_id = uuid.uuid4().hex[:12]
            started = runs.start(video, config, out, cfg, self.logs / f"{run_id}.log", self.deployment)
            self.runs[run_id] = _Started(video, out, started)
        return {"id": run_id, "via": started.via}

    def save_corrections(self, path: str, fixes: Corrections) -> dict[str, Any]:
        """Write a run's corrections.yaml, each prompt for a track of the run given the track's ``track_box`` (so
        `sam2flow run` refines that track's object instead of starting another)."""
        run = self.run(path)
        fixed = with_track_boxes(run, fixes)
        return {"path": corrections.save(run.path, fixed), "corrections": fixed.model_dump(mode="json")}

    def make_references(self, path: str, frames: list[int], tracks: list[tuple[int, str]], dest: str) -> dict[str, Any]:
        """A reference library from a finished run under the roots, written under the roots; ``tracks`` is a list of
        [track id, name] pairs, in the order that gives the identities their ids."""
        from sam2flow.readers.references import load_references, make_references, parse_tracks

        run, target = self.run(path), self.roots.check(dest)
        named = parse_tracks(",".join(f"{track}:{name}" for track, name in tracks))
        made = load_references(make_references(run.path, frames, named, target))
        identities = [{"name": i.name, "track_id": i.track_id} for i in made.identities]
        return {"path": target, "identities": identities, "frames": [f.source_frame for f in made.frames]}

    def run_status(self, run_id: str) -> dict[str, Any]:
        started = self.runs.get(run_id)
        if started is None:
            raise InputError(f"no run {run_id} was started by this studio")
        return started.run.status()


def with_track_boxes(run: Run, fixes: Corrections) -> Corrections:
    """``fixes`` with every prompt that names a track of ``run`` (its ``obj_id``) and has no ``track_box`` given
    the box of that track on the last frame up to the prompt's where it has a mask."""
    wanted = {p.obj_id for p in fixes.prompts if p.obj_id is not None and p.track_box is None}
    if not wanted:
        return fixes
    t = run.masks(columns=["frame", "track_id", "bbox"])
    t = t.filter(pc.is_in(t["track_id"], pa.array(sorted(wanted), pa.int32())))
    rows: dict[int, list[tuple[int, tuple[float, float, float, float]]]] = {}
    for f, tid, box in zip(t["frame"].to_pylist(), t["track_id"].to_pylist(), t["bbox"].to_pylist()):
        rows.setdefault(tid, []).append((f, tuple(box)))
    prompts = []
    for p in fixes.prompts:
        if p.obj_id in wanted:
            before = [r for r in rows.get(p.obj_id, []) if r[0] <= p.frame]
            if before:
                p = p.model_copy(update={"track_box": max(before)[1]})
        prompts.append(p)
    return fixes.model_copy(update={"prompts": prompts})
