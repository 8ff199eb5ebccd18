"""The optional fused graph-attention plugin (`slsg::GraphAttention`).

A bundle whose manifest lists it under "plugins" was exported with the fused op; TensorRT must have the
plugin registered before it parses the graph or deserialises the engine. Registration lives in
`edge_runtime.kernels.trt_plugin` (importing it registers the plugin); this module only decides whether
the installed TensorRT can take it: ahead-of-time plugins need ≥ 10.9.
"""

from __future__ import annotations

import importlib

from .errors import PluginUnsupported
from .versions import ApiPlan

GRAPH_ATTENTION = "slsg::GraphAttention"
PLUGIN_MODULE = "edge_runtime.kernels.trt_plugin"


def required_plugins(manifest: dict) -> list[str]:
    plugins = manifest.get("plugins") or []
    if not isinstance(plugins, list):
        raise PluginUnsupported(f"manifest 'plugins' must be a list of names, got {type(plugins).__name__}")
    return [str(p) for p in plugins]


def check_plugins(plugins: list[str], api: ApiPlan) -> None:
    """Refuse, with the way out, what this TensorRT cannot load."""
    unknown = [p for p in plugins if p != GRAPH_ATTENTION]
    if unknown:
        raise PluginUnsupported(f"the graph needs plugins this runtime does not provide: {unknown}")
    if plugins and not api.aot_plugins:
        raise PluginUnsupported(
            f"this bundle's graph uses the fused {GRAPH_ATTENTION} plugin, which needs TensorRT ≥ 10.9 "
            f"(ahead-of-time plugins); TensorRT {api.version} is installed. Re-export the bundle without "
            "the fused-plugin option: the standard-op graph runs on every TensorRT.")


def register_plugins(plugins: list[str], api: ApiPlan) -> None:
    check_plugins(plugins, api)
    if not plugins:
        return
    try:
        importlib.import_module(PLUGIN_MODULE)
    except ImportError as exc:
        raise PluginUnsupported(
            f"the graph needs {GRAPH_ATTENTION} but {PLUGIN_MODULE} could not be imported: {exc}") from exc
