"""The ``sam2flow`` command line."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from sam2flow.config import ConfigError, PipelineConfig, load_config
from sam2flow.flows.remote import DEPLOYMENT

T = TypeVar("T")

app = typer.Typer(
    help="Segment and track every object of long videos: YOLO finds them, SAM2 tracks them, Prefect runs it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
ckpt_app = typer.Typer(help="List, download or generate model checkpoints.", no_args_is_help=True)
app.add_typer(ckpt_app, name="checkpoints")
refs_app = typer.Typer(help="Reference identities: named objects every subsequence starts out knowing.",
                       no_args_is_help=True)  # fmt: skip
app.add_typer(refs_app, name="references")

log = logging.getLogger("sam2flow")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config (see configs/). Built-in defaults when omitted.")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config value, e.g. --set chunking.length=64 (repeatable)."),
]
CheckpointDirOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--checkpoint-dir",
        help="Allow checkpoints named by path or URI under this folder or prefix (repeatable; adds to "
        "$SAM2FLOW_CHECKPOINT_DIRS). Without it a config may only name checkpoints of checkpoints/manifest.yaml.",
    ),
]
StitchSetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        help="Override a stitching, render or zone event setting, e.g. --set render.alpha=0.3 (repeatable).",
    ),
]


def _prefect_env() -> None:
    """Settings every flow run from the command line gets, unless the environment sets them."""
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "sam2flow")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Prefect gives its temporary server 20 s to start; a busy machine (another run's temporary server migrating the
    # same SQLite database, a test suite beside it) can need more, and the run then died before doing anything.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def _allow_checkpoint_dirs(dirs: list[str] | None) -> None:
    """Add the operator's --checkpoint-dir folders to this process's (and its workers') allowed folders."""
    from sam2flow.io.checkpoints import CHECKPOINT_DIRS_ENV

    if dirs:
        current = [d for d in os.environ.get(CHECKPOINT_DIRS_ENV, "").split(os.pathsep) if d]
        os.environ[CHECKPOINT_DIRS_ENV] = os.pathsep.join([*current, *dirs])


def _fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=2)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _load(config: Path | None, overrides: list[str] | None) -> PipelineConfig:
    try:
        return load_config(config, overrides)
    except ConfigError as exc:
        _fail(str(exc))


def _user_errors() -> tuple[type[BaseException], ...]:
    """What the commands report as one message and exit code 2 (see `sam2flow.errors`)."""
    from sam2flow.errors import InputError

    return (InputError, FileNotFoundError)


def _stoppable(fn: Callable[..., T], *args: Any) -> T:
    """Run a flow so that SIGINT or SIGTERM stops it cleanly (see `sam2flow.control.stopping`): exit code 130 or
    143, with how to resume."""
    from sam2flow.control import stopping

    try:
        return stopping.supervise(fn, *args)
    except stopping.RunStopped as exc:
        typer.secho(
            f"{exc}: nothing was marked complete. To resume, run the same command again: the subsequences already "
            "segmented are kept and reused.",
            err=True,
            fg=typer.colors.YELLOW,
        )
        raise typer.Exit(code=exc.exit_code) from None


def _preflight(video: str, out: str, cfg: PipelineConfig) -> None:
    """Fail in seconds, before any flow starts: the input, its frame size, the device, room to work, checkpoints."""
    from sam2flow.control import preflight

    preflight.check_run(video, out, cfg)
    preflight.check_models(cfg)
    preflight.check_references(cfg)


@app.command()
def run(
    video: Annotated[str, typer.Argument(help="Input video: a local path or an fsspec URI (s3://…, gs://…).")],
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder or URI; results go to OUT/<video_id>/.")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    checkpoint_dir: CheckpointDirOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Process one video with the process_video Prefect flow (no server needed: Prefect's ephemeral mode).

    Writes masks.parquet, tracks.parquet, annotated.mp4, manifest.json and, last, _SUCCESS under OUT/<video_id>/.
    Progress is logged per subsequence and overall, on the terminal and in the Prefect run logs.
    """
    _setup_logging(verbose)
    _allow_checkpoint_dirs(checkpoint_dir)
    cfg = _load(config, set_)
    errors = _user_errors()
    from sam2flow.io.storage import absolute

    video = absolute(video)  # the flow's parameter and the manifest name the same file from any folder
    try:
        _preflight(video, out, cfg)
    except errors as exc:
        _fail(str(exc))
    _prefect_env()
    from sam2flow.errors import describe, is_permanent
    from sam2flow.flows import launch

    t0 = time.perf_counter()
    try:
        out_dir = _stoppable(launch.run_video, video, out, cfg)
    except errors as exc:
        _fail(str(exc))
    except OSError as exc:
        if not is_permanent(exc):
            raise
        _fail(describe(exc))
    typer.secho(f"done in {time.perf_counter() - t0:.1f}s: {out_dir}", fg=typer.colors.GREEN)


@app.command()
def archive(
    source: Annotated[str, typer.Argument(help="Folder or fsspec URI (s3://bucket/prefix) holding the videos.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder or URI; each video goes to OUT/<video_id>/.")],
    pattern: Annotated[
        str, typer.Option("--pattern", "-p", help="Glob under SOURCE; '**/*.mp4' includes sub-folders.")
    ] = "*.mp4",
    config: ConfigOpt = None,
    set_: SetOpt = None,
    max_in_flight: Annotated[
        int | None,
        typer.Option(
            "--max-in-flight", min=1, max=16, help="Videos at once at most; default: as many as keep every worker busy."
        ),
    ] = None,
    checkpoint_dir: CheckpointDirOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Process every matching video of an archive with the process_archive flow.

    Videos already done with the same config are skipped; a file that cannot be processed fails alone and is
    reported with its reason. Exit code 0 when none failed, 1 when some did, 2 on bad arguments.
    """
    from sam2flow.sources.archive import list_videos

    _setup_logging(verbose)
    _allow_checkpoint_dirs(checkpoint_dir)
    cfg = _load(config, set_)
    from sam2flow.control import preflight

    try:
        videos = list_videos(source, pattern)
        preflight.check_archive(out, cfg)
    except _user_errors() as exc:
        _fail(str(exc))
    if not videos:
        _fail(f"no file under {source} matches {pattern!r}")
    _prefect_env()
    from sam2flow.flows import launch

    outcome = _stoppable(launch.run_archive, source, out, pattern, cfg, max_in_flight)
    if outcome.reports is None:
        _fail(outcome.message)
    for r in outcome.reports:
        colour = {"done": typer.colors.GREEN, "skipped": typer.colors.BLUE}.get(r.status, typer.colors.RED)
        detail = r.out_dir if r.status != "failed" else r.reason
        typer.secho(f"{r.status:8} {r.video}  {detail}", fg=colour)
    _review_first(outcome.reports)
    typer.echo(outcome.message)
    raise typer.Exit(code=1 if any(r.status == "failed" for r in outcome.reports) else 0)


def _review_first(reports: list[Any]) -> None:
    """Print the finished videos worst first by their review lists (at most 10)."""
    from sam2flow.sources.archive import review_first

    worst = review_first(reports)
    if worst:
        typer.echo("review first (highest open review score):")
    for row in worst[:10]:
        typer.echo(f"  {row['top_score']:.2f} {row['top_kind'] or '-':9} {row['open_items']:>4} open  {row['review']}")


@app.command()
def serve(
    config: ConfigOpt = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--source", help="Archive the scheduled process_archive run reads; new-video events are taken under it."
        ),
    ] = None,
    out: Annotated[
        str | None, typer.Option("--out", "-o", help="Where runs write by default (and the scheduled run).")
    ] = None,
    pattern: Annotated[str, typer.Option("--pattern", "-p", help="Glob of the scheduled run.")] = "*.mp4",
    cron: Annotated[
        str | None, typer.Option("--cron", help="Schedule process_archive, e.g. '0 2 * * *' (02:00 daily).")
    ] = None,
    input_root: Annotated[
        list[str] | None, typer.Option("--input-root", help="Another folder or prefix runs may read (repeatable).")
    ] = None,
    output_root: Annotated[
        list[str] | None, typer.Option("--output-root", help="Another folder or prefix runs may write (repeatable).")
    ] = None,
    checkpoint_dir: CheckpointDirOpt = None,
    limit: Annotated[
        int,
        typer.Option(
            "--limit",
            min=1,
            max=16,
            help="Flow runs at once on this machine; more (e.g. a burst of new-video events) wait their turn. Each "
            "run loads the models on the GPUs it uses; an archive run's videos share one set.",
        ),
    ] = 1,
) -> None:
    """Serve the process_video and process_archive deployments from this machine, without a work pool.

    Runs come from the Prefect UI or API (and the optional cron schedule) and execute here, on this machine's GPUs,
    at most --limit at once.
    Their parameters are untrusted: runs may only read videos under --source/--input-root and write under
    --out/--output-root, and name checkpoints by path only under --checkpoint-dir. Needs a Prefect server (set
    PREFECT_API_URL); see infra/README.md for the scaled-out setup with work pools.
    """
    from sam2flow.io import access

    _setup_logging(False)
    _allow_checkpoint_dirs(checkpoint_dir)
    cfg = _load(config, None)
    if cron and not (source and out):
        _fail("--cron needs --source and --out (what the scheduled archive run reads and writes)")
    inputs = [*([source] if source else []), *(input_root or [])]
    outputs = [*([out] if out else []), *(output_root or [])]
    if not inputs or not outputs:
        _fail("serve needs --source (or --input-root) and --out (or --output-root): runs started from the UI or by "
              "events may only read and write under folders you name")  # fmt: skip
    access.add_roots(access.INPUT_ROOTS_ENV, inputs)
    access.add_roots(access.OUTPUT_ROOTS_ENV, outputs)
    _prefect_env()
    from sam2flow.flows import launch

    launch.serve(cfg, source, out, pattern, cron, limit)


@app.command()
def stitch(
    run_dir: Annotated[str, typer.Argument(help="The output folder of a run: OUT/<video_id> (local path or URI).")],
    iou: Annotated[
        float | None, typer.Option("--iou", help="New stitching.iou_threshold (mean mask IoU over the overlap).")
    ] = None,
    set_: StitchSetOpt = None,
    render: Annotated[
        bool, typer.Option("--render", help="Also re-render annotated.mp4 with the new track ids.")
    ] = False,
) -> None:
    """Rebuild masks.parquet and tracks.parquet from the run's part files, without running any model.

    Only stitching.*, render.* and zone event settings can change. Without --render, annotated.mp4 keeps the old
    track ids and the manifest marks it stale.
    """
    from sam2flow.stages.stitch.restitch import restitch

    _setup_logging(False)
    overrides = list(set_ or []) + ([f"stitching.iou_threshold={iou}"] if iou is not None else [])
    try:
        result = restitch(run_dir, overrides, rerender=render)
    except _user_errors() as exc:
        _fail(str(exc))
    typer.secho(f"{result.tracks} track(s), {result.rows} mask rows → {run_dir}", fg=typer.colors.GREEN)


@app.command()
def evaluate(
    pred: Annotated[str, typer.Argument(help="A run's output folder (OUT/<video_id>) or its masks.parquet.")],
    gt: Annotated[Path, typer.Argument(help="Ground truth: a DAVIS folder of indexed PNGs, or a MOT .txt file.")],
    frames: Annotated[
        int | None, typer.Option("--frames", help="Frames in the video (default: the last seen).")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the metrics to this JSON file.")] = None,
) -> None:
    """Score tracks against ground truth: HOTA, DetA, AssA, IDF1, ID switches, MOTA, and J&F for masks (TrackEval).

    Evaluation is class-agnostic. DAVIS ground truth (one indexed PNG per frame, 0 background, 255 void) is
    compared by mask IoU; MOT ground truth (frame,id,x,y,w,h with frames from 1) by box IoU.
    """
    from sam2flow.readers.evaluate import EvaluationError
    from sam2flow.readers.evaluate import evaluate as run_evaluation

    try:
        metrics = run_evaluation(pred, gt, frames)
    except EvaluationError as exc:
        _fail(str(exc))
    width = max(map(len, metrics), default=12)
    for key, value in metrics.items():
        typer.echo(f"{key:{width}} {value:.4f}" if isinstance(value, float) else f"{key:{width}} {value}")
    if json_out is not None:
        json_out.write_text(json.dumps(metrics, indent=2))


@app.command()
def review(
    run_dir: Annotated[str, typer.Argument(help="The output folder of a run: OUT/<video_id> (local path or URI).")],
    top: Annotated[int, typer.Option("--top", "-n", min=1, help="How many items to show.")] = 20,
    all_items: Annotated[bool, typer.Option("--all", help="Also show items already marked reviewed.")] = False,
    mark: Annotated[
        list[str] | None, typer.Option("--mark", help="Mark the item with this key reviewed (repeatable).")
    ] = None,
    unmark: Annotated[
        list[str] | None, typer.Option("--unmark", help="Take the reviewed mark off this item (repeatable).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the items as JSON lines instead.")] = False,
) -> None:
    """Show the run's review list: the moments most likely wrong, best first (from review.parquet).

    Each item gives its rank, score (0-1, how likely an error), kind, frames, tracks and the evidence. Marks are kept
    in the run's corrections.yaml, so they survive `sam2flow stitch`.
    """
    from dataclasses import asdict

    from sam2flow.readers.review import read_review
    from sam2flow.stages.stitch.review import set_reviewed

    try:
        if mark:
            set_reviewed(run_dir, list(mark), True)
        if unmark:
            set_reviewed(run_dir, list(unmark), False)
        rows = read_review(run_dir)
    except _user_errors() as exc:
        _fail(str(exc))
    shown = [r for r in rows if all_items or not r.reviewed][:top]
    if json_out:
        for r in shown:
            typer.echo(json.dumps(asdict(r)))
        return
    done = sum(r.reviewed for r in rows)
    typer.echo(f"{len(rows)} item(s), {done} reviewed; showing {len(shown)}")
    typer.echo(f"{'rank':>4} {'score':>5} {'kind':9} {'frames':>13} {'time':>8} {'tracks':9} evidence")
    for r in shown:
        frames = f"{r.frame_start}-{r.frame_stop - 1}"
        tracks = ",".join(map(str, r.track_ids)) or "-"
        flag = "✓ " if r.reviewed else ""
        typer.echo(
            f"{r.rank:>4} {r.score:5.2f} {r.kind:9} {frames:>13} {r.time_start:7.1f}s {tracks:9} {flag}{r.evidence}"
        )
    if shown:
        typer.echo(f"mark one reviewed: sam2flow review {run_dir} --mark '{shown[0].key}'")


@app.command()
def watch(
    source: Annotated[
        str, typer.Argument(help="A stream URL (rtsp, rtmp, http(s)/HLS, tcp/udp MPEG-TS, srt) or a local folder.")
    ],
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder; results go to OUT/<stream_id>/.")],
    segment_seconds: Annotated[
        float, typer.Option("--segment-seconds", min=1.0, max=3600.0, help="Length of each recorded segment.")
    ] = 60.0,
    max_in_flight: Annotated[int, typer.Option("--max-in-flight", min=1, max=8, help="Segments at once.")] = 1,
    pattern: Annotated[str, typer.Option("--pattern", "-p", help="A folder's files to take.")] = "*.mp4",
    idle_exit: Annotated[
        float | None, typer.Option("--idle-exit", min=1.0, help="Folder: stop after this many seconds without a file.")
    ] = None,
    retries: Annotated[
        int, typer.Option("--retries", min=0, max=100, help="Reconnections in a row before giving a stream up.")
    ] = 5,
    settle: Annotated[
        float, typer.Option("--settle-seconds", min=0.0, help="Folder: take a file once unchanged this long.")
    ] = 5.0,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    checkpoint_dir: CheckpointDirOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Process a live source as it records, with the process_stream flow.

    A stream is recorded without re-encoding into segments of --segment-seconds under OUT/<stream_id>/segments/;
    each closed segment (or each new file of a watched folder) is processed as its own run under
    OUT/<stream_id>/runs/, and OUT/<stream_id>/tracks.parquet links the tracks of consecutive segments. A dropped
    connection is retried with backoff. Exit code 0 once the source has ended and every segment is processed, 1
    when a segment failed or the stream was given up, 2 on bad arguments.
    """
    from sam2flow.control import preflight
    from sam2flow.sources.watch import check_source

    _setup_logging(verbose)
    _allow_checkpoint_dirs(checkpoint_dir)
    cfg = _load(config, set_)
    try:
        check_source(source, out)
        preflight.check_archive(out, cfg)
        preflight.check_references(cfg)
    except _user_errors() as exc:
        _fail(str(exc))
    _prefect_env()
    from sam2flow.flows import launch

    outcome = _stoppable(
        launch.run_stream, source, out, cfg, segment_seconds, max_in_flight, pattern, idle_exit, settle, retries
    )
    if outcome.reports is None:
        _fail(outcome.message)
    for r in outcome.reports:
        colour = {"done": typer.colors.GREEN, "skipped": typer.colors.BLUE}.get(r.status, typer.colors.RED)
        typer.secho(f"{r.status:8} {r.video}  {r.out_dir if r.status != 'failed' else r.reason}", fg=colour)
    typer.echo(outcome.message)
    failed = any(r.status == "failed" for r in outcome.reports) or "given up" in outcome.message
    raise typer.Exit(code=1 if failed else 0)


@app.command()
def sweep(
    video: Annotated[str, typer.Argument(help="Input video: a local path or an fsspec URI.")],
    gt: Annotated[str, typer.Option("--gt", help="Its ground truth: a DAVIS folder of indexed PNGs or a MOT .txt.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder or URI (the run goes to OUT/<video_id>/).")],
    grid: Annotated[
        list[str],
        typer.Option(
            "--grid",
            "-g",
            help="A config key and the values to try, e.g. --grid stitching.iou_threshold=0.2,0.3,0.5 (repeatable; "
            "every combination runs, at most 64).",
        ),
    ],
    metric: Annotated[
        str, typer.Option("--metric", help="Picks the best setting: HOTA, DetA, AssA, IDF1, IDSW, MOTA, Recall, J&F.")
    ] = "HOTA",
    config: ConfigOpt = None,
    set_: SetOpt = None,
    checkpoint_dir: CheckpointDirOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Try every combination of the --grid values on one video and score each against its ground truth.

    Settings that change the segmentation run the process_video flow (part files segmented before with the same
    settings are reused); stitching, render and zone event settings re-stitch the same part files with no model.
    Writes OUT/sweeps/<video_id>.parquet (one row per setting, best first) and leaves the best setting's results
    in OUT/<video_id>/; the Prefect run has the table as an artifact.
    """
    from sam2flow.readers.evaluate import load_ground_truth
    from sam2flow.sources import sweep as sweeps

    _setup_logging(verbose)
    _allow_checkpoint_dirs(checkpoint_dir)
    cfg = _load(config, set_)
    if metric not in sweeps.METRICS:
        _fail(f"--metric {metric!r} is not one of {', '.join(sweeps.METRICS)}")
    try:
        parsed = sweeps.parse_grid(grid)
        settings = sweeps.expand(cfg, parsed)
        load_ground_truth(gt)
        for setting in settings:
            _preflight(video, out, setting.config)
    except _user_errors() as exc:
        _fail(str(exc))
    _prefect_env()
    from sam2flow.flows import launch

    try:
        rows = _stoppable(launch.run_sweep, video, gt, out, parsed, cfg, metric)
    except _user_errors() as exc:
        _fail(str(exc))
    table = sweeps.table_rows(rows, metric)
    keys = [axis.key for axis in parsed]
    typer.echo("  ".join([f"{'#':>3}", *(f"{k:>{max(len(k), 8)}}" for k in keys), f"{'how':10}", *(
        f"{m:>6}" for m in sweeps.METRICS)]))  # fmt: skip
    for row in table:
        cells = [f"{row['setting']:>3}", *(f"{row[k]:>{max(len(k), 8)}}" for k in keys), f"{row['how']:10}"]
        cells += [f"{row[m]:6.3f}" if row[m] is not None else f"{'-':>6}" for m in sweeps.METRICS]
        typer.echo("  ".join(cells))
    top = table[0]
    typer.secho(
        f"best by {metric}: setting {top['setting']} ({', '.join(f'{k}={top[k]}' for k in keys)})",
        fg=typer.colors.GREEN,
    )


def _track_list(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        _fail(f"--tracks {text!r}: give track ids separated by commas, e.g. --tracks 1,2,5")


@app.command()
def export(
    run_dir: Annotated[str, typer.Argument(help="The output folder of a finished run: OUT/<video_id>.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="coco | mot | davis | yolo-seg | cvat (see the README).")],
    dest: Annotated[
        str | None,
        typer.Option("--dest", "-d", help="Folder or URI to write (default OUT/<video_id>/export/<format>)."),
    ] = None,
    frames: Annotated[
        str | None, typer.Option("--frames", help="Frames a:b (b excluded; either side may be left out).")
    ] = None,
    tracks: Annotated[str | None, typer.Option("--tracks", help="Only these track ids, e.g. 1,2,5.")] = None,
) -> None:
    """Export a finished run's tracks for other tools: COCO JSON (RLE masks, track ids), MOTChallenge/MOTS text,
    DAVIS indexed PNGs, an Ultralytics YOLO segmentation dataset, or CVAT for video 1.1 XML.

    The export streams frame by frame and appears under its final name only when complete (export.json last).
    """
    from sam2flow.export import export_run

    _setup_logging(False)
    try:
        r = export_run(run_dir, fmt, dest, frames, _track_list(tracks))
    except _user_errors() as exc:
        _fail(str(exc))
    typer.secho(
        f"{r.format}: {r.annotations} annotation(s) of {r.tracks} track(s) on {r.frames} frame(s), {r.files} file(s), "
        f"{r.bytes / 1e6:.2f} MB in {r.seconds:.1f}s → {r.dest}",
        fg=typer.colors.GREEN,
    )


@app.command()
def report(
    run_dir: Annotated[str, typer.Argument(help="The output folder of a finished run: OUT/<video_id>.")],
) -> None:
    """Rebuild OUT/<video_id>/report/ (timeline, charts, contact sheet, report.html) from the run's Parquet files,
    without any model."""
    from sam2flow.report import build_report

    _setup_logging(False)
    try:
        r = build_report(run_dir)
    except _user_errors() as exc:
        _fail(str(exc))
    typer.secho(f"report of {r.tracks} track(s) on {r.frames} frame(s) in {r.seconds:.1f}s → {r.path}",
                fg=typer.colors.GREEN)  # fmt: skip


@app.command()
def studio(
    root: Annotated[
        list[str],
        typer.Option("--root", "-r", help="A folder (or URI prefix) the studio may read and write (repeatable)."),
    ],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    host: Annotated[
        str, typer.Option("--host", help="Interface to listen on (127.0.0.1: this machine only).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8765,
    checkpoint_dir: CheckpointDirOpt = None,
    deployment: Annotated[
        str,
        typer.Option(
            "--deployment",
            help="Run goes through this deployment when PREFECT_API_URL names a server that serves it "
            "(`sam2flow serve`); otherwise, or with --local, Run starts a local `sam2flow run`.",
        ),
    ] = DEPLOYMENT,
    local: Annotated[bool, typer.Option("--local", help="Always run locally, even when a server is set.")] = False,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help="Also answer requests for this Host name (NAME or NAME:PORT), e.g. a reverse proxy's (repeatable).",
        ),
    ] = None,
    no_token: Annotated[
        bool,
        typer.Option("--no-token", help="Do not ask for the session token (only where nobody else can reach it)."),
    ] = False,
) -> None:
    """Prompt videos by pointing and review finished runs in the browser (open the address it prints).

    The prompt page clicks objects (points, boxes; each object's number is its track id) and draws zones on any
    frame, previews SAM2's masks with the config's checkpoint, tracks them over the next frames in the page, saves a
    config `sam2flow run --config` accepts and runs it (through the process_video deployment when a Prefect server
    is configured, otherwise locally). The review page plays a run's video with its masks, steps through the
    ranked review list, saves corrections (merge, split, delete, class, points and boxes) to
    OUT/<video_id>/corrections.yaml, applies them or runs the video again. Press ? on a page for its shortcuts.
    Only files under the --root folders are served or written. Any web page you open can reach a local server, so
    the studio answers only requests for its own Host (plus --allow-host), takes changes only from its own pages, and
    wants the session token in the address it prints (kept in a cookie after the first visit).
    """
    from sam2flow import studio as studio_app
    from sam2flow.control import preflight
    from sam2flow.studio.guard import Guard, valid_host
    from sam2flow.studio.roots import Roots

    _setup_logging(False)
    _allow_checkpoint_dirs(checkpoint_dir)
    cfg = _load(config, set_)
    for name in allow_host or []:
        if not valid_host(name):
            _fail(f"--allow-host {name!r}: give a host name, optionally with a port (NAME or NAME:PORT)")
    try:
        Roots(root)
        preflight.check_models(cfg)
    except _user_errors() as exc:
        _fail(str(exc))
    base = studio_app.base_data(config) if config is not None and not set_ else cfg.model_dump(mode="json")
    guard = Guard(host, port, tuple(allow_host or ()), None) if no_token else Guard(host, port, tuple(allow_host or ()))
    typer.secho(f"sam2flow studio on {guard.url()} (roots: {', '.join(root)}); Ctrl-C stops it", fg=typer.colors.GREEN)
    studio_app.serve(root, cfg, base, guard, cfg.runtime.device, None if local else deployment)


@app.command()
def probe(video: Annotated[str, typer.Argument(help="Local video file.")]) -> None:
    """Print what ffprobe says about a video (frames, size, fps) as JSON."""
    from sam2flow.io.video import VideoError
    from sam2flow.io.video import probe as probe_video

    try:
        typer.echo(json.dumps(probe_video(video).to_dict(), indent=2))
    except VideoError as exc:
        _fail(str(exc))


@app.command()
def sample(
    path: Annotated[Path, typer.Argument(help="Where to write the clip, e.g. sample.mp4.")] = Path("sample.mp4"),
    frames: Annotated[int, typer.Option("--frames", min=1, max=100_000, help="Number of frames.")] = 96,
    width: Annotated[int, typer.Option("--width", min=64, max=7680, help="Width in pixels.")] = 960,
    height: Annotated[int, typer.Option("--height", min=64, max=4320, help="Height in pixels.")] = 540,
) -> None:
    """Write a short synthetic clip (three textured objects moving over a textured floor, 24 fps) to try sam2flow
    on, e.g. `sam2flow sample sample.mp4 && sam2flow run sample.mp4 --config configs/smoke.yaml --out out`."""
    from sam2flow.io.sample import write_sample
    from sam2flow.io.video import VideoError

    try:
        write_sample(path, frames, width, height)
    except (VideoError, OSError) as exc:
        _fail(f"could not write {path}: {exc}")
    typer.secho(f"wrote {path} ({frames} frames, {width}x{height}, 24 fps)", fg=typer.colors.GREEN)


@app.command("config")
def show_config(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Print the validated configuration (the file plus overrides, with every default filled in) as YAML."""
    import yaml

    typer.echo(yaml.safe_dump(_load(config, set_).model_dump(mode="json"), sort_keys=False))


@ckpt_app.command("list")
def ckpt_list() -> None:
    """List the models named in checkpoints/manifest.yaml and whether each is cached."""
    from sam2flow.io.checkpoints import cache_dir, hub_cached, load_manifest

    for name, e in load_manifest().items():
        cached = hub_cached(e) if e.hub else (cache_dir() / Path(e.url).name).exists()
        sha = e.sha256 or (
            "the hub's (checked on fetch)" if e.hub else "unknown (not published: downloads are not verified)"
        )
        typer.echo(f"{e.kind:5} {name:24} {'cached' if cached else 'not cached':10} sha256={sha} {e.url}")
        if e.hub:
            typer.echo(
                f"      gated: request access on https://huggingface.co/{e.hub}, then `hf auth login` or HF_TOKEN"
            )
        if e.licence:
            typer.echo(f"      licence: {e.licence}")


@ckpt_app.command("fetch")
def ckpt_fetch(
    names: Annotated[list[str], typer.Argument(help="Manifest names, e.g. sam2.1_hiera_tiny yolo11n.")],
) -> None:
    """Download named checkpoints into the cache (with a progress bar) and verify them."""
    from sam2flow.io.checkpoints import CheckpointError, load_manifest
    from sam2flow.models.weights import resolve

    _setup_logging(False)
    manifest = load_manifest()
    for name in names:
        if name not in manifest:
            _fail(f"unknown checkpoint {name!r}; see `sam2flow checkpoints list`")
        try:
            r = resolve(name, manifest[name].kind)
        except CheckpointError as exc:
            _fail(str(exc))
        typer.echo(f"{name}: {r.path} sha256={r.sha256} verified={r.verified}")


@ckpt_app.command("random")
def ckpt_random(
    names: Annotated[
        list[str] | None, typer.Argument(help="Manifest names (default: sam2.1_hiera_tiny yolo11n).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rewrite files that already exist.")] = False,
) -> None:
    """Write randomly initialised checkpoints of the real configs (for offline tests and benchmarks).

    configs/smoke.yaml refers to them as random:<name>; runs using them record random_weights: true.
    """
    from sam2flow.io.checkpoints import cache_dir, load_manifest
    from sam2flow.models.weights import resolve

    _setup_logging(False)
    manifest = load_manifest()
    for name in names or ["sam2.1_hiera_tiny", "yolo11n"]:
        if name not in manifest:
            _fail(f"unknown checkpoint {name!r}; see `sam2flow checkpoints list`")
        path = cache_dir() / "random" / f"{name}.pt"
        if force:
            path.unlink(missing_ok=True)
        r = resolve(f"random:{name}", manifest[name].kind)
        typer.echo(f"random:{name}: {r.path} sha256={r.sha256}")


@refs_app.command("make")
def refs_make(
    run_dir: Annotated[str, typer.Argument(help="A finished run: OUT/<video_id>.")],
    frames: Annotated[str, typer.Option("--frames", help="Frames to take, e.g. 10,250 (at most 8).")],
    tracks: Annotated[str, typer.Option("--tracks", help="Tracks to name, e.g. 1:mouse_a,2:mouse_b.")],
    dest: Annotated[Path, typer.Option("--dest", "-d", help="New folder for the library.")],
) -> None:
    """Make a reference library from a finished run: the listed frames of its video with the listed tracks' masks.

    Set references.path to the folder: every subsequence of later runs then starts with these frames as SAM2
    conditioning frames, and each named track keeps its name and a fixed track id (1, 2, … in --tracks order).
    """
    from sam2flow.readers.references import make_references, parse_tracks

    _setup_logging(False)
    try:
        picked = [int(f) for f in frames.split(",") if f.strip()]
    except ValueError:
        _fail(f"--frames {frames!r} must be frame numbers separated by commas, e.g. 10,250")
    try:
        path = make_references(run_dir, picked, parse_tracks(tracks), dest)
    except _user_errors() as exc:
        _fail(str(exc))
    typer.secho(f"reference library → {path}; use it with --set references.path={path}", fg=typer.colors.GREEN)


def main() -> None:
    """Entry point of the ``sam2flow`` console script: whatever ends it, no process it started outlives it."""
    from sam2flow.control import reaper

    reaper.guard()
    app()


if __name__ == "__main__":
    main()
