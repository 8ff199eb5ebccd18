"""TensorRT version → API plan, for every version the DESIGN names (no TensorRT needed)."""

import pytest

from edge_runtime.tensorrt.errors import UnsupportedTensorRT
from edge_runtime.tensorrt.versions import TrtVersion, api_plan


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
    "ver, batch_flag, execute, legacy, precision_flags, strongly_only, py_plug, aot, monitor", [
    ("8.5.2", True, "v2", True, True, False, False, False, False),     # JetPack 5.1
    ("8.6.2", True, "v2", True, True, False, False, False, False),     # JetPack 6.0
    ("10.3.0", False, "v3", True, True, False, False, False, True),    # JetPack 6.1/6.2
    ("10.9.0", False, "v3", True, True, False, True, True, True),
    ("11.0.0", False, "v3", False, False, True, True, True, True),     # strongly typed only
])
def test_api_plan_per_version(ver, batch_flag, execute, legacy, precision_flags, strongly_only, py_plug, aot,
                              monitor):
    plan = api_plan(ver)
    assert plan.explicit_batch_flag is batch_flag
    assert plan.execute == execute
    assert plan.legacy_calibrator is legacy
    assert plan.precision_flags is precision_flags
    assert plan.strongly_typed_only is strongly_only
    assert plan.python_plugins is py_plug
    assert plan.aot_plugins is aot
    assert plan.progress_monitor is monitor
    assert plan.tensor_address_api and plan.memory_pool_api == "set_memory_pool_limit"


def test_python_plugins_arrive_before_aot_plugins():
    plan = api_plan("10.6.0")
    assert plan.python_plugins and not plan.aot_plugins


def test_tensorrt_older_than_jetpack_5_1_is_refused_with_the_way_out():
    with pytest.raises(UnsupportedTensorRT, match="needs TensorRT ≥ 8.5.*ONNX Runtime"):
        api_plan("8.4.3")


def test_plan_serialises_for_the_sidecar():
    d = api_plan("10.3.0").to_dict()
    assert d["version"] == "10.3.0" and d["execute"] == "v3"
