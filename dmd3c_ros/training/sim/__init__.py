"""The synthetic driving world and its sensors.

Frames and units (REP 103 / 105): metres; the world frame has x along the road, y left, z up, the
ground at z = 0; a vehicle's ``base_link`` has x forward, y left, z up; a LiDAR frame is
x forward, y left, z up; a camera optical frame is x right, y down, z forward. Poses are (4, 4)
float64 rigid transforms named ``a_from_b`` (they take points of frame b into frame a).

Modules: ``raycast`` (the one ray caster, Embree through embreex), ``world`` (procedural scenes),
``render`` (camera images and ground-truth depth), ``lidar`` (LiDAR models and their simulation),
``from_depth`` (DMD3C stage 1: LiDAR simulated from a depth map through a mesh), ``rig`` (sensor
rigs), ``drive`` (a drive over time) and ``writers`` (KITTI and rosbag2 output).
"""
