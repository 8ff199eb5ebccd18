"""Does this CPU compute an INT8 file the way the file says? Checked before `--backend auto` may pick the file.

An INT8 file's accuracy gate ran on the CPU that exported it. Integer kernels differ between CPUs: on x86 without
VNNI, ONNX Runtime's (and OpenVINO's) kernels multiply u8×s8 pairs into 16-bit sums that saturate, and a file that
passed its gate on a CPU with VNNI gives other maps there (juice_bottle 512×256, the u8 file on an AVX2 CPU: map r
0.54 against FP32's through the kernels, 0.90 as written). The file run *as written* (ONNX Runtime with its Q/DQ
fusion off) is the file's own arithmetic on any CPU, so a candidate whose map does not follow it here is not the
model that was gated, and `auto` leaves it out with the reason. Where a library edits the file before it runs it
(OpenVINO's 7-bit weights), the reference is the edited graph run as written: the check judges the kernels, and the
edit's cost in accuracy is the export gate's to judge.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

from edge_runtime.backends.base import MAP_OUTPUT, Backend
from edge_runtime.backends.onnxruntime_backend import AS_WRITTEN, cpu_session
from edge_runtime.bundle import Bundle
from edge_runtime.preprocess import bench_frame, prepare
from edge_runtime.statistics import pearson

#: The INT8 gate's floor for an INT8 file's map correlation (`calibration.int8.Int8Config` takes it from here):
#: against FP32 at export, and here against the file's own arithmetic, where a faithful CPU stays far above it.
MIN_MAP_CORRELATION = 0.9
#: Frames the check runs: the bundle's first calibration images (good parts at the model size), else textured ones.
FRAMES = 4


def check_frames(bundle: Bundle) -> np.ndarray:
    """The frames the check runs: good images of the product where the bundle carries its calibration set (they
    drive the activations where the line does), else seeded textured frames."""
    name = (bundle.manifest.calibration or {}).get("tensors")
    frames = calibration_frames(bundle.root / name) if isinstance(name, str) else None
    if frames is not None:
        return frames
    return np.stack([prepare(bench_frame(bundle.size, seed=k), bundle.size) for k in range(FRAMES)])


def calibration_frames(path: Path) -> Optional[np.ndarray]:
    """The first `FRAMES` images of a calibration set's `tensors.npy` (uint8 N×H×W×3), None where there is no such
    file; never unpickled."""
    try:
        tensors = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    if tensors.ndim != 4 or tensors.dtype != np.uint8 or not len(tensors):
        return None
    return np.ascontiguousarray(tensors[:FRAMES])


def is_int8(backend: Backend) -> bool:
    """An INT8 file through a library's integer kernels (the symmetric file in ONNX Runtime runs as written)."""
    model = str(getattr(backend, "model", ""))
    return model.split(":")[-1].startswith("int8") and model not in AS_WRITTEN


def arithmetic(backend: Backend) -> Union[Path, str, bytes]:
    """The graph `backend` computes: its file, or the file as a library edits it before it runs it (OpenVINO's 7-bit
    weights for signed activations: on an AVX-512 VNNI CPU OpenVINO's run of the symmetric file followed that graph
    as written with r 0.96 and the unedited file with 0.68 — the edit's choice, not a kernel's fault)."""
    own = getattr(backend, "arithmetic", None)
    return own() if callable(own) else backend.path


def unfaithful(backend: Backend, frames: np.ndarray) -> Optional[str]:
    """Why `backend` does not compute its INT8 file's own arithmetic on this CPU, or None (it does, or it is no INT8
    candidate). Only the anomaly map is compared: it does not depend on the heads refitted per library."""
    if not is_int8(backend):
        return None
    written = cpu_session(arithmetic(backend), as_written=True)
    name = written.get_inputs()[0].name
    reference = np.concatenate([written.run([MAP_OUTPUT], {name: f[None]})[0] for f in frames])
    maps = np.concatenate([backend.run(f[None]).maps for f in frames])
    if np.allclose(reference, maps, rtol=0.0, atol=1e-6):  # the same maps (also where they are flat)
        return None
    r = pearson(reference, maps)
    if r >= MIN_MAP_CORRELATION:
        return None
    return (f"on this CPU its anomaly maps follow the file's own INT8 arithmetic with r {r:.2f} < "
            f"{MIN_MAP_CORRELATION} ({len(frames)} frames): this CPU's integer kernels do not compute what the file "
            "says (seen: u8×s8 sums that saturate on x86 without VNNI; OpenVINO's 7-bit weights for a file with signed "
            "activations)")
