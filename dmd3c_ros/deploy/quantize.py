"""``dmd3c quantize``: an INT8 ONNX of a model for the CPU (ONNX Runtime static quantisation).

ONNX Runtime's ``quantize_static`` in QDQ format: weights int8 per output channel, activations
uint8 with ranges from calibration frames (:mod:`dmd3c_ros.deploy.calibration`, prepared as the
runtime prepares them) by the chosen method (MinMax, Entropy or Percentile). Only the operator
types in ``op_types`` are quantised (default: convolutions, the bulk of the multiply-adds);
everything else stays float. Convolutions whose output is at stride 1 or 2 of the network's input
(``float_stride``, default 2) are left in float: with few channels they gain little from int8
(quantise/dequantise passes over large tensors cost about what they save) and they make the final
depth: on the shipped student, quantising the seven stride-2 convolutions too cost +2.4 % RMSE on
the KITTI object frame, keeping them float -0.9 % (``models/README.md``, INT8).

The result is ``NAME.onnx`` plus its spec ``NAME.yaml`` (the source spec with the new file, its
sha256 and name; no ``torch`` section, since PyTorch would run the float network). Run it with
the onnxruntime backend (``--model NAME.yaml``). Measure its speed with ``dmd3c bench`` and its
accuracy with ``dmd3c eval`` side by side with the float model: on a CPU without int8 dot-product
instructions (VNNI) it may well be slower.
"""
from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from dmd3c_ros.core.io import sha256_file, write_json
from dmd3c_ros.deploy.calibration import CalibrationError, calibration_feeds, calibration_samples
from dmd3c_ros.runtime.spec import ModelSpec, load_spec

METHODS = ("minmax", "entropy", "percentile")


def _quantization():
    try:
        from onnxruntime import quantization
    except ImportError as error:
        raise CalibrationError("dmd3c quantize needs onnxruntime (pip install onnxruntime)"
                               ) from error
    return quantization


def fine_resolution_nodes(onnx_path, input_size, op_types=("Conv",), max_stride: int = 1
                          ) -> list[str]:
    """Names of the ``op_types`` nodes whose output is at stride <= ``max_stride`` of the
    network's (h, w) (stride 1: full resolution; 2: also half; 0: none), by ONNX shape inference
    on the file, in graph order."""
    import onnx
    h, w = (int(v) for v in input_size)
    sizes = [[h // s, w // s] for s in (1, 2, 4, 8, 16, 32) if s <= max_stride]
    if not sizes:
        return []
    model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    shapes = {}
    for value in list(model.graph.value_info) + list(model.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else None
                for d in value.type.tensor_type.shape.dim]
        shapes[value.name] = dims
    names = []
    for node in model.graph.node:
        if node.op_type in op_types and node.output:
            dims = shapes.get(node.output[0])
            if dims and len(dims) == 4 and dims[2:] in sizes:
                names.append(node.name)
    return names


class _Reader:
    """ONNX Runtime's CalibrationDataReader over our prepared feeds (one frame per call)."""

    def __init__(self, feeds) -> None:
        self._feeds = iter(feeds)

    def get_next(self):
        return next(self._feeds, None)

    def rewind(self):  # not needed by quantize_static's single pass
        raise NotImplementedError


def quantize_model(spec_path, out, calibration, *, frames: int = 32, method: str = "minmax",
                   op_types=("Conv",), float_stride: int = 2,
                   image_topic: str | None = None, camera_info_topic: str | None = None,
                   points_topic: str | None = None, log=print) -> dict:
    """Quantise the spec's ONNX to INT8 with calibration frames; write ``out`` (.onnx) + spec.

    Args:
        spec_path: the float model's spec YAML.
        out: the ONNX file to write (``models/NAME.onnx``); its spec goes beside it.
        calibration: a KITTI-format folder or rosbag2 folder of frames like the deployment's
            (never the frames an accuracy figure is measured on).
        frames: calibration frames, spread evenly over the source.
        method: activation range method: minmax, entropy or percentile.
        op_types: ONNX operator types to quantise.
        float_stride: leave convolutions with output at stride <= this in float (see module
            doc); 0 quantises them all.
    Returns:
        a JSON-able dict: paths, sha256, frames used, method, nodes quantised / kept float.
    Raises:
        CalibrationError: no frames, a bad source or method; ModelSpecError: a bad spec.
    """
    q = _quantization()
    if method not in METHODS:
        raise CalibrationError(f"unknown calibration method {method!r}; choose from "
                               f"{', '.join(METHODS)}")
    spec: ModelSpec = load_spec(spec_path)
    out = Path(out)
    if out.suffix != ".onnx":
        raise CalibrationError(f"the output must be an .onnx file, got {out}")
    samples = calibration_samples(calibration, count=frames, image_topic=image_topic,
                                  camera_info_topic=camera_info_topic, points_topic=points_topic)
    log(f"calibrating {spec.name} on {len(samples)} frames of {calibration} ({method})")
    exclude = fine_resolution_nodes(spec.onnx, spec.input_size, op_types, float_stride)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # Shape inference and graph clean-up, as ONNX Runtime recommends before quantising
        # (symbolic shape inference is skipped: all shapes but the batch are static).
        q.shape_inference.quant_pre_process(str(spec.onnx), str(prepared),
                                            skip_symbolic_shape=True)
        partial = out.with_suffix(".partial.onnx")
        q.quantize_static(
            str(prepared), str(partial), _Reader(calibration_feeds(spec, samples)),
            quant_format=q.QuantFormat.QDQ, op_types_to_quantize=list(op_types),
            per_channel=True, activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8, nodes_to_exclude=exclude,
            calibrate_method={"minmax": q.CalibrationMethod.MinMax,
                              "entropy": q.CalibrationMethod.Entropy,
                              "percentile": q.CalibrationMethod.Percentile}[method])
        partial.replace(out)
    quantized = replace(spec, name=out.stem, onnx=out.resolve(), sha256=sha256_file(out),
                        torch=None, path=None)
    spec_out = out.with_suffix(".yaml")
    quantized.save(spec_out)
    import onnx
    graph = onnx.load(str(out)).graph
    counts = {"QuantizeLinear": 0, "DequantizeLinear": 0}
    for node in graph.node:
        if node.op_type in counts:
            counts[node.op_type] += 1
    return {"spec": str(spec_out.resolve()), "onnx": str(out.resolve()),
            "sha256": quantized.sha256, "source_spec": str(spec.path),
            "calibration": str(calibration), "frames": [s.name for s in samples],
            "method": method, "op_types": list(op_types), "kept_float": exclude,
            "quantize_nodes": counts["QuantizeLinear"],
            "weights_int8": bool(np.any([i.data_type == 3 for i in graph.initializer]))}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "quantize", help="INT8 ONNX of a model for the CPU (static, calibrated)",
        description="Quantise a model's ONNX to INT8 (ONNX Runtime static quantisation, QDQ, "
                    "per-channel int8 weights, uint8 activations calibrated on frames of a "
                    "KITTI-format or rosbag2 folder) and write OUT plus its spec OUT.yaml.")
    p.add_argument("model", help="the float model's spec YAML (e.g. models/student.yaml)")
    p.add_argument("--calibration", required=True,
                   help="folder of calibration frames (KITTI-format or rosbag2), like your "
                        "deployment's; never your evaluation data")
    p.add_argument("--out", required=True, help="the ONNX file to write, e.g. "
                                                "models/student_int8.onnx")
    p.add_argument("--frames", type=int, default=32, help="calibration frames (default 32)")
    p.add_argument("--method", choices=METHODS, default="minmax")
    p.add_argument("--op-types", nargs="+", default=["Conv"],
                   help="ONNX operator types to quantise (default Conv)")
    p.add_argument("--float-stride", type=int, choices=(0, 1, 2, 4), default=2,
                   help="leave convolutions whose output is at stride <= N of the input in "
                        "float (default 2: full and half resolution; 0: quantise them all)")
    p.add_argument("--image-topic", help="bag: image topic")
    p.add_argument("--camera-info-topic", help="bag: CameraInfo topic")
    p.add_argument("--points-topic", help="bag: PointCloud2 topic")
    p.add_argument("--json", help="also write the result here")
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    result = quantize_model(args.model, args.out, args.calibration, frames=args.frames,
                            method=args.method, op_types=tuple(args.op_types),
                            float_stride=args.float_stride,
                            image_topic=args.image_topic,
                            camera_info_topic=args.camera_info_topic,
                            points_topic=args.points_topic)
    if args.json:
        write_json(args.json, result)
    print(json.dumps(result, indent=1))
    return 0


__all__ = ["METHODS", "add_parser", "fine_resolution_nodes", "quantize_model", "run"]
