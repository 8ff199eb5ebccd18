"""Calibration sets from good images, INT8 Q/DQ models (TensorRT and ONNX Runtime flavours), FP16 ONNX.
Entry points: `calibration.selection.select_calibration_set`, `calibration.bundle.quantize_bundle`,
`calibration.fp16.export_fp16`. The legacy TensorRT ≤ 10 calibrator lives with the builder that uses it:
`edge_runtime.tensorrt.calibrator`.
"""
