"""TensorRT version → API plan, for every version the DESIGN names (no TensorRT needed)."""

import ast
from dataclasses import fields
from pathlib import Path

import pytest

from edge_runtime.tensorrt.errors import UnsupportedTensorRT
from edge_runtime.tensorrt.versions import ApiPlan, TrtVersion, api_plan


@pytest.mark.parametrize("text, expected", [
    ("8.5.2.2", TrtVersion(8, 5, 2, 2)), ("10.3.0", TrtVersion(10, 3, 0)), ("11.0", TrtVersion(11, 0)),
    ("10.9.0.34+cuda12.8", TrtVersion(10, 9, 0, 34)),
])
def test_version_strings_parse(text, expected):
    assert TrtVersion.parse(text) == expected


def test_garbage_version_is_refused():
    with pytest.raises(ValueError, match="not a TensorRT version"):
        TrtVersion.parse("tensorrt")


def test_versions_order_numerically_not_lexically():
    assert TrtVersion.parse("10.3") > TrtVersion.parse("8.6.1")
    assert TrtVersion.parse("10.10") > TrtVersion.parse("10.9")


@pytest.mark.parametrize(
    "ver, batch_flag, execute, legacy, strongly_only, aot, monitor, dla, node_names, topk_constant", [
    ("8.5.2.2", True, "v2", True, False, False, False, True, False, True),      # JetPack 5.1
    ("8.6.2.3", True, "v2", True, False, False, False, True, False, False),     # JetPack 6.0
    ("10.3.0.30", False, "v3", True, False, False, True, True, True, False),    # JetPack 6.1/6.2
    ("10.7.0", False, "v3", True, False, False, True, True, True, False),       # last 10.x with DLA
    ("10.9.0", False, "v3", True, False, True, True, False, True, False),       # AOT plugins
    ("10.16.1", False, "v3", True, False, True, True, False, True, False),
    ("11.1.0", False, "v3", False, True, True, True, False, True, False),       # strongly typed only
    ("11.4.1", False, "v3", False, True, True, True, True, True, False),        # DLA again (AGX Orin)
])
def test_api_plan_per_version(ver, batch_flag, execute, legacy, strongly_only, aot, monitor, dla, node_names,
                              topk_constant):
    plan = api_plan(ver)
    assert plan.explicit_batch_flag is batch_flag
    assert plan.execute == execute
    assert plan.legacy_calibrator is legacy
    assert plan.strongly_typed_only is strongly_only
    assert plan.aot_plugins is aot
    assert plan.progress_monitor is monitor
    assert plan.dla is dla
    assert plan.parser_node_names is node_names
    assert plan.topk_constant_k is topk_constant


def test_every_api_plan_field_is_read_by_the_code_that_calls_tensorrt():
    """A field nobody branches on is a fact nobody checked: the dead fields of the first version."""


    package = Path(api_plan.__code__.co_filename).parent
    read = set()
    for path in package.glob("*.py"):
        if path.name == "versions.py":
            continue
        read |= {n.attr for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Attribute)}
    unused = [f.name for f in fields(ApiPlan) if f.name not in read and f.name != "version"]
    assert not unused, f"ApiPlan fields nothing reads: {unused}"


def test_tensorrt_older_than_jetpack_5_1_is_refused_with_the_way_out():
    with pytest.raises(UnsupportedTensorRT, match="needs TensorRT ≥ 8.5.*ONNX Runtime"):
        api_plan("8.4.3")


def test_plan_serialises_for_the_sidecar():
    d = api_plan("10.3.0").to_dict()
    assert d["version"] == "10.3.0" and d["execute"] == "v3"


def test_the_full_version_string_is_kept_for_keys():
    assert TrtVersion.parse("10.3.0.30") != TrtVersion.parse("10.3.0.26")
    assert TrtVersion.parse("10.3.0.30").at_least(10, 3) and not TrtVersion.parse("11.4.0").at_least(11, 4, 1)
