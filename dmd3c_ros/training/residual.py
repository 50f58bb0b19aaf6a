"""The residual student: a bounded, learnt correction of the classical completion.

Contract (see :mod:`dmd3c_ros.runtime.spec`, ``inputs.classical``):
``forward(rgb, sparse, classical) -> (depth, uncertainty)``

- ``rgb``       (N, 3, h, w): normalised image, ``(rgb_0_255 - mean) / std``
- ``sparse``    (N, 1, h, w): ``sparse_metres / depth_scale``, 0 = no value
- ``classical`` (N, 1, h, w): the classical completion of that same sparse map
  (:func:`dmd3c_ros.core.classical.complete_classical`, pivot = the spec's maximum depth) divided
  by ``depth_scale``, 0 = no value. It is a pre-step shared by every runtime
  (:class:`dmd3c_ros.runtime.network.NetworkIO` computes it), not part of the graph: its median
  blur has no standard ONNX operator.
- with ``ResidualConfig.features_input`` (the shipped exports) the second input is the seven
  maps of :func:`classical_features` (N, 7, h, w), made by the runtime (:mod:`core.features`).
- ``depth``       (N, 1, h, w): ``classical * exp(bound * tanh(r))``, in ``depth_scale`` units;
  0 where ``classical`` is 0 (the runtime turns that into NaN)
- ``uncertainty`` (N, 1, h, w): standard deviation, same units: ``depth * exp(clip(s, -6, 1))``

``r`` and ``s`` come from one small encoder-decoder over the image and features of what the
classical step knows (its log depth, the local spread of its depth, the LiDAR returns and their
density near each pixel, and where a return disagrees with the classical answer at its own
pixel). The convolution that outputs ``r`` starts at zero (weights and bias), so an untrained
residual student returns the classical completion exactly; training can then only move it where
the loss says the classical answer is wrong (edges, see-through returns, the far field).

The network needs LiDAR (``supports_mono`` is false); the shipped spec names a camera-only model
for frames without any (``mono_model``, see the runtime).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

from dmd3c_ros.core.features import (DENSITY_SCALE, DENSITY_WINDOW, FEATURES, LOG_FLOOR,
                                     LOG_SCALE, MISSING_OFFSET, SPREAD_MAX, SPREAD_WINDOW)
from dmd3c_ros.training.images import image_edges
from dmd3c_ros.training.student import SeparableBlock, _conv_bn_relu, _fuse_up, _stage

CONTEXT_FEATURES = 2  # more with ResidualConfig.context: the farthest / nearest return nearby
CONTEXT_CELL = 4      # the context maps' pooling: 4x4 cells, then 7x7 cells (a 28-pixel window)


@dataclass(frozen=True)
class ResidualConfig:
    """Sizes of a residual student; ``widths`` per encoder stage at strides 2, 4, 8, 16, 32."""

    name: str = "residual"
    widths: tuple[int, ...] = (16, 32, 48, 80, 128)
    blocks: tuple[int, ...] = (0, 1, 1, 2, 2)
    decoder_widths: tuple[int, ...] = (80, 48, 32, 16)   # at strides 16, 8, 4, 2
    head_channels: int = 16
    bound: float = 1.0            # log-space bound of the correction: a factor up to e
    use_rgb: bool = True          # False: geometry only (the image input is accepted, unused)
    context: bool = False         # add the farthest / nearest LiDAR return within 28 pixels
    deadzone: float = 0.0         # log-space; in eval mode corrections shrink by it (below: 0)
    coarse_rgb: int = 0           # > 0: the image, average-pooled to this stride (8, 16 or 32),
                                  # joins the encoder there (zero-initialised projection)
    input_stride: int = 1         # 2: the network runs on the inputs at half resolution (the
                                  # nearest return of each 2x2 block, the classical value of its
                                  # top-left pixel) and its correction, upsampled, is applied to
                                  # the full-resolution classical input: a quarter of the work
    features_input: bool = False  # the second input is the FEATURES maps (core.features, the
                                  # runtime's pre-step), not the sparse map: an export option,
                                  # the same parameters (input_stride 1, no context only)
    edges: bool = False           # one more input map: the image's edges (the gradient of its
                                  # log brightness, :func:`image_edges`), not its colours

    def __post_init__(self):
        if len(self.widths) != 5 or len(self.blocks) != 5 or len(self.decoder_widths) != 4:
            raise ValueError("ResidualConfig needs 5 widths, 5 blocks and 4 decoder widths")
        if not self.bound > 0:
            raise ValueError("ResidualConfig.bound must be positive")
        if self.input_stride not in (1, 2):
            raise ValueError("ResidualConfig.input_stride must be 1 or 2")
        if self.features_input and (self.input_stride != 1 or self.context):
            raise ValueError("ResidualConfig.features_input needs input_stride 1 and no "
                             "context: core.features computes the seven maps at the input's "
                             "size")


RESIDUAL_VARIANTS = {
    "residual": ResidualConfig(),
    # The shipped layout: without the image (corrections from the LiDAR and classical maps
    # alone), and corrections under 2 % dropped at inference (models/README.md: on the real
    # frames the image-fed variant's and the small corrections were the synthetic-to-real gap).
    "residual_geo": ResidualConfig(name="residual_geo", use_rgb=False, deadzone=0.02),
    # With the wide LiDAR context (a hole beside farther returns may be far itself).
    "residual_ctx": ResidualConfig(name="residual_ctx", context=True),
    "residual_geo_ctx": ResidualConfig(name="residual_geo_ctx", use_rgb=False, context=True),
    # residual_geo with the image at stride 16 only (objects and layout, no pixel detail).
    "residual_geo_rgb16": ResidualConfig(name="residual_geo_rgb16", use_rgb=False,
                                         deadzone=0.02, coarse_rgb=16),
    # residual_geo at half resolution inside the graph (the same inputs and outputs, the same
    # parameters: started from residual_geo's weights); for CPUs where the full one is too slow.
    "residual_geo_half": ResidualConfig(name="residual_geo_half", use_rgb=False,
                                        deadzone=0.02, input_stride=2),
    # residual_geo told where the image has edges (not its colours: the rendered colours were
    # the synthetic-to-real gap of the image-fed variants), to say which side of a depth edge
    # a pixel lies on.
    "residual_geo_edges": ResidualConfig(name="residual_geo_edges", use_rgb=False,
                                         deadzone=0.02, edges=True),
}

NO_RETURN = 10.0  # network units (depth / depth_scale <= 1): "no return" while pooling returns


def _halve(sparse: torch.Tensor, classical: torch.Tensor):
    """Half-resolution inputs: each 2x2 block's nearest return (0 = none; as the runtime's
    z-buffer resize) and its top-left classical value (as a nearest-neighbour resize)."""
    far = sparse + (sparse <= 0).float() * NO_RETURN
    nearest = -F.max_pool2d(-far, 2, 2)
    return nearest * (nearest < NO_RETURN).float(), classical[:, :, ::2, ::2]


def _pad32(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Zero rows on top (the sky side of a road camera) and columns on the right: no value."""
    return F.pad(x, (0, cols, rows, 0)) if rows or cols else x


def _minpool(x: torch.Tensor, k: int) -> torch.Tensor:
    return -F.max_pool2d(-x, k, 1, k // 2)


def _wide_max(x: torch.Tensor) -> torch.Tensor:
    """The maximum over a 28x28-pixel neighbourhood, pooled in 4x4 cells (h, w multiples of 4)."""
    cells = F.max_pool2d(F.max_pool2d(x, CONTEXT_CELL, CONTEXT_CELL), 7, 1, 3)
    return F.interpolate(cells, scale_factor=float(CONTEXT_CELL), mode="nearest")


def classical_features(sparse: torch.Tensor, classical: torch.Tensor,
                       context: bool = False) -> torch.Tensor:
    """(N, FEATURES (+ CONTEXT_FEATURES), h, w): what the classical step knows, per pixel (all
    standard ONNX ops).

    log classical depth (0 where none) and its mask; log LiDAR depth and its mask; the log ratio
    of a return to the classical answer at its own pixel (a see-through return that the
    nearest-wins morphology overrode shows here); the spread (max - min) of the classical log
    depth in a 7x7 window (a depth edge); the share of LiDAR pixels in a 9x9 window (how far the
    nearest return is). With ``context``: how much farther the farthest, and nearer the nearest,
    return within about 28 pixels is than the classical answer (log ratios, 0-3): the
    nearest-wins fill of a far hole beside a near object is too near.

    The runtime computes the same seven maps with numpy and OpenCV
    (:func:`dmd3c_ros.core.features.residual_features`) for a student exported with
    ``features_input``; both take their constants from :mod:`dmd3c_ros.core.features`."""
    cmask = (classical > 0).float()
    smask = (sparse > 0).float()
    log_c = cmask * torch.log(classical.clamp_min(LOG_FLOOR))
    log_s = smask * torch.log(sparse.clamp_min(LOG_FLOOR))
    ratio = smask * (log_s - log_c)
    # Pixels without a classical value must not widen the spread: fill them with the window's
    # own values by taking the spread over log_c + a large offset where missing, masked after.
    far = log_c + (1.0 - cmask) * MISSING_OFFSET
    near = log_c - (1.0 - cmask) * MISSING_OFFSET
    spread = cmask * (F.max_pool2d(near, SPREAD_WINDOW, 1, SPREAD_WINDOW // 2)
                      - _minpool(far, SPREAD_WINDOW)).clamp(0.0, SPREAD_MAX)
    density = F.avg_pool2d(smask, DENSITY_WINDOW, 1, DENSITY_WINDOW // 2,
                           count_include_pad=False)
    maps = [log_c * LOG_SCALE, cmask, log_s * LOG_SCALE, smask, ratio, spread,
            density * DENSITY_SCALE]
    if context:
        farthest = _wide_max(log_s - (1.0 - smask) * 20.0)
        nearest = -_wide_max(-log_s - (1.0 - smask) * 20.0)
        maps += [cmask * (farthest - log_c).clamp(0.0, 3.0),
                 cmask * (log_c - nearest).clamp(0.0, 3.0)]
    return torch.cat(maps, 1)


class ResidualStudent(nn.Module):
    """See the module docstring."""

    needs_classical = True
    supports_mono = False

    def __init__(self, config: ResidualConfig | None = None):
        super().__init__()
        cfg = config or ResidualConfig()
        self.config = cfg
        w = cfg.widths
        cin = (FEATURES + (CONTEXT_FEATURES if cfg.context else 0) + (3 if cfg.use_rgb else 0)
               + (1 if cfg.edges else 0))
        self.stem = nn.Sequential(_conv_bn_relu(cin, w[0], 3, 2),
                                  *[SeparableBlock(w[0], w[0]) for _ in range(cfg.blocks[0])])
        self.stages = nn.ModuleList(_stage(w[i - 1], w[i], cfg.blocks[i], 2) for i in range(1, 5))
        if cfg.coarse_rgb:
            if cfg.coarse_rgb not in (8, 16, 32):
                raise ValueError("ResidualConfig.coarse_rgb must be 0, 8, 16 or 32")
            self._coarse_stage = (4, 8, 16, 32).index(cfg.coarse_rgb)  # encoder stage index
            width = w[self._coarse_stage + 1]
            self.rgb_in = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1), nn.ReLU(inplace=True),
                                        nn.Conv2d(16, width, 1))
            with torch.no_grad():  # zero start: the network computes what residual_geo did
                self.rgb_in[2].weight.zero_()
                self.rgb_in[2].bias.zero_()
        dec_in = [w[-1]] + list(cfg.decoder_widths[:-1])
        skips = list(reversed(w[:-1]))
        self.fuse = nn.ModuleList(_conv_bn_relu(dec_in[i] + skips[i], cfg.decoder_widths[i], 1)
                                  for i in range(4))
        self._fuse_low = tuple(dec_in)
        self.dec_blocks = nn.ModuleList(SeparableBlock(c, c) for c in cfg.decoder_widths)
        hc = cfg.head_channels
        # Full resolution in through a 2x2 stride-2 convolution (space-to-depth + 1x1), summed
        # with the stride-2 decoder features, out through a 2x2 stride-2 transposed convolution.
        self.head_in = nn.Conv2d(cin, hc, 2, 2)
        self.head_feat = nn.Conv2d(cfg.decoder_widths[-1], hc, 1, bias=False)
        self.head = nn.Sequential(nn.ReLU(inplace=True),
                                  nn.Conv2d(hc, hc, 3, 1, 1, groups=hc, bias=False),
                                  nn.BatchNorm2d(hc), nn.ReLU(inplace=True))
        self.out = nn.ConvTranspose2d(hc, 2, 2, 2)   # channel 0: correction r, 1: log sigma
        with torch.no_grad():  # identity start: r == 0 whatever the input
            self.out.weight[:, 0].zero_()
            self.out.bias[0].zero_()
            self.out.bias[1].fill_(-3.0)           # sigma starts at 5 % of depth

    @property
    def uses_rgb(self) -> bool:
        """Whether the output depends on the image (the export writes ``rgb_used`` from it)."""
        return bool(self.config.use_rgb or self.config.coarse_rgb or self.config.edges)

    def _run(self, rgb, sparse, classical, features=None):
        """``features``: the FEATURES maps, given (then ``sparse`` is not used) or None (made
        here from ``sparse`` and ``classical``)."""
        stride = self.config.input_stride
        h, w = (int(v) for v in classical.shape[-2:])  # static sizes (an export traces one)
        unit = 32 if stride == 1 else stride
        if (h % unit or w % unit) and not torch.jit.is_tracing():
            raise ValueError(f"ResidualStudent input size {h}x{w} is not a multiple of "
                             f"{unit}")
        net_sparse, net_classical, rows, cols = sparse, classical, 0, 0
        if stride > 1:  # halved, then padded to a multiple of 32
            rows, cols = -(h // stride) % 32, -(w // stride) % 32
            net_sparse, net_classical = (_pad32(x, rows, cols)
                                         for x in _halve(sparse, classical))
        if features is None:
            features = classical_features(net_sparse, net_classical, self.config.context)
        x_in = torch.cat([rgb, features], 1) if self.config.use_rgb else features
        if self.config.edges:  # last, so that a student without them widens to this one
            x_in = torch.cat([x_in, image_edges(rgb)], 1)
        skips = []
        x = self.stem(x_in)
        skips.append(x)
        coarse = None
        if self.config.coarse_rgb:
            s = self.config.coarse_rgb
            coarse = self.rgb_in(F.avg_pool2d(rgb, s, s))
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if coarse is not None and index == self._coarse_stage:
                x = x + coarse
            skips.append(x)
        if not self.uses_rgb:
            # Keeps the unused image an input of the exported graph (the contract is the same
            # for every student) at the cost of one multiply on the stride-32 map.
            x = x + 0.0 * rgb[:, :1, :1, :1]
            skips[-1] = x
        for fuse, block, skip, c in zip(self.fuse, self.dec_blocks, reversed(skips[:-1]),
                                        self._fuse_low):
            x = block(_fuse_up(fuse, x, skip, c))
        features = x                                           # stride 2 of the network's grid
        out = self.out(self.head(self.head_in(x_in) + self.head_feat(features)))
        if stride > 1:  # back to the input's size: unpadded, upsampled
            out = F.interpolate(out[:, :, rows:, :out.shape[-1] - cols],
                                scale_factor=float(stride), mode="bilinear", align_corners=False)
        correction = self.config.bound * torch.tanh(out[:, :1])
        dz = self.config.deadzone
        if dz > 0 and not self.training:
            # Soft threshold, as Relu and Sub only: corrections within +-dz become 0, larger ones
            # shrink by dz. Training sees none of it (the gradient at 0 would vanish).
            correction = F.relu(correction - dz) - F.relu(-correction - dz)
        depth = classical * torch.exp(correction)
        uncertainty = depth * torch.exp(out[:, 1:2].clamp(-6.0, 1.0))
        return depth, uncertainty, correction, features

    @property
    def features_input(self) -> bool:
        """Whether ``forward``'s second input is the feature maps (the export names it
        ``features``) rather than the sparse map."""
        return self.config.features_input

    def forward(self, rgb: torch.Tensor, sparse: torch.Tensor, classical: torch.Tensor):
        """(N,3,h,w), (N,1,h,w), (N,1,h,w) -> depth, uncertainty (N,1,h,w), depth_scale units.
        With ``features_input`` the second input is the (N, FEATURES, h, w) feature maps."""
        if self.config.features_input:
            depth, uncertainty = self._run(rgb, None, classical, features=sparse)[:2]
        else:
            depth, uncertainty = self._run(rgb, sparse, classical)[:2]
        return depth, uncertainty

    def forward_sparse(self, rgb: torch.Tensor, sparse: torch.Tensor, classical: torch.Tensor):
        """``forward`` from the sparse map whatever ``features_input`` says (the feature maps
        made in the graph, as in training): the reference an export is checked against."""
        depth, uncertainty = self._run(rgb, sparse, classical)[:2]
        return depth, uncertainty

    def forward_with_aux(self, rgb, sparse, classical) -> dict[str, torch.Tensor]:
        """For training. Keys: ``depth``, ``uncertainty``, ``correction`` (N,1,h,w; log-space,
        bounded), ``features`` (N,C,h/2,w/2), the last decoder features."""
        keys = ("depth", "uncertainty", "correction", "features")
        return dict(zip(keys, self._run(rgb, sparse, classical)))


def build_residual_student(variant: str = "residual", **overrides) -> ResidualStudent:
    """Factory for model specs (``dmd3c_ros.training.residual:build_residual_student``)."""
    if variant not in RESIDUAL_VARIANTS:
        raise ValueError(f"unknown residual variant {variant!r}; choose from "
                         f"{sorted(RESIDUAL_VARIANTS)}")
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return ResidualStudent(replace(RESIDUAL_VARIANTS[variant], **fixed))
