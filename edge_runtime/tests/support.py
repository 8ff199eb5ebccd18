"""Small real artifacts for tests and benchmarks: a brightness-driven ONNX model, a bundle, videos.

The model is built with onnx.helper (no torch): map = mean over channels / 255, score = mean of the top 100
map values, so a frame's brightness decides its score and a test knows every verdict in advance.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.manifest import Manifest, write_manifest
from edge_runtime.preprocess import IMAGENET, preprocess_spec
from edge_runtime.scoring import SCORE_DEFINITION, Threshold

SIZE = 64
THRESHOLD = 0.5  # frames brighter than 127.5 are NG


def build_brightness_model(path: Path, size: int = SIZE, batch: int | str = 1, nan_at: int | None = None) -> Path:
    """`nan_at=v`: pixels of brightness exactly v give NaN (0/0), so a gray(v) frame has a NaN map and score —
    an engine that overflowed, made to order."""
    import onnx
    from onnx import TensorProto, helper

    n = size * size
    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["f"], ["m"], axes=[3], keepdims=0),
        helper.make_node("Div", ["m", "c255"], ["p0" if nan_at is not None else "p"]),
    ]
    if nan_at is not None:
        nodes += [
            helper.make_node("Sub", ["m", "nan_at"], ["d"]),
            helper.make_node("Div", ["d", "d"], ["q"]),  # 1, or 0/0 = NaN where m == nan_at
            helper.make_node("Mul", ["p0", "q"], ["p"]),
        ]
    nodes += [
        helper.make_node("Reshape", ["p", "map_shape"], ["anomaly_map"]),
        helper.make_node("Reshape", ["p", "flat_shape"], ["flat"]),
        helper.make_node("TopK", ["flat", "k"], ["top", "idx"], axis=1),
        helper.make_node("ReduceMean", ["top"], ["score"], axes=[1], keepdims=0),
    ]
    inits = [
        helper.make_tensor("c255", TensorProto.FLOAT, [], [255.0]),
        helper.make_tensor("map_shape", TensorProto.INT64, [4], [-1, 1, size, size]),
        helper.make_tensor("flat_shape", TensorProto.INT64, [2], [-1, n]),
        helper.make_tensor("k", TensorProto.INT64, [1], [100]),
    ]
    if nan_at is not None:
        inits.append(helper.make_tensor("nan_at", TensorProto.FLOAT, [], [float(nan_at)]))
    graph = helper.make_graph(
        nodes,
        "brightness",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, [batch, size, size, 3])],
        [
            helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, [batch, 1, size, size]),
            helper.make_tensor_value_info("score", TensorProto.FLOAT, [batch]),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def manifest_of(size: tuple[int, int] = (SIZE, SIZE), **sections) -> Manifest:
    """A manifest with the sections given and the least a reader needs (pre-processing, a threshold)."""
    return Manifest.new({"preprocess": preprocess_spec(size, IMAGENET),
                         "threshold": Threshold(THRESHOLD, 0.01, 10).to_dict(), **sections})


def make_bundle(
    root: Path, extra_models: dict[str, str] | None = None, size: int = SIZE, nan_at: int | None = None
) -> Path:
    """A real bundle: the model, a calibration list, a manifest with hashes (`nan_at`: see the model)."""
    root.mkdir(parents=True, exist_ok=True)
    build_brightness_model(root / "model.onnx", size, nan_at=nan_at)
    models = {"fp32": "model.onnx"}
    for precision, name in (extra_models or {}).items():
        build_brightness_model(root / name, size)
        models[precision] = name
    (root / "calibration").mkdir(exist_ok=True)
    (root / "calibration" / "images.json").write_text('{"images": []}\n')
    manifest = {
        "model": {"backbone": "test-brightness"},
        "input": {
            "name": "image",
            "dtype": "uint8",
            "shape": [1, size, size, 3],
            "layout": "NHWC",
            "color": "BGR",
        },
        "outputs": {
            "anomaly_map": {"dtype": "float32", "shape": [1, 1, size, size]},
            "score": {"dtype": "float32", "shape": [1]},
        },
        "preprocess": preprocess_spec((size, size), IMAGENET),
        "score": SCORE_DEFINITION,
        "threshold": Threshold(THRESHOLD, 0.01, 10, {"0.5": 0.3}).to_dict(),
        "data_fingerprint": "test",
        "versions": {"onnx": "test"},
        "models": models,
    }
    write_manifest(root, Manifest.new(manifest))
    return root


def gray(value: int, h: int = 48, w: int = 80) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def write_video(path: Path, values: list[int], fps: float = 25.0, size: tuple[int, int] = (48, 80)) -> Path:
    """Lossless FFV1, so every frame reads back exactly and the count is exact."""
    h, w = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write FFV1 video to {path}")
    for v in values:
        writer.write(gray(v, h, w))
    writer.release()
    return path


_EDGE_CLI = r"""
import json, os, sys
for name in filter(None, os.environ.get("SLSG_TEST_WITHOUT", "").split(",")):
    sys.modules[name] = None  # `import name` fails, as where it is not installed
from edge_runtime.cli import app
try:
    code = app(sys.argv[1:], standalone_mode=False) or 0  # click returns a typer.Exit's status here
except SystemExit as e:
    code = e.code
print(json.dumps({"torch": "torch" in sys.modules, "code": code}))
"""


#: The runtime's optional packages (extras): a device may have none of them.
OPTIONAL_PACKAGES = ("onnx", "openvino", "tensorrt", "cuda", "pycuda", "triton", "paho", "pymodbus", "asyncua", "gi")


def run_edge_cli(args: list[str], timeout_s: float = 120.0,
                 without: tuple[str, ...] = ()) -> tuple[dict, subprocess.CompletedProcess]:
    """`slsg-edge ARGS` in a fresh interpreter, as on a device with the runtime only (and without the packages named
    in `without`): its exit status and whether it loaded torch (it never may), with the finished process for its
    output."""
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "COLUMNS": "200", "SLSG_TEST_WITHOUT": ",".join(without)}
    proc = subprocess.run([sys.executable, "-c", _EDGE_CLI, *args], capture_output=True, text=True,
                          timeout=timeout_s, env=env)
    lines = proc.stdout.strip().splitlines()
    return (json.loads(lines[-1]) if lines else {"torch": None, "code": proc.returncode}), proc

