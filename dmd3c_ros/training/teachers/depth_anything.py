"""Depth Anything V2 (relative) through ``transformers``, loaded from a local directory only.

The directory is what ``save_pretrained`` writes (or a downloaded Hugging Face snapshot such as
``depth-anything/Depth-Anything-V2-Small-hf``): ``config.json`` plus ``model.safetensors`` (or
``pytorch_model.bin``). Nothing is ever downloaded: ``local_files_only=True``.

Preprocessing follows the reference implementation: the image is resized (bicubic) so that its
shorter side is ``input_size`` with the aspect ratio kept and both sides rounded to a multiple of
the patch size (14), then normalised with the ImageNet mean and standard deviation. The network's
output (relative inverse depth, "disparity-like") is resized bilinearly back to the image size.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .base import METRIC_DEPTH, RELATIVE_INVERSE_DEPTH, Teacher, check_rgb

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
# safetensors only: a pytorch_model.bin is a pickle, which could run code when loaded.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


class WeightsError(FileNotFoundError):
    """The weights directory is missing or incomplete."""


def network_input_size(height: int, width: int, input_size: int, multiple: int) -> tuple[int, int]:
    """(h, w): shorter side about ``input_size``, aspect kept, both multiples of ``multiple``."""
    scale = input_size / min(height, width)
    h = max(multiple, int(round(height * scale / multiple)) * multiple)
    w = max(multiple, int(round(width * scale / multiple)) * multiple)
    return h, w


def check_weights_dir(weights_dir) -> Path:
    """Return ``weights_dir`` as a Path or raise ``WeightsError`` saying what is missing."""
    path = Path(weights_dir).expanduser()
    if not path.is_dir():
        raise WeightsError(f"Depth Anything V2 weights directory {path} does not exist; give the "
                           "local folder written by save_pretrained or a downloaded snapshot")
    if not (path / "config.json").is_file():
        raise WeightsError(f"{path}: no config.json (not a transformers model directory)")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        pickled = (path / "pytorch_model.bin").is_file()
        raise WeightsError(f"{path}: no weights ({', '.join(WEIGHT_FILES)})" + (
            "; pytorch_model.bin is a pickle and is not loaded: convert it once with "
            "transformers (from_pretrained, then save_pretrained(safe_serialization=True))"
            if pickled else ""))
    return path


class DepthAnythingV2Teacher(Teacher):
    """Depth Anything V2 as a teacher of relative inverse depth.

    Args:
        weights_dir: local ``transformers`` model directory (config.json + weights).
        device: torch device string for inference, e.g. ``"cpu"`` or ``"cuda"``.
        input_size: target length in pixels of the shorter side of the network input (518 as in
            the reference); rounded to a multiple of the patch size.
    """

    def __init__(self, weights_dir, device: str = "cpu", input_size: int = 518) -> None:
        if input_size < 14:
            raise ValueError(f"input_size must be >= 14, got {input_size}")
        path = check_weights_dir(weights_dir)
        import torch  # deferred: the rest of the teachers do not need torch or transformers
        from transformers import AutoModelForDepthEstimation

        self._torch = torch
        self.model = AutoModelForDepthEstimation.from_pretrained(
            str(path), local_files_only=True, use_safetensors=True).to(device).eval()
        config = self.model.config
        self.kind = (METRIC_DEPTH if getattr(config, "depth_estimation_type", "relative")
                     == "metric" else RELATIVE_INVERSE_DEPTH)
        patch = config.patch_size
        self.patch_size = int(patch[0] if isinstance(patch, (list, tuple)) else patch)
        self.device, self.input_size, self.weights_dir = device, int(input_size), path
        self.name = f"depth_anything_v2:{path.name}"

    def preprocess(self, rgb: np.ndarray):
        """(H, W, 3) uint8 -> (1, 3, h, w) float32 tensor on the device, h and w multiples of 14."""
        rgb = check_rgb(rgb)
        h, w = network_input_size(*rgb.shape[:2], self.input_size, self.patch_size)
        resized = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_CUBIC)
        x = (resized.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD  # [0,1], ImageNet
        return self._torch.from_numpy(x.transpose(2, 0, 1)[None].copy()).to(self.device)

    def predict(self, rgb: np.ndarray, **extras) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (H, W) float32 relative inverse depth (metres if metric head)."""
        rgb = check_rgb(rgb)
        height, width = rgb.shape[:2]
        with self._torch.inference_mode():
            out = self.model(pixel_values=self.preprocess(rgb)).predicted_depth  # (1, h, w)
            out = self._torch.nn.functional.interpolate(
                out[:, None].float(), size=(height, width), mode="bilinear", align_corners=False)
        return out[0, 0].cpu().numpy().astype(np.float32)
