"""The frames ``dmd3c eval`` reads: a rosbag2 bag (one loader per image topic) or a KITTI-format
folder (the sample, object-benchmark or official depth-completion layout)."""
from __future__ import annotations

from pathlib import Path


def detect_kind(source) -> str:
    """'bag' when ``source`` holds a rosbag2 ``metadata.yaml``, else 'kitti'."""
    return "bag" if (Path(source) / "metadata.yaml").is_file() else "kitti"


def open_bag(bag, *, image_topics, camera_info_topics=None, points_topic=None, gt_topics=None,
             slop: float = 0.05, lidar_to_camera=None) -> list[tuple[str, object]]:
    """(camera name = image topic, RosbagFrames) per image topic."""
    from dmd3c_ros.training.data import RosbagFrames, RosbagTopics
    image_topics = list(image_topics or [])
    if not image_topics:
        raise ValueError("--bag needs --image-topic (and --points-topic for the LiDAR)")
    infos = list(camera_info_topics or []) or [None] * len(image_topics)
    gts = list(gt_topics or []) or [None] * len(image_topics)
    for label, values in (("--camera-info-topic", infos), ("--gt-topic", gts)):
        if len(values) != len(image_topics):
            raise ValueError(f"{len(values)} {label} for {len(image_topics)} --image-topic: give "
                             "one per image topic")
    cameras = []
    for image, info, gt in zip(image_topics, infos, gts):
        topics = RosbagTopics(image=image, camera_info=info, points=points_topic, gt=gt)
        try:
            cameras.append((image, RosbagFrames(bag, topics, slop=slop,
                                                lidar_to_camera=lidar_to_camera)))
        except LookupError as error:  # no /tf_static path between the LiDAR and the camera
            raise ValueError(str(error)) from error
    return cameras


def open_kitti(root, *, points: bool, raw_root=None) -> list[tuple[str, object]]:
    """(camera name, loader) for a KITTI folder: the sample layout (folders of frames with
    image_02.png; camera 2), the object-benchmark layout (folders with image_2.png, calib.txt
    and velodyne.bin, or <split>/image_2/; camera 2, no depth ground truth: use --lidar-split)
    or the official depth-completion layout (cameras 2 and 3)."""
    from dmd3c_ros.training.data import KittiDepthCompletion, KittiFrameFolders, LayoutError
    from dmd3c_ros.training.data.kitti_frames import KittiObjectFrames
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"{root}: no such folder (KITTI-format folder)")
    if (root / "image_2.png").is_file() or (root / "image_2").is_dir() or any(
            (p / "image_2.png").is_file() or (p / "image_2").is_dir()
            for p in root.iterdir() if p.is_dir()):
        return [("image_2", KittiObjectFrames(root, stereo=False))]
    if (root / "image_02.png").is_file() or any((p / "image_02.png").is_file()
                                                 for p in root.iterdir() if p.is_dir()):
        return [("image_02", KittiFrameFolders(root, cameras=(2,), stereo=False, points=points))]
    if any((p / "proj_depth").is_dir() for p in root.iterdir() if p.is_dir()):
        splits = [(root.parent, root.name)]  # the split folder itself
    else:
        splits = [(root, p.name) for p in sorted(root.iterdir())
                  if p.is_dir() and any((d / "proj_depth").is_dir() for d in p.iterdir()
                                        if d.is_dir())]
    loaders, errors = [], []
    for base, split in splits:
        for index in (2, 3):
            try:
                loader = KittiDepthCompletion(base, split, raw_root=raw_root or base,
                                              cameras=(index,), stereo=False, points=points)
            except LayoutError as error:
                errors.append(str(error))
                continue
            loaders.append((f"image_0{index}", loader))
    if not loaders:
        raise LayoutError(f"{root}: neither KITTI frame folders (<frame>/image_02.png) nor the "
                          "depth-completion layout (<split>/<drive>/proj_depth)"
                          + (f": {errors[0]}" if errors else ""))
    return loaders


__all__ = ["detect_kind", "open_bag", "open_kitti"]
