"""Write a model as a TensorFlow SavedModel (for TensorFlow Serving) or an ONNX file (for onnxruntime & co)."""
from __future__ import annotations

import json
from pathlib import Path

from core.export.graph import calibration_of, describe, doc_text, logit_and_probability, serving_function

CONTRACT_FILE = "secondlook_signature.json"


class ExportError(ValueError):
    """An export that cannot be written (target exists, unsupported calibration, ...)."""


def _empty_target(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ExportError(f"{path} already exists and is not empty; choose another folder (or --version).")


def export_savedmodel(model, spec, card: dict, task: str, model_id: str, out_dir: str | Path, version: int = 1) -> Path:
    """`out_dir/<version>/` as TensorFlow Serving expects (model_base_path=out_dir); returns the version folder.

    Signatures: `serving_default` takes float32 pixels, `serving_uint8` uint8 pixels, both [batch, size, size,
    channels] at model size, 0..255; both return `probability` (calibrated) and `logit`. The normalisation and the
    card's Platt calibration (if any; identity otherwise) run inside the graph. The contract is also written to
    `out_dir/secondlook_signature.json`.
    """
    import tensorflow as tf

    out_dir = Path(out_dir)
    target = out_dir / str(int(version))
    _empty_target(target)
    cal = calibration_of(card)
    contract = describe(task, model_id, spec, card, cal, "savedmodel")
    nets = logit_and_probability(model)
    f32, _ = serving_function(model, spec, cal, "float32", nets)
    u8, _ = serving_function(model, spec, cal, "uint8", nets)
    module = tf.Module()
    module.head, module.net = nets  # tracked, so the (folded) variables the functions use are saved with them
    module.serve_float32, module.serve_uint8 = f32, u8
    module.__doc__ = doc_text(contract)
    out_dir.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(module, str(target), signatures={
        "serving_default": f32.get_concrete_function(), "serving_uint8": u8.get_concrete_function()})
    (out_dir / CONTRACT_FILE).write_text(json.dumps(contract, indent=2) + "\n")
    return target


def onnx_proto(fn, sig, opset: int = 17):
    """tf.function -> ONNX ModelProto with tf2onnx (from_function: works on TF 2.21 / Keras 3, from_keras does not)."""
    import tf2onnx

    proto, _ = tf2onnx.convert.from_function(fn, input_signature=[sig], opset=opset)
    return proto


def export_onnx(model, spec, card: dict, task: str, model_id: str, out_dir: str | Path, opset: int = 17) -> Path:
    """`out_dir/model.onnx`: input `pixels` float32 [batch, size, size, channels] 0..255, outputs `probability`
    (calibrated) and `logit`; normalisation and calibration inside, as in the SavedModel. Returns the file."""
    out_dir = Path(out_dir)
    target = out_dir / "model.onnx"
    if target.exists():
        raise ExportError(f"{target} already exists; choose another folder.")
    cal = calibration_of(card)
    contract = describe(task, model_id, spec, card, cal, "onnx")
    fn, sig = serving_function(model, spec, cal, "float32")
    proto = onnx_proto(fn, sig, opset)
    proto.doc_string = doc_text(contract)
    meta = proto.metadata_props.add()
    meta.key, meta.value = "secondlook_signature", json.dumps(contract)
    out_dir.mkdir(parents=True, exist_ok=True)
    target.write_bytes(proto.SerializeToString())
    (out_dir / CONTRACT_FILE).write_text(json.dumps(contract, indent=2) + "\n")
    return target


def export(task: str, model_id: str, fmt: str, out_dir: str | Path, version: int = 1, root=None) -> Path:
    """Load a bundled model (checksum verified) and export it; `fmt` is 'savedmodel' or 'onnx'."""
    from core.export._core import get_task, load_model, read_card

    spec = get_task(task).model(model_id).input
    card = read_card(task, model_id, root)
    calibration_of(card)  # refuse a bad entry before the slow part
    model = load_model(task, model_id, root=root)
    if fmt == "savedmodel":
        return export_savedmodel(model, spec, card, task, model_id, out_dir, version)
    if fmt == "onnx":
        return export_onnx(model, spec, card, task, model_id, out_dir)
    raise ExportError(f"unknown format {fmt!r}; choose savedmodel or onnx.")
