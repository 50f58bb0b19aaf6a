"""Student depth networks: a light encoder-decoder with a hybrid bin head and an uncertainty head.

Contract (see :mod:`dmd3c_ros.runtime.spec`): ``forward(rgb, sparse) -> (depth, uncertainty)``

- ``rgb``    (N, 3, h, w): normalised image, ``(rgb_0_255 - mean) / std``
- ``sparse`` (N, 1, h, w): ``sparse_metres / depth_scale``, 0 = no value. An all-zero input is
  mono mode (no LiDAR); the validity mask ``(sparse > 0)`` is computed inside the network.
- ``depth``        (N, 1, h, w): ``depth_metres / depth_scale``, > 0
- ``uncertainty``  (N, 1, h, w): standard deviation in the same units, > 0

``h`` and ``w`` must be multiples of 32 (the encoder downsamples five times by 2 and the decoder
upsamples by fixed factors); other sizes raise ``ValueError``. Pad or resize outside the network.

Architecture: an RGB stem and a separate small sparse branch (sparse depth + validity mask, one
feature map per stride) are summed at strides 2..32; encoder stages are depthwise-separable blocks;
the decoder upsamples by 2 (bilinear, fixed scale factor) and fuses skip connections up to stride 2.
The hybrid bin head then gives

- per-image bin centres: global average of the stride-32 features -> MLP -> softplus widths,
  normalised to sum to 1, centres = ``d_min + (1 - d_min) * (cumsum(widths) - widths / 2)``,
  strictly increasing in (0, 1) of ``depth_scale`` (AdaBins-like);
- per-pixel bin probabilities at stride ``bin_stride`` (4 in ``tiny`` and the shipped ``tiny_v4``, 2 before):
  softmax over bins of a 1x1 convolution of the decoder features at that stride;
- coarse depth = expectation of the centres under the probabilities, upsampled to full resolution;
- with ``sparse_fill`` (default) the LiDAR is also densified inside the network
  (:func:`sparse_fill`: normalised averaging in 2^l cells, coarse to fine, l <= 5), fed to the
  sparse branch and the refinement, and blended in: ``base = alpha * fill + (1 - alpha) *
  coarse`` with a learnt per-pixel ``alpha`` (0 where no LiDAR value is within reach, so mono
  mode is the bin estimate alone): completion starts from the measured depths rather than
  re-deriving them. With ``fill="nearest"`` (variant ``tiny_v4``) the fill is first
  :func:`nearest_fill`, the classical completion's morphology (the nearest return wins, as
  behind a foreground edge it should), and the averaging pyramid only reaches where that leaves
  holes; no weight is added, so ``tiny`` weights load into ``tiny_v4`` and are fine-tuned from;
- a bounded residual refinement: ``depth = base * exp(refine_bound * tanh(r))`` (positive,
  within a factor ``exp(refine_bound)`` of ``base``), and the uncertainty ``sigma`` (exp of a
  clipped log-sigma; softplus in v1). With ``refine_stride`` 2 (default) the refinement runs at
  stride 2 on a quarter of the pixels without losing any: the full-resolution image and sparse
  inputs enter through 2x2 stride-2 convolutions (space-to-depth and a 1x1 convolution in one),
  are summed with the coarse depth and the decoder features, pass a depthwise 3x3 block and
  leave through a 2x2 stride-2 transposed convolution, one output per full-resolution pixel.
  Only one-channel maps (blend, residual, sigma) are computed at full resolution. With
  ``refine_stride`` 1 (the first shipped student, variant ``tiny_v1``) the block (1x1,
  depthwise 3x3, 1x1) runs at full resolution on the coarse depth, the sparse inputs and a
  full-resolution RGB feature plus the upsampled decoder features. (``tiny_v2``, the second
  shipped student, is ``tiny`` with its bins at stride 2.)

The decoder's skip fusion ``conv1x1(cat(up2(x), skip))`` is computed as
``up2(conv1x1_x(x)) + conv1x1_skip(skip)`` (:func:`_fuse_up`): the same function, a quarter of
the work and no concatenation.

The bin expectation is a MatMul of [centres; ones] with the exponentiated logits
(:func:`_bin_expectation`), and the full-resolution merge of :func:`sparse_fill` is arithmetic
rather than Where: both are the same functions, written for ONNX Runtime's CPU kernels.

``forward`` is export-pure (tensors in, tensors out; standard ONNX operators, opset 17).
``forward_with_aux`` returns a dict with the intermediate tensors the trainer distils.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

STRIDES = (2, 4, 8, 16, 32)


@dataclass(frozen=True)
class StudentConfig:
    """Sizes of a student. ``widths``/``blocks`` are per encoder stage at strides 2, 4, 8, 16, 32."""

    name: str = "tiny"
    widths: tuple[int, ...] = (16, 32, 64, 112, 192)
    blocks: tuple[int, ...] = (1, 1, 2, 2, 2)    # residual blocks after each stage's entry block
    decoder_widths: tuple[int, ...] = (96, 64, 32, 16)  # decoder outputs at strides 16, 8, 4, 2
    sparse_widths: tuple[int, ...] = (8, 8, 16, 16, 16)  # sparse branch, strides 2..32
    bins: int = 32
    bin_hidden: int = 64            # hidden units of the bin-width MLP
    bin_stride: int = 2             # the bin probabilities' stride: 2 or 4 (decoder features)
    full_res_channels: int = 4      # RGB feature at full resolution (refine_stride 1 only)
    refine_channels: int = 16
    refine_stride: int = 2          # 2: refinement at stride 2 (see the module docstring); 1: v1
    sigma_activation: str = "exp"   # uncertainty = exp(clip(s, -9, 2)); "softplus": v1
    refine_bound: float = 0.5       # log-space bound of the residual refinement
    d_min: float = 1e-3             # smallest bin centre, network units
    sparse_fill: bool = True        # densify the LiDAR in-network and blend it into the output
    fill: str = "average"           # "average": sparse_fill alone; "nearest": nearest_fill first

    def __post_init__(self):
        for key in ("widths", "blocks", "sparse_widths"):
            if len(getattr(self, key)) != len(STRIDES):
                raise ValueError(f"StudentConfig.{key} needs {len(STRIDES)} entries")
        if len(self.decoder_widths) != len(STRIDES) - 1:
            raise ValueError(f"StudentConfig.decoder_widths needs {len(STRIDES) - 1} entries")
        if self.bins < 2:
            raise ValueError("StudentConfig.bins must be >= 2")
        if self.bin_stride not in (2, 4):
            raise ValueError("StudentConfig.bin_stride must be 2 or 4")
        if self.refine_stride not in (1, 2):
            raise ValueError("StudentConfig.refine_stride must be 1 or 2")
        if self.fill not in ("average", "nearest"):
            raise ValueError("StudentConfig.fill must be 'average' or 'nearest'")
        if self.fill == "nearest" and not self.sparse_fill:
            raise ValueError("StudentConfig.fill 'nearest' needs sparse_fill")
        if self.sigma_activation not in ("exp", "softplus"):
            raise ValueError("StudentConfig.sigma_activation must be 'exp' or 'softplus'")


VARIANTS: dict[str, StudentConfig] = {
    # The third shipped student's layout (averaging LiDAR fill).
    "tiny": StudentConfig(bin_stride=4),
    # The shipped student's layout (models/student.yaml): tiny with the nearest-return
    # densification (nearest_fill) ahead of the averaging pyramid. Same tensors as tiny, so
    # weights of either load into the other without error: name the variant they were trained as.
    "tiny_v4": StudentConfig(name="tiny_v4", bin_stride=4, fill="nearest"),
    # The second layout (refinement at stride 2, bins at stride 2).
    "tiny_v2": StudentConfig(name="tiny_v2"),
    # The first shipped student's layout (full-resolution refinement); its weights load into it.
    "tiny_v1": StudentConfig(name="tiny_v1", refine_channels=8, refine_stride=1,
                             sigma_activation="softplus"),
    "small": StudentConfig(
        name="small", widths=(24, 48, 96, 192, 320), blocks=(1, 1, 2, 3, 2),
        decoder_widths=(160, 96, 48, 24), sparse_widths=(8, 16, 16, 32, 32), bins=64,
        bin_hidden=128, full_res_channels=8, refine_channels=16),
    "base": StudentConfig(
        name="base", widths=(32, 64, 128, 320, 512), blocks=(1, 2, 3, 4, 3),
        decoder_widths=(256, 128, 64, 32), sparse_widths=(16, 16, 32, 32, 64), bins=128,
        bin_hidden=256, full_res_channels=12, refine_channels=32),
}


def _conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SeparableBlock(nn.Module):
    """Depthwise 3x3 (stride 1 or 2) + pointwise 1x1, batch norm; residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.pointwise(F.relu(self.bn1(self.depthwise(x)))))
        return F.relu(y + x) if self.residual else F.relu(y)


def _stage(cin: int, cout: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [SeparableBlock(cin, cout, stride)]
    layers += [SeparableBlock(cout, cout) for _ in range(blocks)]
    return nn.Sequential(*layers)


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def _fuse_up(fuse: nn.Sequential, low: torch.Tensor, skip: torch.Tensor, c: int) -> torch.Tensor:
    """``fuse(cat([_up2(low), skip]))`` for a 1x1 conv (no bias) + batch norm + ReLU, computed
    as ``_up2(W_low * low) + W_skip * skip``: a 1x1 convolution commutes with the bilinear
    upsampling, so the low-resolution half is convolved on a quarter of the pixels and no
    concatenation is made. In eval mode the batch norm is folded into both convolutions. ``c``,
    the channels of ``low``, is a Python int so that an ONNX export folds the split weights
    into constants (a traced ``low.shape[1]`` would leave Slice operators in the graph)."""
    conv, norm, relu = fuse
    weight, bias = conv.weight, None
    if not norm.training:
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        weight = weight * scale[:, None, None, None]
        bias = norm.bias - norm.running_mean * scale
    y = _up2(F.conv2d(low, weight[:, :c])) + F.conv2d(skip, weight[:, c:], bias)
    return relu(y if bias is not None else norm(y))


def _bin_expectation(logits: torch.Tensor, centres: torch.Tensor, with_probs: bool):
    """(coarse depth (N,1,h,w), bin probabilities (N,B,h,w) or None) from bin logits (N,B,h,w)
    and per-image centres (N,B): ``sum_b softmax(logits)_b * centre_b``.

    Written for ONNX Runtime's CPU: the softmax over dim 1 of an NCHW tensor is slow there (a
    transpose), and so are 32-channel Mul / ReduceSum / Div. With ``e = exp(logits - max)`` the
    expectation is ``(centres . e) / (1 . e)``: one MatMul of the (N,2,B) matrix [centres; ones]
    with e as (N,B,h*w), then a one-channel division. The probabilities themselves (training
    only) are ``e / sum(e)``."""
    e = torch.exp(logits - logits.amax(dim=1, keepdim=True))
    weights = torch.stack([centres, torch.ones_like(centres)], dim=1)      # (N, 2, B)
    moments = torch.matmul(weights, e.flatten(2))                           # (N, 2, h*w)
    coarse = (moments[:, :1] / moments[:, 1:]).reshape_as(e[:, :1])
    probs = e / e.sum(dim=1, keepdim=True) if with_probs else None
    return coarse, probs


def sparse_fill(sparse: torch.Tensor, mask: torch.Tensor, levels: int = 5
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Coarse-to-fine densification of sparse depth by normalised averaging (ONNX: AvgPool, Div,
    Where, Resize). Level l averages the valid values in 2^l x 2^l cells; each pixel takes the
    finest level whose cell holds a value (level 0: the pixel's own value). Returns
    (fill (N,1,h,w), has (N,1,h,w) 1 where any level had a value, level (N,1,h,w) = finest level
    used / ``levels``, 1 where none). The pyramid is merged at stride 2 and upsampled once, so the
    full-resolution cost is one resize and a few one-channel products."""
    num, den = F.avg_pool2d(sparse * mask, 2), F.avg_pool2d(mask, 2)
    nums, dens = [num], [den]
    for _ in range(levels - 1):
        nums.append(F.avg_pool2d(nums[-1], 2))
        dens.append(F.avg_pool2d(dens[-1], 2))
    fill = nums[-1] / dens[-1].clamp_min(1e-6)
    has = (dens[-1] > 0).float()
    level = torch.ones_like(fill)
    for i in range(levels - 2, -1, -1):     # pyramid index i is level i + 1
        fill = F.interpolate(fill, scale_factor=2.0, mode="nearest")
        has = F.interpolate(has, scale_factor=2.0, mode="nearest")
        level = F.interpolate(level, scale_factor=2.0, mode="nearest")
        here = dens[i] > 0
        fill = torch.where(here, nums[i] / dens[i].clamp_min(1e-6), fill)
        has = torch.where(here, torch.ones_like(has), has)
        level = torch.where(here, torch.full_like(level, (i + 1) / levels), level)
    up = torch.cat([fill, has, level], dim=1)
    up = F.interpolate(up, scale_factor=2.0, mode="nearest")
    # Full resolution, where mask is 0 or 1: arithmetic instead of Where (~5x faster in ONNX
    # Runtime at this size); the same values up to one rounding of the fill.
    fill = up[:, 0:1] + mask * (sparse - up[:, 0:1])
    has = torch.maximum(up[:, 1:2], mask)
    level = up[:, 2:3] * (1.0 - mask)
    return fill, has, level


def _dilate(x: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """Grey dilation by a kh x kw rectangle (one MaxPool)."""
    return F.max_pool2d(x, (kh, kw), 1, (kh // 2, kw // 2))


def _binomial5(x: torch.Tensor) -> torch.Tensor:
    """The 5x5 binomial blur ([1, 4, 6, 4, 1] / 16 in each direction, zeros outside the map),
    written as four 2x2 average pools of stride 1 after a 2-pixel zero pad: [1, 4, 6, 4, 1] / 16
    is [1, 1] / 2 convolved with itself four times. The same function as a 5x5 convolution, and
    ~3x faster than a one-channel convolution in ONNX Runtime."""
    x = F.pad(x, (2, 2, 2, 2))
    for _ in range(4):
        x = F.avg_pool2d(x, 2, 1)
    return x


def nearest_fill(sparse: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Densification in which the NEAREST return wins, as in the classical completion
    (:mod:`dmd3c_ros.core.classical`, Ku et al. 2018) up to its small-hole fill, with standard
    ONNX operators (MaxPool, AveragePool, arithmetic). On the inverse ``1.01 - sparse`` (nearer ->
    larger, 0 = no value): dilation by a 5x5 diamond (the maximum of 3x3, 5x1 and 1x5 max
    pools), a 5x5 closing, empty pixels filled by a 7x7 dilation, then a 5x5 binomial blur
    normalised over the filled pixels. Returns (fill (N,1,h,w) in the units of ``sparse``, 0
    where none; has (N,1,h,w), 1 where filled). Returns beyond 1.01 units are left out.

    Why: averaging (:func:`sparse_fill`) mixes a foreground object's returns with the
    background's seen past its edge (the LiDAR sits apart from the camera); the nearest return
    is right far more often. On the synthetic validation drives, in the rows the LiDAR covers,
    this fill alone is 0.98 m RMSE against 1.59 m for the averaging pyramid."""
    inv = torch.relu(mask * (1.01 - sparse))
    inv = torch.maximum(torch.maximum(_dilate(inv, 3, 3), _dilate(inv, 5, 1)), _dilate(inv, 1, 5))
    inv = -_dilate(-_dilate(inv, 5, 5), 5, 5)
    inv = torch.maximum(inv, (inv <= 0).float() * _dilate(inv, 7, 7))
    has = (inv > 0).float()
    num, den = _binomial5(inv), _binomial5(has)
    inv = has * num / den.clamp_min(1e-6)
    return has * (1.01 - inv), has


class Student(nn.Module):
    """Depth completion / mono student; see the module docstring for the contract."""

    def __init__(self, config: StudentConfig | None = None):
        super().__init__()
        cfg = config or VARIANTS["tiny"]
        self.config = cfg
        w, s = cfg.widths, cfg.sparse_widths
        # RGB encoder: stem (stride 2) then stages at strides 4..32.
        self.stem = nn.Sequential(_conv_bn_relu(3, w[0], 3, 2),
                                  *[SeparableBlock(w[0], w[0]) for _ in range(cfg.blocks[0])])
        self.stages = nn.ModuleList(_stage(w[i - 1], w[i], cfg.blocks[i], 2)
                                    for i in range(1, len(STRIDES)))
        # Sparse branch on [sparse, mask]: one strided conv per scale, projected into the RGB width.
        sparse_in = [4 if cfg.sparse_fill else 2] + list(s[:-1])
        self.sparse_convs = nn.ModuleList(_conv_bn_relu(sparse_in[i], s[i], 3, 2)
                                          for i in range(len(STRIDES)))
        self.sparse_proj = nn.ModuleList(nn.Conv2d(s[i], w[i], 1) for i in range(len(STRIDES)))
        # Decoder: stride 32 -> 2, fusing encoder skips.
        dec_in = [w[-1]] + list(cfg.decoder_widths[:-1])
        skips = list(reversed(w[:-1]))
        self.fuse = nn.ModuleList(_conv_bn_relu(dec_in[i] + skips[i], cfg.decoder_widths[i], 1)
                                  for i in range(len(skips)))
        self._fuse_low = tuple(dec_in)  # channels of the upsampled input of each fusion
        self.dec_blocks = nn.ModuleList(SeparableBlock(c, c) for c in cfg.decoder_widths)
        feat = cfg.decoder_widths[-1]
        # Hybrid bin head.
        self.bin_mlp = nn.Sequential(nn.Linear(w[-1], cfg.bin_hidden), nn.ReLU(inplace=True),
                                     nn.Linear(cfg.bin_hidden, cfg.bins))
        self.bin_logits = nn.Conv2d(cfg.decoder_widths[-1 if cfg.bin_stride == 2 else -2],
                                    cfg.bins, 1)
        # Refinement and uncertainty.
        rc = cfg.refine_channels
        heads = 3 if cfg.sparse_fill else 2    # log-depth residual, sigma, (LiDAR blend weight)
        sparse_channels = 4 if cfg.sparse_fill else 2
        self.refine_feat = nn.Conv2d(feat, rc, 1)
        if cfg.refine_stride == 1:
            self.full_rgb = _conv_bn_relu(3, cfg.full_res_channels, 3, 1)
            # Decoder features are projected to rc channels at stride 2, upsampled and added (no
            # wide full-resolution concatenation).
            self.refine_in = nn.Conv2d(1 + sparse_channels + cfg.full_res_channels, rc, 1)
            last = nn.Conv2d(rc, heads, 1)
        else:
            # Full resolution in through 2x2 stride-2 convolutions (space-to-depth and a 1x1
            # convolution in one: every full-resolution pixel keeps its own weights) ...
            self.refine_rgb = nn.Conv2d(3, rc, 2, 2)
            self.refine_sparse = nn.Conv2d(sparse_channels, rc, 2, 2, bias=False)
            self.refine_coarse = nn.Conv2d(1, rc, 1, bias=False)
            # ... and out through a 2x2 stride-2 transposed convolution (depth-to-space).
            last = nn.ConvTranspose2d(rc, heads, 2, 2)
        # No batch norm right after the sum (ONNX Runtime cannot fold it into a convolution);
        # the input convolution has a bias instead.
        self.refine = nn.Sequential(nn.ReLU(inplace=True),
                                    nn.Conv2d(rc, rc, 3, 1, 1, groups=rc, bias=False),
                                    nn.BatchNorm2d(rc), nn.ReLU(inplace=True), last)

    def _run(self, rgb: torch.Tensor, sparse: torch.Tensor, aux: bool = False):
        if not (torch.jit.is_tracing() or torch.jit.is_scripting()):
            h, w = rgb.shape[-2:]
            if h % 32 or w % 32:
                raise ValueError(f"Student input size {h}x{w} is not a multiple of 32")
        cfg = self.config
        mask = (sparse > 0).float()
        # Sparse branch: features at strides 2..32.
        sparse_feats = []
        if cfg.sparse_fill:
            fill, has, level = sparse_fill(sparse, mask)
            if cfg.fill == "nearest":  # nearest-return fill where it reaches, else the pyramid
                near, near_has = nearest_fill(sparse, mask)
                fill = fill + near_has * (near - fill)
                has = torch.maximum(has, near_has)
                level = level * (1.0 - near_has)
            sparse_in = torch.cat([sparse, mask, fill, level], dim=1)
        else:
            sparse_in = torch.cat([sparse, mask], dim=1)
        x = sparse_in
        for conv, proj in zip(self.sparse_convs, self.sparse_proj):
            x = conv(x)
            sparse_feats.append(proj(x))
        # Encoder.
        skips = []
        x = self.stem(rgb) + sparse_feats[0]
        skips.append(x)
        for stage, sf in zip(self.stages, sparse_feats[1:]):
            x = stage(x) + sf
            skips.append(x)
        bottleneck = x
        # Per-image bin centres in (0, 1).
        widths = F.softplus(self.bin_mlp(bottleneck.mean(dim=(2, 3)))) + 1e-3
        widths = widths / widths.sum(dim=1, keepdim=True)
        centres = cfg.d_min + (1.0 - cfg.d_min) * (torch.cumsum(widths, dim=1) - 0.5 * widths)
        # Decoder.
        bin_stage = len(self.fuse) - (1 if cfg.bin_stride == 2 else 2)
        for stage, (fuse, block, skip, c) in enumerate(zip(
                self.fuse, self.dec_blocks, reversed(skips[:-1]), self._fuse_low)):
            x = block(_fuse_up(fuse, x, skip, c))
            if stage == bin_stage:
                bin_features = x                            # stride bin_stride
        features = x                                        # stride 2
        coarse, probs = _bin_expectation(self.bin_logits(bin_features), centres, aux)
        if cfg.bin_stride == 4:  # to stride 2 for the refinement
            coarse = _up2(coarse)
        coarse_full = _up2(coarse)
        if cfg.refine_stride == 1:
            parts = [coarse_full, sparse, mask, self.full_rgb(rgb)]
            if cfg.sparse_fill:
                parts += [fill, level]
            out = self.refine(self.refine_in(torch.cat(parts, dim=1))
                              + _up2(self.refine_feat(features)))
        else:
            out = self.refine(self.refine_rgb(rgb) + self.refine_sparse(sparse_in)
                              + self.refine_coarse(coarse) + self.refine_feat(features))
        base = coarse_full
        if cfg.sparse_fill:  # blend towards the densified LiDAR where there is any
            alpha = torch.sigmoid(out[:, 2:3]) * has
            base = alpha * fill + (1.0 - alpha) * coarse_full
        depth = base * torch.exp(cfg.refine_bound * torch.tanh(out[:, :1]))
        if cfg.sigma_activation == "softplus":
            uncertainty = F.softplus(out[:, 1:2]) + 1e-4
        else:  # ONNX Runtime's Softplus costs ~2 ms at full resolution; Clip + Exp ~0.3 ms
            uncertainty = torch.exp(out[:, 1:2].clamp(-9.0, 2.0))
        return depth, uncertainty, coarse_full, centres, probs, features, bottleneck

    def forward(self, rgb: torch.Tensor, sparse: torch.Tensor):
        """(N,3,h,w), (N,1,h,w) -> depth, uncertainty, both (N,1,h,w) in depth_scale units."""
        depth, uncertainty = self._run(rgb, sparse, aux=False)[:2]
        return depth, uncertainty

    def forward_with_aux(self, rgb: torch.Tensor, sparse: torch.Tensor) -> dict[str, torch.Tensor]:
        """For training only. Keys: ``depth``, ``uncertainty`` (N,1,h,w); ``coarse_depth`` (N,1,h,w),
        the bin expectation before refinement; ``bin_centres`` (N,B) increasing in (0,1);
        ``bin_probs`` (N,B,h/2,w/2), summing to 1 over B; ``features`` (N,C,h/2,w/2), the last
        decoder features; ``bottleneck`` (N,C5,h/32,w/32), the encoder output."""
        keys = ("depth", "uncertainty", "coarse_depth", "bin_centres", "bin_probs", "features",
                "bottleneck")
        return dict(zip(keys, self._run(rgb, sparse, aux=True)))


def build_student(variant: str = "tiny", **overrides) -> Student:
    """Factory for model specs (``dmd3c_ros.training.student:build_student``): a named variant,
    optionally with :class:`StudentConfig` fields overridden (lists are accepted for tuples)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown student variant {variant!r}; choose from {sorted(VARIANTS)}")
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return Student(replace(VARIANTS[variant], **fixed))


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def gflops(model: nn.Module, h: int, w: int) -> float:
    """Billions of multiply-adds for one (3,h,w) image with full LiDAR-shaped input.

    Counts convolutions (transposed ones too) and matrix products, as computed (the convention
    of most depth-completion papers' "GFLOPs", 1 multiply-add = 1), with
    ``torch.utils.flop_counter``; batch norm, activations, resizing, softmax and the bin
    expectation are left out. Runs one forward pass in eval mode without gradients.
    """
    from torch.utils.flop_counter import FlopCounterMode
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, h, w), torch.zeros(1, 1, h, w))
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2 / 1e9  # the counter counts a multiply-add as 2


__all__ = ["StudentConfig", "VARIANTS", "Student", "SeparableBlock", "build_student",
           "count_parameters", "gflops", "STRIDES"]
