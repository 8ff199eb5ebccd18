"""SLSG → ONNX: uint8 BGR frames in, (anomaly_map, score, score_<head>…) out, pre-processing inside the graph.

What is exported is `slsg.inference.DeployModel` (the network, the shared normalisation, each head's score and
their fusion), behind one Cast: TensorRT treats uint8 as an I/O-only type, so the uint8 `image` must feed
a Cast to float before anything else touches it (the transpose and colour flip then run on floats).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import helper, numpy_helper
from torch import nn

from edge_runtime.errors import SlsgError
from edge_runtime.preprocess import as_hw
from slsg.inference import DeployModel, load_deploy
from slsg.model import SLSGNet

log = logging.getLogger(__name__)

INPUT_NAME = "image"
#: The outputs every model has; a model with a global head adds `score_global` after `score_slsg`.
OUTPUT_NAMES = ("anomaly_map", "score", "score_slsg")
DEFAULT_OPSET = 17
#: torch.onnx's TorchScript exporter covers opsets 7–20; 17 is what TensorRT 8.5/8.6 read.
OPSET_RANGE = (11, 20)
PLUGIN_MODULE = "slsg.ops.onnx_plugin"


class ExportError(SlsgError, RuntimeError):
    """The model could not be exported as asked; the message says why and what to do."""


@dataclass
class ExportConfig:
    """How the graph is made; recorded in the bundle manifest."""

    opset: int = DEFAULT_OPSET
    dynamic_batch: bool = False
    batch: int = 1                      # the static batch (ignored with dynamic_batch)
    simplify: bool = True               # onnxslim when installed, kept only where parity holds
    fused_graph_attention: bool = False

    def __post_init__(self) -> None:
        lo, hi = OPSET_RANGE
        if not lo <= self.opset <= hi:
            raise ExportError(f"opset {self.opset} is outside {lo}–{hi}: use 17 (TensorRT 8.5/8.6 read ≤ 17)")
        if self.batch < 1:
            raise ExportError(f"batch must be ≥ 1, got {self.batch}")

    def to_dict(self) -> dict:
        return asdict(self)


class Uint8Entry(nn.Module):
    """Cast first, then DeployModel: its own uint8→float cast becomes a no-op on a float input."""

    def __init__(self, deploy: DeployModel) -> None:
        super().__init__()
        self.deploy = deploy

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.deploy(image.to(torch.float32))

    @property
    def output_names(self) -> list[str]:
        return list(self.deploy.output_names)


def as_deploy(model: SLSGNet | DeployModel) -> DeployModel:
    """What is exported: the RUN's whole detector, or the SLSG network alone wrapped as one."""
    return model if isinstance(model, DeployModel) else DeployModel(model)


def deploy_for_run(run_dir: Path) -> DeployModel:
    """The RUN's whole detector in eval mode: network, global head (if fitted) and its score fusion."""

    return load_deploy(Path(run_dir), "cpu").eval()


@contextlib.contextmanager
def graph_kernel(model: SLSGNet, kernel: str) -> Iterator[None]:
    """Export the graph layer with the kernel asked for, whatever the model was trained with."""
    old = model.graph.kernel
    model.graph.kernel = kernel
    try:
        yield
    finally:
        model.graph.kernel = old


def _plugin_module():
    try:
        return importlib.import_module(PLUGIN_MODULE)
    except ImportError as e:
        raise ExportError(f"--fused-graph-attention needs {PLUGIN_MODULE} (the ONNX plugin node of the fused "
                          f"kernel), which cannot be imported here ({e}); export without the option: the "
                          "standard-op graph runs on every TensorRT") from None


def _root_cause(e: Exception) -> str:
    """torch.export wraps the real error in pages of advice; keep the exception it summarises."""

    found = re.search(r"<class '([\w.]+)'>: (.+)", str(e))
    return f"{found.group(1)}: {found.group(2).strip()}" if found else f"{type(e).__name__}: {e}"


def _fused_export(module: nn.Module, x: torch.Tensor, out: Path, cfg: ExportConfig) -> list[str]:
    """The graph layer as one `slsg::GraphAttention` node (a TensorRT ≥ 10.9 plugin; not for ONNX Runtime).

    The plugin's translation table works with the dynamo exporter only, which emits opset ≥ 18.
    """
    plugin = _plugin_module()
    try:
        table = plugin.fused_translation_table()
        plugin.register_onnx_schema()
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (x,), str(out), input_names=[INPUT_NAME],
                              output_names=module.output_names, opset_version=max(cfg.opset, 18),
                              dynamo=True, custom_translation_table=table, external_data=False)
        found = plugin.fused_nodes(onnx.load(str(out)))
    except Exception as e:  # the dynamo exporter raises many kinds; the message is what the user needs
        raise ExportError(f"the fused graph-attention export failed ({_root_cause(e)}); export "
                          "without --fused-graph-attention") from None
    if not found:
        raise ExportError("the fused export holds no GraphAttention node: the model did not take the fused "
                          "kernel path; export without --fused-graph-attention")
    return [f"{plugin.DOMAIN}::{plugin.OP_TYPE}"]


def example_input(size: int | tuple[int, int], batch: int) -> torch.Tensor:
    h, w = as_hw(size)
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (batch, h, w, 3), dtype=torch.uint8, generator=gen)


def _torch_export(module: Uint8Entry, x: torch.Tensor, out: Path, cfg: ExportConfig) -> None:
    names = module.output_names
    dynamic = ({INPUT_NAME: {0: "N"}, **{n: {0: "N"} for n in names}} if cfg.dynamic_batch else None)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # TracerWarnings about shape checks frozen into the static graph
        torch.onnx.export(module, (x,), str(out), input_names=[INPUT_NAME], output_names=names,
                          opset_version=cfg.opset, dynamic_axes=dynamic, do_constant_folding=True,
                          dynamo=False)  # the dynamo exporter silently gives opset 18 when 17 is asked


def _stamp(path: Path, model_cfg: dict, scores: dict, cfg: ExportConfig) -> onnx.ModelProto:
    """Metadata any reader of the bare .onnx can use, then the full checker."""
    m = onnx.load(str(path))
    meta = {"slsg.model": json.dumps(model_cfg), "slsg.scores": json.dumps(scores),
            "slsg.export": json.dumps(cfg.to_dict())}
    del m.metadata_props[:]
    for k, v in meta.items():
        m.metadata_props.add(key=k, value=v)
    m.producer_name = "slsg"
    onnx.save(m, str(path))
    check(path)
    return m


def _shape_only(name: str, producers: dict[str, onnx.NodeProto], constants: set[str]) -> bool:
    """True when `name` is computed from constants and tensor shapes only, never from tensor values."""
    todo, seen = [name], set()
    while todo:
        t = todo.pop()
        if t in seen or t in constants or not t:
            continue
        seen.add(t)
        node = producers.get(t)
        if node is None:  # a graph input: its values, not its shape
            return False
        if node.op_type in ("Shape", "Size"):
            continue
        todo += list(node.input)
    return True


def _prune_dead(model: onnx.ModelProto) -> None:
    graph_outputs = {o.name for o in model.graph.output}
    while True:
        used = {i for n in model.graph.node for i in n.input} | graph_outputs
        dead = [n for n in model.graph.node if not any(o in used for o in n.output)]
        if not dead:
            return
        for n in dead:
            model.graph.node.remove(n)


def freeze_topk_k(path: Path, batches: tuple[int, ...], size: int | tuple[int, int]) -> int:
    """Replace a TopK K computed from shapes with its value (TensorRT 8.5 wants K as an initializer).

    The tracer records `min(k, tensor.shape[-1])` as Shape→Gather→… whenever it cannot prove the shape
    static (EfficientNet's same-padding hides it). Such a K depends on H and W only: it is evaluated once
    per batch size in `batches`, must agree, and is stored as an initializer. Returns how many were frozen.
    """

    model = onnx.load(str(path))
    g = model.graph
    constants = {i.name for i in g.initializer} | {n.output[0] for n in g.node if n.op_type == "Constant"}
    producers = {o: n for n in g.node for o in n.output}
    ks = sorted({n.input[1] for n in g.node if n.op_type == "TopK" and n.input[1] not in constants
                 and _shape_only(n.input[1], producers, constants)})
    if not ks:
        return 0
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(helper.make_tensor_value_info(k, onnx.TensorProto.INT64, None) for k in ks)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    h, w = as_hw(size)
    values = [session.run(ks, {INPUT_NAME: np.zeros((b, h, w, 3), np.uint8)}) for b in batches]
    for i, k in enumerate(ks):
        if any(not np.array_equal(values[0][i], v[i]) for v in values[1:]):
            raise ExportError(f"TopK K ({k}) changes with the batch size; export with a static batch")
        frozen = f"{k}__frozen"
        g.initializer.append(numpy_helper.from_array(np.asarray(values[0][i], np.int64), frozen))
        for n in g.node:
            if n.op_type == "TopK" and n.input[1] == k:
                n.input[1] = frozen
    _prune_dead(model)
    onnx.save(model, str(path))
    return len(ks)


def check(path: Path) -> None:
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"onnx.checker rejects {path}: {e}") from None


def export_onnx(model: SLSGNet | DeployModel, out: Path, cfg: ExportConfig | None = None) -> list[str]:
    """Write `out` (ONNX, checked, with metadata); returns the plugin op names in the graph ([] normally).

    `model` is the whole detector (`DeployModel`: network, global head, fusion) or a bare SLSG network."""
    cfg = cfg or ExportConfig()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    deploy = as_deploy(model).eval().cpu()
    model = deploy.model
    module = Uint8Entry(deploy).eval()
    x = example_input(model.cfg.hw, 2 if cfg.dynamic_batch else cfg.batch)
    kernel = "fused" if cfg.fused_graph_attention else "reference"
    if cfg.fused_graph_attention and cfg.dynamic_batch:
        raise ExportError("--fused-graph-attention exports a static batch: drop --dynamic-batch")
    with torch.no_grad(), graph_kernel(model, kernel):
        if cfg.fused_graph_attention:
            plugin_ops = _fused_export(module, x, out, cfg)
        else:
            plugin_ops = []
            _torch_export(module, x, out, cfg)
            freeze_topk_k(out, (1, 2) if cfg.dynamic_batch else (cfg.batch,), model.cfg.hw)
    _stamp(out, model.cfg.to_dict(), deploy.score_spec(), cfg)
    return plugin_ops


def simplify(src: Path, dst: Path) -> str | None:
    """onnxslim (constant folding, dead-node removal) into `dst`; None when done, else why it was skipped."""
    try:
        import onnxslim
    except ImportError:
        return "onnxslim is not installed (pip install onnxslim): graph left as exported"
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            slim = onnxslim.slim(onnx.load(str(src)))
        onnx.save(slim, str(dst))
        check(dst)
    except Exception as e:  # onnxslim raises many kinds; the unsimplified graph stays valid
        dst.unlink(missing_ok=True)
        return f"onnxslim failed ({type(e).__name__}: {e}): graph left as exported"
    return None
