"""Dataset loaders (numpy only): every loader yields the one sample dictionary of ``sample``.

Loaders (each ``len()``, ``loader[i] -> sample``, iteration, ``describe()``):

- ``KittiDepthCompletion``: KITTI depth completion train/val drives + KITTI raw (also the output of
  ``dmd3c sim --format kitti``; the expected tree is in ``kitti_dc``'s docstring);
- ``KittiDepthSelection``: ``val_selection_cropped`` and ``test_depth_completion_anonymous``;
- ``KittiFrameFolders`` / ``KittiObjectFrames``: one folder per frame (../shared/data) and the
  KITTI object benchmark;
- ``KittiStereo2015``: stereo pairs with ground-truth disparity, depth = f * B / d;
- ``NuScenesSampleFolder`` / ``NuScenesDevkit`` (``open_nuscenes`` picks): one sample per camera;
- ``RosbagFrames``: rosbag2 bags (sqlite3, mcap) with a ``RosbagTopics`` mapping.
"""
from .kitti_dc import KittiDepthCompletion
from .kitti_frames import KittiFrameFolders, KittiObjectFrames
from .kitti_selection import KittiDepthSelection
from .kitti_stereo import KittiStereo2015
from .nuscenes import NuScenesDevkit, NuScenesSampleFolder, open_nuscenes
from .rosbag import RosbagFrames, RosbagTopics
from .sample import (SAMPLE_KEYS, LayoutError, SampleDataset, SampleError, make_sample,
                     validate_sample)

__all__ = ["KittiDepthCompletion", "KittiDepthSelection", "KittiFrameFolders",
           "KittiObjectFrames", "KittiStereo2015", "NuScenesDevkit", "NuScenesSampleFolder",
           "open_nuscenes", "RosbagFrames", "RosbagTopics", "SAMPLE_KEYS", "LayoutError",
           "SampleDataset", "SampleError", "make_sample", "validate_sample"]
