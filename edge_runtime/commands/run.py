"""`slsg-edge run`: judge frames from a camera, stream, video or folder with a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def command(
    bundle: Path = typer.Option(..., "--bundle", "-b", help="The model.slsg/ folder made by `slsg export`."),
    camera: Optional[int] = typer.Option(None, "--camera", help="V4L2/USB camera index (e.g. 0)."),
    csi: Optional[int] = typer.Option(None, "--csi", help="Jetson CSI camera sensor id (GStreamer)."),
    rtsp: Optional[str] = typer.Option(None, "--rtsp", help="RTSP stream URL."),
    video: Optional[Path] = typer.Option(None, "--video", help="A video file."),
    images: Optional[Path] = typer.Option(None, "--images", help="A folder of images, read in name order."),
    log: Path = typer.Option(
        Path("events.jsonl"), "--log", help="JSONL event log (appended): one line per frame."
    ),
    save_ng: Optional[Path] = typer.Option(
        None, "--save-ng", help="Save NG frames and heatmap overlays here."
    ),
    quota_mb: float = typer.Option(1024.0, "--quota-mb", help="Disk quota for --save-ng; oldest out first."),
    sensitivity: float = typer.Option(1.0, "--sensitivity", help=">1 flags more, <1 flags fewer."),
    backend: str = typer.Option(
        "auto", "--backend", help="auto | onnx | onnx-int8 | onnx-fp16 | trt-fp16 | trt-int8"
    ),
    threads: Optional[int] = typer.Option(None, "--threads", help="ONNX Runtime intra-op threads."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Stop after this many frames."),
    webhook: Optional[str] = typer.Option(
        None, "--webhook", help="POST each NG frame's record as JSON here."
    ),
    mqtt: Optional[str] = typer.Option(
        None, "--mqtt", help="Publish every verdict: mqtt://host[:port]/topic."
    ),
    reconnect_attempts: int = typer.Option(
        10, "--reconnect-attempts", help="Live sources: attempts to reconnect before giving up."
    ),
    show: bool = typer.Option(False, "--show", help="Show frames (and NG overlays) in a window."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live dashboard."),
    loop: bool = typer.Option(False, "--loop", help="--video: start again at the end."),
    realtime: bool = typer.Option(
        False, "--realtime", help="--video: pace at the file's fps (late frames drop)."
    ),
) -> None:
    """Judge every frame OK or NG; log each one (or why it was dropped); save NG heatmaps."""
    from rich.console import Console
    from rich.text import Text

    from edge_runtime.backends import BackendError
    from edge_runtime.bundle import BundleError
    from edge_runtime.pipeline import InferenceFailed
    from edge_runtime.runner import RunConfig, execute
    from edge_runtime.sources import ReconnectPolicy, SourceError, SourceSpec

    err = Console(stderr=True, soft_wrap=True)

    def fail(message: str, code: int) -> typer.Exit:
        err.print(Text("error: ", style="red") + Text(message))
        return typer.Exit(code)

    try:
        if sensitivity <= 0:
            raise ValueError(f"--sensitivity must be > 0, got {sensitivity}")
        spec = SourceSpec(
            camera=camera, csi=csi, rtsp=rtsp, video=video, images=images, loop=loop, realtime=realtime
        )
        cfg = RunConfig(
            bundle=bundle,
            source=spec,
            log=log,
            save_ng=save_ng,
            quota_mb=quota_mb,
            sensitivity=sensitivity,
            backend=backend,
            threads=threads,
            max_frames=max_frames,
            webhook=webhook,
            mqtt=mqtt,
            show=show,
            quiet=quiet,
            reconnect=ReconnectPolicy(max_attempts=reconnect_attempts),
        )
        result, _ = execute(cfg, Console(stderr=quiet))
    except (BundleError, BackendError, SourceError, ValueError, RuntimeError) as e:
        raise fail(str(e), 1 if isinstance(e, InferenceFailed) else 2) from None
    if result.gave_up:
        raise fail("the source was lost and did not come back; see the event log", 1)
