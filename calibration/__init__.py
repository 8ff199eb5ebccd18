"""Calibration sets from good images, INT8 Q/DQ models (TensorRT and ONNX Runtime flavours), FP16 ONNX,
and the legacy TensorRT ≤ 10 calibrator. Entry points: `calibration.selection.select_calibration_set`,
`calibration.bundle.quantize_bundle`, `calibration.fp16.export_fp16`, `calibration.legacy.EntropyCalibrator`.
"""
