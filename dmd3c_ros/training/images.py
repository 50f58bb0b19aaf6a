"""The image side of training: the normalisation every student's image input gets, the
photometric augmentation of rendered images (jitter, texture noise), and the edge map that the
edge-fed residual student (``residual.residual_geo_edges``) reads."""
from __future__ import annotations

import math

import cv2
import numpy as np

RGB_MEAN = (123.675, 116.28, 103.53)  # ImageNet mean / std on the 0-255 scale, RGB order
RGB_STD = (58.395, 57.12, 57.375)


def normalise_rgb(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8/float 0-255 -> (3, H, W) float32 with the ImageNet mean and std."""
    x = (np.asarray(rgb, np.float32) - np.float32(RGB_MEAN)) / np.float32(RGB_STD)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def photometric_jitter(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation, gamma, per-channel gain, blur and sensor noise (0-255
    float32): rendered images are cleaner than a real camera's, the network must not rely on it."""
    x = np.asarray(rgb, np.float32) / 255.0
    x = np.clip(x, 0, 1) ** np.float32(math.exp(rng.uniform(-0.35, 0.35)))
    x = x * np.float32(rng.uniform(0.7, 1.3)) * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    mean = x.mean()
    x = (x - mean) * np.float32(rng.uniform(0.7, 1.3)) + mean
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * np.float32(rng.uniform(0.5, 1.4))
    if rng.random() < 0.3:
        x = cv2.GaussianBlur(x, (0, 0), float(rng.uniform(0.4, 1.2)))
    x = x + rng.normal(0, rng.uniform(0.0, 0.03), x.shape).astype(np.float32)
    return np.clip(x, 0, 1) * 255.0


def texture_noise(rgb: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Brightness texture multiplied into patches of the image (0-255 float32): fine noise
    (sigma 0.7-2 pixels) of up to ``strength`` in log brightness, where a coarse random field
    (sigma 25 pixels) says so. Rendered surfaces are smooth, so their image edges are almost
    only depth edges; a real image's are mostly texture (foliage, gravel, facades: its Sobel
    edges' median is 3-6 times the renders'), and a student that looks at edges must learn
    which of them a depth edge follows."""
    shape = rgb.shape[:2]
    fine = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0),
                            float(rng.uniform(0.7, 2.0)))
    fine /= max(float(fine.std()), 1e-6)
    patches = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 25.0)
    patches = np.clip(patches / max(float(patches.std()), 1e-6) * 0.8 + 0.2, 0.0, 1.0)
    gain = np.exp(np.float32(rng.uniform(0.0, strength)) * patches * fine)
    return np.clip(np.asarray(rgb, np.float32) * gain[..., None], 0.0, 255.0)


EDGE_OFFSET = 8.0   # 8-bit levels added before the logarithm (dark pixels' noise)
EDGE_MAX = 2.0      # the edge map's cap (log-brightness change across a Sobel kernel)


def image_edges(rgb):
    """(N, 3, h, w) normalised image (torch) -> (N, 1, h, w): the Sobel magnitude of its log
    brightness (a relative contrast: the same for a surface in sun or shade), capped at
    EDGE_MAX. (torch is imported here: the rest of this module serves cache building too.)"""
    import torch
    from torch.nn import functional as F

    mean = torch.tensor(RGB_MEAN, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    std = torch.tensor(RGB_STD, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    grey = (rgb * std + mean).mean(1, keepdim=True).clamp_min(0.0)
    log_grey = F.pad(torch.log(grey + EDGE_OFFSET), (1, 1, 1, 1), mode="replicate")
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]],
                         dtype=rgb.dtype, device=rgb.device) / 8.0
    kernels = torch.stack([sobel, sobel.t()]).unsqueeze(1)
    gradient = F.conv2d(log_grey, kernels)
    return torch.sqrt((gradient * gradient).sum(1, keepdim=True) + 1e-8).clamp_max(EDGE_MAX)


__all__ = ["RGB_MEAN", "RGB_STD", "image_edges", "normalise_rgb", "photometric_jitter",
           "texture_noise"]
