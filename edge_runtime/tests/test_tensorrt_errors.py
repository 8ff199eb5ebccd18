"""What the TensorRT layer says when something is missing or refused."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import edge_runtime.tensorrt as package
from edge_runtime.tensorrt import versions as availability
from edge_runtime.tensorrt.builder import (
    ParserIssue,
    PhaseTracker,
    fill_node_names,
    format_parser_errors,
    issue_from_trt,
    onnx_node_list,
    op_hint,
)
from edge_runtime.tensorrt.calibrator import load_calibration_frames
from edge_runtime.tensorrt.cuda import check, cudart_module, pycuda_driver, query_device
from edge_runtime.tensorrt.errors import CudaUnavailable, PluginUnsupported, PrecisionError, TensorRTMissing
from edge_runtime.tensorrt.recipe import GRAPH_ATTENTION, check_plugins, required_plugins
from edge_runtime.tensorrt.versions import api_plan
from edge_runtime.tests.support import manifest_of

NO_TRT = not availability.tensorrt_available()


@pytest.mark.skipif(not NO_TRT, reason="checks the message on a machine without TensorRT")
def test_missing_tensorrt_message_names_the_ways_to_install():
    with pytest.raises(TensorRTMissing) as info:
        availability.load_tensorrt()
    text = str(info.value)
    assert "TensorRT is not available" in text and "JetPack" in text
    assert "python3-libnvinfer" in text and "pip install tensorrt" in text


def test_a_stub_tensorrt_package_is_not_taken_for_tensorrt(tmp_path, monkeypatch):
    stub = tmp_path / "tensorrt"
    stub.mkdir()
    (stub / "__init__.py").write_text("")     # what tensorrt-stubs leaves behind: imports, has nothing
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    trt, reason = availability.probe_tensorrt()
    sys.modules.pop("tensorrt", None)
    assert trt is None and "no `tensorrt.Builder`" in reason


def test_importing_the_package_imports_neither_tensorrt_nor_cuda_nor_torch():
    code = textwrap.dedent("""
        import sys
        import edge_runtime.tensorrt as t
        print(sorted(m for m in ("tensorrt", "torch", "cuda", "pycuda") if m in sys.modules))
        t.tensorrt_available()
        print(sorted(m for m in ("torch", "cuda", "pycuda") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "[]"]


def test_cuda_python_results_are_checked():
    assert check((0, 7), "x") == 7
    assert check((0, 1, 2), "x") == (1, 2)
    assert check((0,), "x") is None
    with pytest.raises(CudaUnavailable, match="cudaMalloc failed with 2"):
        check((2, None), "cudaMalloc")


@pytest.mark.skipif(cudart_module() is None and pycuda_driver() is None, reason="no CUDA binding installed")
def test_device_query_answers_or_says_why_not():
    try:
        dev = query_device()
    except CudaUnavailable as exc:       # this machine: cuda-python without a driver
        assert "failed with" in str(exc) or "no CUDA device" in str(exc) or "could not open" in str(exc)
    else:
        assert dev.name and dev.compute_capability[0] >= 5 and dev.total_memory_bytes > 0


def test_graph_attention_plugin_needs_tensorrt_10_9():
    with pytest.raises(PluginUnsupported, match="needs TensorRT ≥ 10.9.*10.3.0 is installed.*standard-op"):
        check_plugins([GRAPH_ATTENTION], api_plan("10.3.0"))
    check_plugins([GRAPH_ATTENTION], api_plan("10.9.0"))
    check_plugins([], api_plan("8.5.2"))


def test_unknown_plugins_are_refused():
    with pytest.raises(PluginUnsupported, match="does not provide"):
        check_plugins(["acme::Thing"], api_plan("10.9.0"))
    assert required_plugins(manifest_of(plugins=[GRAPH_ATTENTION])) == [GRAPH_ATTENTION]
    assert required_plugins(manifest_of()) == []


class _ParserError85:
    """The accessors TensorRT 8.5's IParserError has: no node name or operator."""

    def code(self):
        return "ErrorCode.UNSUPPORTED_NODE"

    def desc(self):
        return "No importer registered for op: TopK"

    def node(self):
        return 2


@pytest.fixture
def tiny_onnx(tmp_path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Cast", ["image"], ["f"], name="to_float", to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["f"], ["m"], name="mean", axes=[3], keepdims=1),
             helper.make_node("TopK", ["m", "k"], ["v", "i"], name="graph_topk", axis=-1)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("image", TensorProto.UINT8, [1, 4, 4, 3])],
        [helper.make_tensor_value_info("v", TensorProto.FLOAT, None)],
        [helper.make_tensor("k", TensorProto.INT64, [1], [2])])
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_parser_errors_name_the_node_and_op_even_on_8_5(tiny_onnx):
    api = api_plan("8.5.2")
    issue = issue_from_trt(_ParserError85(), api)
    assert issue.node_index == 2 and issue.node_name == "" and issue.code == "UNSUPPORTED_NODE"
    [filled] = fill_node_names([issue], onnx_node_list(str(tiny_onnx)))
    text = format_parser_errors([filled], "model.onnx", api)
    assert "TensorRT 8.5.2 could not parse model.onnx" in text
    assert "node #2 'graph_topk' (op TopK): [UNSUPPORTED_NODE] No importer registered" in text
    assert "Hint: TensorRT 8.5.2 needs TopK's K as a constant initializer and K ≤ 3840" in text
    assert "polygraphy" in text


def test_the_topk_hint_follows_the_version():
    assert "constant initializer" in op_hint("TopK", api_plan("8.5.2"))
    later = op_hint("TopK", api_plan("8.6.2"))
    assert "K ≤ 3840" in later and "initializer" not in later


def test_graph_level_parser_error_has_a_generic_hint():
    text = format_parser_errors([ParserIssue("INVALID_GRAPH", "bad", -1, "", "")], "m.onnx", api_plan("10.3.0"))
    assert "graph: [INVALID_GRAPH] bad" in text and "polygraphy" in text


class _FakeProgress:
    """Records what the tracker asks of a rich Progress."""

    def __init__(self):
        self.tasks, self.next_id = {}, 0

    def add_task(self, label, total):
        self.next_id += 1
        self.tasks[self.next_id] = [label, total, 0]
        return self.next_id

    def update(self, task, completed):
        self.tasks[task][2] = completed

    def remove_task(self, task):
        del self.tasks[task]


def test_phase_tracker_nests_advances_and_removes_phases():
    p = _FakeProgress()
    t = PhaseTracker(p)
    t.phase_start("Building engine", None, 3)
    t.phase_start("Tactic selection", "Building engine", 10)
    assert [v[0] for v in p.tasks.values()] == ["Building engine", "  Tactic selection"]
    assert t.step_complete("Tactic selection", 4) is True
    assert p.tasks[2][2] == 5
    t.phase_finish("Tactic selection")
    assert list(p.tasks) == [1]
    t.cancel = True
    assert t.step_complete("Building engine", 0) is False


def test_calibration_frames_must_be_uint8_bgr(tmp_path):
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((5, 4, 4, 3), np.uint8))
    assert load_calibration_frames(good).shape == (5, 4, 4, 3)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((5, 3, 4, 4), np.float32))
    with pytest.raises(PrecisionError, match="uint8 N×H×W×3"):
        load_calibration_frames(bad)


def test_the_tensorrt_package_imports_only_the_runtime_and_nvidia_packages():
    """The legacy calibrator moved here from `calibration`: no arrow from edge_runtime back up."""

    package = Path(availability.__file__).parent
    imported = set()
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    assert not imported & {"torch", "slsg", "export", "calibration", "benchmarks"}, imported


def test_modules_import_only_those_above_them_in_the_package_map():


    order = [line.split()[0] for line in package.__doc__.split("Module map")[1].splitlines()[2:] if line.strip()]
    folder = Path(package.__file__).parent
    assert sorted(order) == sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")
    for rank, name in enumerate(order):
        tree = ast.parse((folder / f"{name}.py").read_text())
        siblings = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1}
        below = siblings - set(order[:rank])
        assert not below, f"{name} imports {below}, listed below it"
