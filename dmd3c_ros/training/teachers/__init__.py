"""Teachers behind one interface (``Teacher``): what the student is distilled from.

- ``DepthAnythingV2Teacher``: Depth Anything V2 through ``transformers``, from a local weights
  directory (relative inverse depth). ``transformers`` is imported only when it is built.
- ``StereoTeacher``: OpenCV semi-global block matching on a rectified pair (metric depth).
- ``SimulatedMonoTeacher``: for synthetic data, ground truth degraded into what a monocular model
  outputs (relative inverse depth); it is a simulation, not a network.
"""
from .base import METRIC_DEPTH, RELATIVE_INVERSE_DEPTH, Teacher, check_rgb
from .depth_anything import DepthAnythingV2Teacher, WeightsError
from .simulated import SimulatedMonoTeacher
from .stereo import StereoTeacher, disparity_errors

__all__ = ["Teacher", "RELATIVE_INVERSE_DEPTH", "METRIC_DEPTH", "check_rgb",
           "DepthAnythingV2Teacher", "WeightsError", "StereoTeacher", "disparity_errors",
           "SimulatedMonoTeacher"]
