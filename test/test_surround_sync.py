"""SweepAssembler: the views of one sweep gathered from a ring of cameras (pure Python, a fake
clock)."""
import pytest

from dmd3c_ros.ros.surround_sync import NS_PER_S, SweepAssembler

CAMERAS = ["front", "left", "right"]
MS = NS_PER_S // 1000  # nanoseconds per millisecond


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def make(**kwargs):
    clock = Clock()
    options = dict(slop=0.05, wait=0.1, lidar_timeout=0.5, camera_timeout=1.0, clock=clock)
    options.update(kwargs)
    return SweepAssembler(CAMERAS, **options), clock


def test_a_sweep_with_every_view_is_emitted_at_once_in_camera_order():
    asm, clock = make()
    t = 5 * NS_PER_S
    assert asm.add_view("right", t - 30 * MS, "R") == []
    assert asm.add_sweep(t, "S") == []
    assert asm.add_view("front", t - 10 * MS, "F") == []
    (ready,) = asm.add_view("left", t + 20 * MS, "L")
    assert ready.sweep == "S" and ready.stamp_ns == t and ready.missing == []
    assert list(ready.views) == CAMERAS and ready.views == {"front": "F", "left": "L",
                                                            "right": "R"}
    assert asm.poll() == []


def test_each_camera_gives_the_view_nearest_the_sweep_within_the_slop():
    asm, clock = make()
    t = 5 * NS_PER_S
    asm.add_view("front", t - 40 * MS, "far")
    asm.add_view("front", t - 5 * MS, "near")
    asm.add_view("left", t - 60 * MS, "outside the slop")
    asm.add_sweep(t, "S")
    asm.add_view("right", t, "R")
    assert asm.poll() == []  # left has no view within 50 ms yet: wait
    (ready,) = asm.add_view("left", t + 1 * MS, "L")
    assert ready.views == {"front": "near", "left": "L", "right": "R"}
    # Older than the emitted sweep by more than the slop: dropped at once, counted.
    assert asm.stats.unmatched == {"front": 0, "left": 1, "right": 0}
    clock.now += 0.11  # the other front view found no sweep within batch_wait: dropped
    assert asm.poll() == [] and asm.stats.unmatched == {"front": 1, "left": 1, "right": 0}


def test_a_missing_view_waits_batch_wait_then_the_others_go_without_it():
    asm, clock = make()
    t = 5 * NS_PER_S
    asm.add_sweep(t, "S")
    asm.add_view("front", t, "F")
    asm.add_view("left", t, "L")
    clock.now += 0.09
    assert asm.poll() == []
    clock.now += 0.02
    (ready,) = asm.poll()
    assert ready.views == {"front": "F", "left": "L"} and ready.missing == ["right"]
    assert asm.stats.incomplete_sets == 1


def test_a_stale_camera_is_no_longer_waited_for_and_is_reported():
    asm, clock = make(camera_timeout=1.0)
    for i in range(3):  # all three cameras send, then "right" stops
        t = (5 + i) * NS_PER_S
        clock.now += 0.1
        for camera in CAMERAS:
            asm.add_view(camera, t, camera)
        assert len(asm.add_sweep(t, "S")) == 1
    for i in range(3, 9):  # front and left go on at 5 Hz
        clock.now += 0.2
        t = (5 + i) * NS_PER_S
        asm.add_view("front", t, "F")
        asm.add_view("left", t, "L")
        asm.add_sweep(t, "S")
        clock.now += 0.1
        asm.poll()
    assert set(asm.stale()) == {"right"} and asm.stale()["right"] == pytest.approx(1.8)
    t = 20 * NS_PER_S
    asm.add_sweep(t, "S")
    asm.add_view("front", t, "F")
    (ready,) = asm.add_view("left", t, "L")  # emitted at once: right is no longer waited for
    assert ready.missing == [] and set(ready.views) == {"front", "left"}


def test_after_a_pause_of_every_input_all_cameras_are_waited_for_again():
    asm, clock = make(camera_timeout=1.0)
    t = 5 * NS_PER_S
    asm.add_sweep(t, "S")
    for camera in CAMERAS:
        asm.add_view(camera, t, camera)
    clock.now += 5.0  # nothing for 5 s (a paused bag)
    assert set(asm.stale()) == set(CAMERAS)
    t += 5 * NS_PER_S
    asm.add_sweep(t, "S")
    assert asm.add_view("front", t, "F") == []  # left and right are still waited for
    asm.add_view("left", t, "L")
    (ready,) = asm.add_view("right", t, "R")
    assert ready.missing == [] and asm.stale() == {}


def test_a_camera_that_never_sent_is_stale_after_the_timeout():
    asm, clock = make(camera_timeout=1.0)
    assert asm.stale() == {}
    clock.now += 1.1
    assert asm.stale() == dict.fromkeys(CAMERAS)


def test_sensors_starting_late_are_all_waited_for_at_first():
    asm, clock = make(camera_timeout=1.0)
    clock.now += 5.0  # the node started 5 s before its sensors
    t = 5 * NS_PER_S
    assert asm.add_view("front", t, "F") == []
    asm.add_sweep(t, "S")
    asm.add_view("left", t, "L")
    (ready,) = asm.add_view("right", t, "R")
    assert ready.missing == [] and len(ready.views) == 3


def test_without_lidar_views_are_gathered_camera_only():
    asm, clock = make(lidar_timeout=0.5)
    t = 5 * NS_PER_S
    asm.add_view("front", t, "F0")
    clock.now += 0.6  # no sweep since the first view: the LiDAR is not live
    assert not asm.lidar_live()
    (alone,) = asm.poll()  # F0 waited longer than batch_wait for the others
    assert alone.sweep is None and alone.views == {"front": "F0"}
    assert alone.missing == ["left", "right"]
    t += NS_PER_S // 10
    asm.add_view("left", t + 10 * MS, "L1")
    asm.add_view("front", t, "F1")
    assert asm.add_view("right", t + 20 * MS, "R1") == []  # a sweep may still come for them
    clock.now += 0.11
    (ready,) = asm.poll()
    assert ready.sweep is None and ready.views == {"front": "F1", "left": "L1", "right": "R1"}
    assert ready.stamp_ns == t and asm.stats.camera_only_sets == 2


def test_a_sweep_returning_takes_the_views_waiting_camera_only():
    asm, clock = make(lidar_timeout=0.5)
    t = 5 * NS_PER_S
    asm.add_view("front", t, "F0")
    clock.now += 0.6
    assert not asm.lidar_live() and len(asm.poll()) == 1  # F0 alone, camera-only
    t += NS_PER_S // 10
    for camera in CAMERAS:
        asm.add_view(camera, t, camera)
    assert asm.poll() == []
    clock.now += 0.05
    (ready,) = asm.add_sweep(t + 20 * MS, "S")
    assert ready.sweep == "S" and len(ready.views) == 3 and asm.stats.camera_only_sets == 1


def test_with_live_lidar_a_view_without_sweep_is_dropped_after_the_wait():
    asm, clock = make()
    t = 5 * NS_PER_S
    for camera in CAMERAS:
        asm.add_view(camera, t, camera)
    assert len(asm.add_sweep(t, "S")) == 1
    asm.add_view("front", t + NS_PER_S // 10, "F")  # its sweep is lost
    clock.now += 0.15
    assert asm.poll() == []
    assert asm.stats.unmatched["front"] == 1


def test_a_sweep_without_any_view_is_dropped_after_the_wait():
    asm, clock = make()
    asm.add_sweep(5 * NS_PER_S, "S")
    clock.now += 0.2
    assert asm.poll() == [] and asm.stats.empty_sweeps == 1


def test_stamps_jumping_back_clear_what_is_pending():
    asm, clock = make()
    t = 50 * NS_PER_S
    asm.add_view("front", t, "old")
    asm.add_view("left", t - 3 * NS_PER_S, "after a bag loop")
    assert asm.stats.resets == 1 and asm.stats.unmatched["front"] == 1
    asm.add_sweep(t - 3 * NS_PER_S, "S")
    asm.add_view("front", t - 3 * NS_PER_S, "F")
    (ready,) = asm.add_view("right", t - 3 * NS_PER_S, "R")
    assert ready.views == {"front": "F", "left": "after a bag loop", "right": "R"}


def test_sets_leave_in_stamp_order():
    asm, clock = make()
    t = 5 * NS_PER_S
    asm.add_sweep(t, "S1")
    asm.add_view("front", t, "F1")
    asm.add_sweep(t + NS_PER_S // 10, "S2")
    for camera in CAMERAS:  # the second sweep complete before the first
        asm.add_view(camera, t + NS_PER_S // 10, camera + "2")
    assert asm.poll() == []  # S1 still waits for its other views, S2 behind it
    clock.now += 0.11
    first, second = asm.poll()
    assert first.sweep == "S1" and first.views == {"front": "F1"}
    assert first.missing == ["left", "right"]
    assert second.sweep == "S2" and second.views == {c: c + "2" for c in CAMERAS}


def test_unknown_camera_and_empty_rig_are_errors():
    asm, _ = make()
    with pytest.raises(KeyError, match="unknown camera"):
        asm.add_view("rear", 0, "x")
    with pytest.raises(ValueError, match="at least one camera"):
        SweepAssembler([], slop=0.05, wait=0.1, lidar_timeout=0.5, camera_timeout=1.0)


def test_a_clock_put_right_keeps_the_views_that_can_still_pair():
    asm, clock = make()
    t = 5 * NS_PER_S
    asm.add_sweep(t + 5 * NS_PER_S, "S_future")  # the LiDAR's clock 5 s ahead
    for camera in CAMERAS:
        asm.add_view(camera, t, camera)
    (ready,) = asm.add_sweep(t + 10 * MS, "S")  # clock put right: only S_future is dropped
    assert ready.sweep == "S" and len(ready.views) == 3
    assert asm.stats.resets == 1 and asm.stats.empty_sweeps == 1
