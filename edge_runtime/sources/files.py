"""Video files and image folders as sources: read in order, a file that does not decode is a dropped frame."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterator

import cv2

from edge_runtime.sources.capture import read_frame
from edge_runtime.sources.items import Dropped, Frame, FrameIds, Item, SourceError, SourceEvent

# ---------------------------------------------------------------- files


def image_folder_items(folder: Path, stop: threading.Event) -> Iterator[Item]:
    """Every file in name order; one that does not decode is a dropped frame that names it."""
    ids = FrameIds()
    files = [p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")]
    yield SourceEvent("opened", f"{folder}: {len(files)} files", time.time())
    for p in files:
        if stop.is_set():
            return
        t0 = time.perf_counter()
        image = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        read_ms = (time.perf_counter() - t0) * 1e3
        if image is None:
            yield Dropped(ids.take(), time.time(), f"cannot decode {p.name} as an image", p.name)
        else:
            yield Frame(ids.take(), time.time(), image, p.name, read_ms, time.perf_counter())
    yield SourceEvent("end", f"{folder}: all files read", time.time())


def video_file_items(path: Path, loop: bool, realtime: bool, stop: threading.Event) -> Iterator[Item]:
    """Frames of a file in order; `loop` restarts it; `realtime` paces reads at the file's frame rate."""
    ids, name = FrameIds(), path.name
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SourceError(f"cannot open video {path}: is it a video file OpenCV (FFmpeg) can read?")
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    period = 1.0 / fps if realtime and fps > 0 else 0.0
    yield SourceEvent("opened", f"{path} ({fps:.3g} fps{', paced' if period else ''})", time.time())
    start, n_read, in_pass = time.perf_counter(), 0, 0
    try:
        while not stop.is_set():
            if period and stop.wait(max(0.0, start + n_read * period - time.perf_counter())):
                return
            image, read_ms, _ = read_frame(cap)
            if image is None:
                if loop and in_pass > 0:
                    cap.release()
                    cap = cv2.VideoCapture(str(path))
                    in_pass = 0
                    continue
                yield SourceEvent("end", f"{path}: end of file after {n_read} frames", time.time())
                return
            n_read += 1
            in_pass += 1
            yield Frame(ids.take(), time.time(), image, name, read_ms, time.perf_counter())
    finally:
        cap.release()
