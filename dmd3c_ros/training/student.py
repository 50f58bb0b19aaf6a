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
- per-pixel bin probabilities at stride 2: softmax over bins of a 1x1 convolution;
- coarse depth = expectation of the centres under the probabilities, upsampled to full resolution;
- with ``sparse_fill`` (default) the LiDAR is also densified inside the network
  (:func:`sparse_fill`: normalised averaging in 2^l cells, coarse to fine, l <= 5), fed to the sparse
  branch and the refinement, and blended in: ``base = alpha * fill + (1 - alpha) * coarse`` with a
  learnt per-pixel ``alpha`` (0 where no LiDAR value is within reach, so mono mode is the bin
  estimate alone): completion starts from the measured depths rather than re-deriving them;
- a bounded residual refinement (1x1, depthwise 3x3, 1x1 convolutions) at full resolution from the
  coarse depth, the sparse input, its mask (and the fill), a full-resolution RGB feature and the
  decoder features (projected at stride 2, upsampled, added):
  ``depth = base * exp(refine_bound * tanh(r))`` (positive, within a factor ``exp(refine_bound)``).

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
    full_res_channels: int = 4      # RGB feature at full resolution for the refinement
    refine_channels: int = 8
    refine_bound: float = 0.5       # log-space bound of the residual refinement
    d_min: float = 1e-3             # smallest bin centre, network units
    sparse_fill: bool = True        # densify the LiDAR in-network and blend it into the output

    def __post_init__(self):
        for key in ("widths", "blocks", "sparse_widths"):
            if len(getattr(self, key)) != len(STRIDES):
                raise ValueError(f"StudentConfig.{key} needs {len(STRIDES)} entries")
        if len(self.decoder_widths) != len(STRIDES) - 1:
            raise ValueError(f"StudentConfig.decoder_widths needs {len(STRIDES) - 1} entries")
        if self.bins < 2:
            raise ValueError("StudentConfig.bins must be >= 2")


VARIANTS: dict[str, StudentConfig] = {
    "tiny": StudentConfig(),
    "small": StudentConfig(
        name="small", widths=(24, 48, 96, 192, 320), blocks=(1, 1, 2, 3, 2),
        decoder_widths=(160, 96, 48, 24), sparse_widths=(8, 16, 16, 32, 32), bins=64,
        bin_hidden=128, full_res_channels=8, refine_channels=12),
    "base": StudentConfig(
        name="base", widths=(32, 64, 128, 320, 512), blocks=(1, 2, 3, 4, 3),
        decoder_widths=(256, 128, 64, 32), sparse_widths=(16, 16, 32, 32, 64), bins=128,
        bin_hidden=256, full_res_channels=12, refine_channels=16),
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


def _channel_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over dim 1 written out (ReduceMax, Sub, Exp, ReduceSum, Div): ONNX Runtime's CPU
    Softmax on a non-last axis of an NCHW tensor transposes and was ~6x slower than the network."""
    e = torch.exp(logits - logits.amax(dim=1, keepdim=True))
    return e / e.sum(dim=1, keepdim=True)


def sparse_fill(sparse: torch.Tensor, mask: torch.Tensor, levels: int = 5
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Coarse-to-fine densification of sparse depth by normalised averaging (ONNX: AvgPool, Div,
    Where, Resize). Level l averages the valid values in 2^l x 2^l cells; each pixel takes the
    finest level whose cell holds a value (level 0: the pixel's own value). Returns
    (fill (N,1,h,w), has (N,1,h,w) 1 where any level had a value, level (N,1,h,w) = finest level
    used / ``levels``, 1 where none). The pyramid is merged at stride 2 and upsampled once, so the
    full-resolution cost is one resize and one select."""
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
    here = mask > 0
    fill = torch.where(here, sparse, up[:, 0:1])
    has = torch.where(here, torch.ones_like(mask), up[:, 1:2])
    level = torch.where(here, torch.zeros_like(mask), up[:, 2:3])
    return fill, has, level


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
        self.dec_blocks = nn.ModuleList(SeparableBlock(c, c) for c in cfg.decoder_widths)
        feat = cfg.decoder_widths[-1]
        # Hybrid bin head.
        self.bin_mlp = nn.Sequential(nn.Linear(w[-1], cfg.bin_hidden), nn.ReLU(inplace=True),
                                     nn.Linear(cfg.bin_hidden, cfg.bins))
        self.bin_logits = nn.Conv2d(feat, cfg.bins, 1)
        # Full-resolution refinement and uncertainty.
        self.full_rgb = _conv_bn_relu(3, cfg.full_res_channels, 3, 1)
        rc = cfg.refine_channels
        # Full resolution is the costly part: decoder features are projected to rc channels at
        # stride 2, upsampled and added (no wide full-resolution concatenation).
        self.refine_feat = nn.Conv2d(feat, rc, 1)
        self.refine_in = nn.Conv2d(3 + cfg.full_res_channels + (2 if cfg.sparse_fill else 0), rc,
                                   1)
        # No batch norm right after the sum (ONNX Runtime cannot fold it into a convolution and
        # it costs ~2 ms at full resolution); refine_in has a bias instead.
        self.refine = nn.Sequential(nn.ReLU(inplace=True),
                                    nn.Conv2d(rc, rc, 3, 1, 1, groups=rc, bias=False),
                                    nn.BatchNorm2d(rc), nn.ReLU(inplace=True),
                                    nn.Conv2d(rc, 3 if cfg.sparse_fill else 2, 1))

    def _run(self, rgb: torch.Tensor, sparse: torch.Tensor):
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
            x = torch.cat([sparse, mask, fill, level], dim=1)
        else:
            x = torch.cat([sparse, mask], dim=1)
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
        for fuse, block, skip in zip(self.fuse, self.dec_blocks, reversed(skips[:-1])):
            x = block(fuse(torch.cat([_up2(x), skip], dim=1)))
        features = x                                        # stride 2
        probs = _channel_softmax(self.bin_logits(features))
        coarse = (probs * centres[:, :, None, None]).sum(dim=1, keepdim=True)
        coarse_full = _up2(coarse)
        parts = [coarse_full, sparse, mask, self.full_rgb(rgb)]
        if cfg.sparse_fill:
            parts += [fill, level]
        out = self.refine(self.refine_in(torch.cat(parts, dim=1))
                          + _up2(self.refine_feat(features)))
        base = coarse_full
        if cfg.sparse_fill:  # blend towards the densified LiDAR where there is any
            alpha = torch.sigmoid(out[:, 2:3]) * has
            base = alpha * fill + (1.0 - alpha) * coarse_full
        depth = base * torch.exp(cfg.refine_bound * torch.tanh(out[:, :1]))
        uncertainty = F.softplus(out[:, 1:2]) + 1e-4
        return depth, uncertainty, coarse_full, centres, probs, features, bottleneck

    def forward(self, rgb: torch.Tensor, sparse: torch.Tensor):
        """(N,3,h,w), (N,1,h,w) -> depth, uncertainty, both (N,1,h,w) in depth_scale units."""
        depth, uncertainty = self._run(rgb, sparse)[:2]
        return depth, uncertainty

    def forward_with_aux(self, rgb: torch.Tensor, sparse: torch.Tensor) -> dict[str, torch.Tensor]:
        """For training only. Keys: ``depth``, ``uncertainty`` (N,1,h,w); ``coarse_depth`` (N,1,h,w),
        the bin expectation before refinement; ``bin_centres`` (N,B) increasing in (0,1);
        ``bin_probs`` (N,B,h/2,w/2), summing to 1 over B; ``features`` (N,C,h/2,w/2), the last
        decoder features; ``bottleneck`` (N,C5,h/32,w/32), the encoder output."""
        keys = ("depth", "uncertainty", "coarse_depth", "bin_centres", "bin_probs", "features",
                "bottleneck")
        return dict(zip(keys, self._run(rgb, sparse)))


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

    Counts ``nn.Conv2d`` and ``nn.Linear`` layers only (the convention of most depth-completion
    papers' "GFLOPs", 1 multiply-add = 1); batch norm, activations, resizing, softmax and the bin
    expectation are left out. Runs one forward pass in eval mode without gradients.
    """
    total = [0]

    def conv_hook(module, _inputs, output):
        kh, kw = module.kernel_size
        total[0] += output[0].numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module, _inputs, output):
        total[0] += output[0].numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, h, w), torch.zeros(1, 1, h, w))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total[0] / 1e9


__all__ = ["StudentConfig", "VARIANTS", "Student", "SeparableBlock", "build_student",
           "count_parameters", "gflops", "STRIDES"]
