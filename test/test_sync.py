"""Approximate time synchronisation: the pure synchroniser, the wiring of one set of
subscriptions into several synchronisers (ours and, through a stand-in, message_filters'), and a
real rclpy graph. No timing assertions: timeouts only bound how long a failing test waits."""
from __future__ import annotations

import itertools
import random
import sys
import threading
import time
import types
from types import SimpleNamespace

import pytest

from dmd3c_ros.ros.sync import (ApproximateTimeSync, SyncGroup, header_stamp_ns,
                                make_synchronizer, make_synchronizers, stamp_to_ns)

NS = 10**9


def stamped(label, t: float | None = None, ns: int | None = None):
    """A stand-in message with ``header.stamp.sec/nanosec`` (t in seconds, or ns)."""
    ns = round(t * NS) if ns is None else ns
    stamp = SimpleNamespace(sec=ns // NS, nanosec=ns % NS)
    return SimpleNamespace(label=label, header=SimpleNamespace(stamp=stamp))


class Collector:
    def __init__(self):
        self.sets = []

    def __call__(self, *msgs):
        self.sets.append(tuple(m.label for m in msgs))


# --- pure ApproximateTimeSync ---------------------------------------------------------------

def test_exact_stamps_match_two_inputs():
    out = Collector()
    sync = ApproximateTimeSync(2, 10, 0.05, out)
    assert not sync.add(stamped("img", 10.0), 0)
    assert sync.add(stamped("pts", 10.0), 1)
    assert out.sets == [("img", "pts")]
    assert (sync.matched, sync.dropped, sync.resets) == (1, 0, 0)
    assert sync.pending() == [0, 0]


def test_real_message_type_and_three_inputs():
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    msgs = [Image(), CameraInfo(), PointCloud2()]
    for m in msgs:
        m.header.stamp.sec, m.header.stamp.nanosec = 1_700_000_000, 123_456_789
    msgs[2].header.stamp.nanosec += 20_000_000  # LiDAR 20 ms later
    got = []
    sync = ApproximateTimeSync(3, 5, 0.03, lambda *m: got.append(m))
    for index, m in enumerate(msgs):
        sync.add(m, index)
    assert len(got) == 1 and all(a is b for a, b in zip(got[0], msgs))


@pytest.mark.parametrize("offset, matches", [(0.0, True), (0.01, True), (-0.049, True),
                                             (0.051, False), (-0.08, False), (1.0, False)])
def test_offset_within_slop_matches_and_beyond_never(offset, matches):
    out = Collector()
    sync = ApproximateTimeSync(2, 10, 0.05, out)
    sync.add(stamped("img", 5.0), 0)
    sync.add(stamped("pts", 5.0 + offset), 1)
    assert out.sets == ([("img", "pts")] if matches else [])


def test_slop_boundary_is_inclusive():
    out = Collector()
    sync = ApproximateTimeSync(2, 10, 0.05, out)
    sync.add(stamped("a", ns=10 * NS), 0)
    sync.add(stamped("b", ns=10 * NS + 50_000_001), 1)  # 1 ns beyond slop
    assert out.sets == []
    sync.add(stamped("c", ns=10 * NS + 50_000_000), 1)  # exactly slop
    assert out.sets == [("a", "c")]
    exact = Collector()
    zero = ApproximateTimeSync(2, 10, 0.0, exact)  # slop 0 = exact synchronisation
    zero.add(stamped("x", ns=7), 0)
    zero.add(stamped("y", ns=8), 1)
    zero.add(stamped("z", ns=7), 1)
    assert exact.sets == [("x", "z")]


def frame_msgs(i: int, lidar_offset: float = 0.03):
    t = 100.0 + 0.1 * i
    return [(stamped(f"img{i}", t), 0), (stamped(f"info{i}", t), 1),
            (stamped(f"pts{i}", t + lidar_offset), 2)]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_arrival_order_does_not_change_the_sets(order):
    out = Collector()
    sync = ApproximateTimeSync(3, 10, 0.05, out)
    for i in range(5):
        msgs = frame_msgs(i)
        for k in order:
            sync.add(*msgs[k])
    assert out.sets == [(f"img{i}", f"info{i}", f"pts{i}") for i in range(5)]
    assert sync.pending() == [0, 0, 0] and sync.dropped == 0


def test_points_before_images_across_frames():
    out = Collector()
    sync = ApproximateTimeSync(3, 10, 0.05, out)
    frames = [frame_msgs(i) for i in range(4)]
    for i in range(4):
        sync.add(*frames[i][2])  # all sweeps first
    for i in range(4):
        sync.add(*frames[i][0])
        sync.add(*frames[i][1])
    assert sorted(out.sets) == [(f"img{i}", f"info{i}", f"pts{i}") for i in range(4)]


def test_nearest_candidate_is_chosen():
    out = Collector()
    sync = ApproximateTimeSync(2, 10, 0.05, out)
    for t in (1.00, 1.02, 1.04):
        sync.add(stamped(f"img{t:.2f}", t), 0)
    sync.add(stamped("pts", 1.035), 1)
    assert out.sets == [("img1.04", "pts")]
    out.sets.clear()
    for t in (2.00, 2.03, 2.045):
        sync.add(stamped(f"pts{t:.3f}", t), 1)
    sync.add(stamped("img", 2.02), 0)  # the new message is the image this time
    assert out.sets == [("img", "pts2.030")]


def test_nearest_valid_combination_with_three_inputs():
    out = Collector()
    sync = ApproximateTimeSync(3, 10, 0.05, out)
    sync.add(stamped("img_a", 1.00), 0)
    sync.add(stamped("img_b", 1.04), 0)
    sync.add(stamped("info_a", 1.00), 1)
    sync.add(stamped("info_b", 1.04), 1)
    sync.add(stamped("pts", 1.03), 2)
    assert out.sets == [("img_b", "info_b", "pts")]
    sync.add(stamped("pts2", 1.00), 2)
    assert out.sets[-1] == ("img_a", "info_a", "pts2")


def test_no_set_when_others_agree_with_new_but_not_each_other():
    out = Collector()
    sync = ApproximateTimeSync(3, 10, 0.05, out)
    sync.add(stamped("img", 1.00), 0)
    sync.add(stamped("info", 1.09), 1)
    sync.add(stamped("pts", 1.045), 2)  # within slop of both, but they are 90 ms apart
    assert out.sets == []


def test_queue_bound_drops_oldest_and_counts():
    out = Collector()
    sync = ApproximateTimeSync(2, 10, 0.01, out)
    for i in range(15):  # 20 Hz images, no sweeps
        sync.add(stamped(f"img{i}", 1.0 + 0.05 * i), 0)
    assert sync.pending() == [10, 0] and sync.dropped == 5
    sync.add(stamped("late", 1.0), 1)  # image 0 was evicted
    assert out.sets == []
    sync.add(stamped("pts", 1.7), 1)
    assert out.sets == [("img14", "pts")]
    sync.add(stamped("img_fill", 1.75), 0)  # the image queue is full again
    sync.add(stamped("old", 0.95), 0)  # older than all in a full queue: dropped at once
    assert sync.dropped == 6 and sync.pending() == [10, 1] and sync.resets == 0
    sync.add(stamped("pts_old", 0.95), 1)
    assert out.sets == [("img14", "pts")]


def test_same_stamp_twice_replaces_and_counts():
    out = Collector()
    sync = ApproximateTimeSync(2, 10, 0.05, out)
    sync.add(stamped("first", 3.0), 0)
    sync.add(stamped("second", 3.0), 0)
    assert sync.dropped == 1 and sync.pending() == [1, 0]
    sync.add(stamped("pts", 3.0), 1)
    assert out.sets == [("second", "pts")]


def test_used_messages_are_removed():
    out = Collector()
    sync = ApproximateTimeSync(2, 10, 0.05, out)
    sync.add(stamped("img", 4.0), 0)
    sync.add(stamped("pts1", 4.0), 1)
    sync.add(stamped("pts2", 4.01), 1)
    assert out.sets == [("img", "pts1")]
    assert sync.pending() == [0, 1] and sync.matched == 1


def test_ten_hz_camera_and_lidar_with_offset_and_jitter_over_100_frames():
    rng = random.Random(7)
    events = []
    for i in range(100):
        t = 1_700_000_000.0 + 0.1 * i
        cam = t + rng.uniform(-0.005, 0.005)
        lidar = t + 0.03 + rng.uniform(-0.005, 0.005)
        # arrival: in stamp order plus a random delay of up to three frames, LiDAR usually later
        events.append((cam + rng.uniform(0, 0.3), stamped(f"img{i}", cam), 0))
        events.append((cam + rng.uniform(0, 0.3), stamped(f"info{i}", cam), 1))
        events.append((lidar + rng.uniform(0.02, 0.3), stamped(f"pts{i}", lidar), 2))
    events.sort(key=lambda e: e[0])
    out = Collector()
    sync = ApproximateTimeSync(3, 10, 0.05, out)
    for _, msg, index in events:
        sync.add(msg, index)
    assert sorted(out.sets) == sorted((f"img{i}", f"info{i}", f"pts{i}") for i in range(100))
    assert (sync.matched, sync.dropped, sync.resets) == (100, 0, 0)
    assert sync.pending() == [0, 0, 0]


def test_stamp_jumping_back_resets_all_queues():
    out = Collector()
    sync = ApproximateTimeSync(2, 3, 0.05, out)
    for i in range(5):  # LiDAR stopped: images pile up with stamps 100..104
        sync.add(stamped(f"img{i}", 100.0 + i), 0)
    sync.add(stamped("pts_loose", 103.5), 1)
    assert sync.pending() == [3, 1]
    sync.add(stamped("img_small_back", 103.2), 0)  # 0.8 s back: no reset
    assert sync.resets == 0
    sync.add(stamped("img_loop", 100.0), 0)  # bag loop: 4 s back
    assert sync.resets == 1 and sync.pending() == [1, 0]
    dropped_before = sync.dropped
    sync.add(stamped("pts_loop", 100.0), 1)
    assert out.sets == [("img_loop", "pts_loop")]
    assert sync.dropped == dropped_before
    # the reset itself can be called directly too
    sync.add(stamped("img_x", 101.0), 0)
    sync.reset()
    assert sync.resets == 2 and sync.pending() == [0, 0] and sync.dropped == dropped_before + 1


def test_a_clock_put_right_drops_only_the_stale_future_messages():
    out = Collector()
    sync = ApproximateTimeSync(2, 5, 0.05, out)
    for i in range(3):  # the LiDAR's clock 5 s ahead: nothing pairs
        sync.add(stamped(f"img{i}", 100.0 + 0.1 * i), 0)
        sync.add(stamped(f"pts{i}", 105.0 + 0.1 * i), 1)
    assert out.sets == []
    sync.add(stamped("img_good", 101.0), 0)
    sync.add(stamped("pts_good", 101.01), 1)  # 4.2 s back on its input: the stale ones go
    assert sync.resets == 1 and out.sets == [("img_good", "pts_good")]
    assert sync.pending() == [3, 0]  # the old images stay (they may still pair)


def test_without_reset_a_loop_starves_the_queue():
    # Why the reset exists: stale newer stamps evict every new message as the oldest.
    out = Collector()
    sync = ApproximateTimeSync(2, 3, 0.05, out, reset_jump=None)
    for i in range(3):
        sync.add(stamped(f"img{i}", 100.0 + i), 0)
    sync.add(stamped("img_loop", 50.0), 0)
    sync.add(stamped("pts_loop", 50.0), 1)
    assert out.sets == [] and sync.resets == 0


def test_callback_runs_outside_the_lock():
    got = []
    sync = None

    def callback(img, pts):
        got.append((img.label, pts.label))
        if len(got) == 1:  # re-entrant add would deadlock if the lock were held
            sync.add(stamped("img2", 2.0), 0)
            sync.add(stamped("pts2", 2.0), 1)

    sync = ApproximateTimeSync(2, 10, 0.05, callback)
    sync.add(stamped("img1", 1.0), 0)
    sync.add(stamped("pts1", 1.0), 1)
    assert got == [("img1", "pts1"), ("img2", "pts2")]


def test_concurrent_adds_from_threads():
    n = 300
    got = []
    lock = threading.Lock()

    def callback(img, pts):
        with lock:
            got.append((img.label, pts.label))

    sync = ApproximateTimeSync(2, n, 0.01, callback)
    threads = [threading.Thread(target=lambda idx=idx: [
        sync.add(stamped(f"{idx}:{i}", 10.0 + 0.1 * i), idx) for i in range(n)])
        for idx in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(got) == sorted((f"0:{i}", f"1:{i}") for i in range(n))
    assert sync.matched == n and sync.pending() == [0, 0]


def test_stamp_forms():
    from builtin_interfaces.msg import Time as TimeMsg
    from rclpy.time import Time
    assert stamp_to_ns(TimeMsg(sec=3, nanosec=5)) == 3 * NS + 5
    assert stamp_to_ns(Time(nanoseconds=42)) == 42
    assert stamp_to_ns(7) == 7
    assert stamp_to_ns(1.5) == 1_500_000_000
    assert header_stamp_ns(stamped("m", ns=99)) == 99
    with pytest.raises(ValueError, match="header.stamp"):
        header_stamp_ns(SimpleNamespace())
    with pytest.raises(TypeError):
        stamp_to_ns("1.0")
    out = Collector()
    sync = ApproximateTimeSync(2, 10, 0.05, out)
    sync.add(SimpleNamespace(label="a"), 0, stamp=2.0)  # explicit stamp in seconds
    sync.add(SimpleNamespace(label="b"), 1, stamp=2 * NS + 10)  # or in nanoseconds
    assert out.sets == [("a", "b")]


@pytest.mark.parametrize("args", [(0, 10, 0.05), (2, 0, 0.05), (2, 10, -0.1),
                                  (2, 10, float("nan")), (2.0, 10, 0.05)])
def test_invalid_arguments(args):
    with pytest.raises(ValueError):
        ApproximateTimeSync(*args, lambda *m: None)


def test_invalid_index():
    sync = ApproximateTimeSync(2, 10, 0.05, lambda *m: None)
    with pytest.raises(IndexError):
        sync.add(stamped("m", 1.0), 2)


# --- wiring: one set of subscriptions into several synchronisers -----------------------------

class FakeNode:
    """Records create_subscription; ``deliver`` plays the executor."""

    def __init__(self):
        self.callbacks = {}

    def create_subscription(self, msg_type, topic, callback, qos, **kwargs):
        assert topic not in self.callbacks, "one subscription per topic"
        self.callbacks[topic] = callback
        return SimpleNamespace(msg_type=msg_type, topic=topic, qos=qos, kwargs=kwargs)

    def deliver(self, topic, msg):
        self.callbacks[topic](msg)


def fake_message_filters() -> types.ModuleType:
    """A stand-in with message_filters' Python behaviour as documented: filters chain through
    registerCallback; the synchroniser keeps ``queues`` (dicts keyed by stamp in ns) and ``lock``,
    evicts the oldest stamp and keeps a set when ``max - min < slop`` (slop truncated to ns)."""

    class Filter:
        def __init__(self):
            self.callbacks = []

        def registerCallback(self, cb, *args):
            self.callbacks.append((cb, args))

        def signalMessage(self, *msgs):
            for cb, args in self.callbacks:
                cb(*(msgs + args))

    class Subscriber(Filter):
        def __init__(self, node, msg_type, topic, qos_profile=10, **kwargs):
            super().__init__()
            self.sub = node.create_subscription(msg_type, topic, self.signalMessage, qos_profile,
                                                **kwargs)

    class ApproximateTimeSynchronizer(Filter):
        def __init__(self, fs, queue_size, slop):
            super().__init__()
            self.queue_size, self.slop_ns = queue_size, int(slop * NS)
            self.lock = threading.Lock()
            self.queues = [{} for _ in fs]
            for index, f in enumerate(fs):
                f.registerCallback(self.add, index)

        def add(self, msg, index):
            ns = header_stamp_ns(msg)
            with self.lock:
                mine = self.queues[index]
                mine[ns] = msg
                while len(mine) > self.queue_size:
                    del mine[min(mine)]
                lists = [sorted((t for t in q if abs(t - ns) <= self.slop_ns),
                                key=lambda t: abs(t - ns))
                         for j, q in enumerate(self.queues) if j != index]
                for combo in itertools.product(*lists):
                    stamps = list(combo)
                    stamps.insert(index, ns)
                    if max(stamps) - min(stamps) < self.slop_ns and \
                            all(t in q for q, t in zip(self.queues, stamps)):
                        self.signalMessage(*[q.pop(t) for q, t in zip(self.queues, stamps)])
                        break

    module = types.ModuleType("message_filters")
    module.Subscriber = Subscriber
    module.ApproximateTimeSynchronizer = ApproximateTimeSynchronizer
    return module


TOPICS = [(object, "image"), (object, "camera_info"), (object, "points")]


@pytest.fixture(params=["dmd3c_ros", "message_filters"])
def implementation(request, monkeypatch):
    if request.param == "message_filters":
        monkeypatch.setitem(sys.modules, "message_filters", fake_message_filters())
    else:
        monkeypatch.setitem(sys.modules, "message_filters", None)  # import fails
    return request.param


def test_two_groups_share_one_set_of_subscriptions(implementation):
    node = FakeNode()
    triples, pairs = Collector(), Collector()
    seen = {0: [], 1: [], 2: []}
    sync_set = make_synchronizers(
        node, TOPICS, 10,
        groups=[([0, 1, 2], 3, 0.03, triples), SyncGroup([1, 0], 3, 0.03, pairs)],
        extra_callbacks={i: (lambda m, i=i: seen[i].append(m.label)) for i in range(3)})
    assert sync_set.implementation == implementation  # "auto" picked it
    assert set(node.callbacks) == {"image", "camera_info", "points"}

    def frame(i, t, lidar=True):
        node.deliver("image", stamped(f"img{i}", t))
        node.deliver("camera_info", stamped(f"info{i}", t))
        if lidar:
            node.deliver("points", stamped(f"pts{i}", t + 0.03))  # exactly slop later

    for i in range(10):
        frame(i, 100.0 + 0.1 * i)
    for i in range(10, 15):  # LiDAR stops: mono mode still gets pairs
        frame(i, 100.0 + 0.1 * i, lidar=False)
    for i in range(15, 18):  # the bag loops back to its first stamps
        frame(i, 100.0 + 0.1 * (i - 15))
    full = [*range(10), *range(15, 18)]
    assert triples.sets == [(f"img{i}", f"info{i}", f"pts{i}") for i in full]
    assert pairs.sets == [(f"info{i}", f"img{i}") for i in range(18)]  # in group order
    assert seen[0] == [f"img{i}" for i in range(18)] and len(seen[2]) == 13
    triple_sync, pair_sync = sync_set
    assert (triple_sync.matched, pair_sync.matched) == (13, 18)
    assert triple_sync.resets == 1 and pair_sync.resets == 1
    if implementation == "dmd3c_ros":
        assert triple_sync.dropped == 5 * 2  # the mono-mode images and infos, cleared
        assert pair_sync.dropped == 0
    else:
        assert triple_sync.dropped is None
    assert [s["matched"] for s in sync_set.stats()] == [13, 18]


def test_make_synchronizer_single_group(implementation):
    node = FakeNode()
    got = Collector()
    arrivals = []
    sync = make_synchronizer(node, TOPICS[::2], 5, 10, 0.05, got,
                             extra_callbacks={1: lambda m: arrivals.append(m.label)})
    assert sync.implementation == implementation and len(sync.subscriptions) == 2
    node.deliver("points", stamped("pts", 1.01))
    node.deliver("image", stamped("img", 1.0))
    assert got.sets == [("img", "pts")] and arrivals == ["pts"] and sync.matched == 1


def test_bad_groups_are_rejected():
    with pytest.raises(ValueError, match="distinct indices"):
        make_synchronizers(FakeNode(), TOPICS, 10, groups=[([0, 3], 5, 0.05, print)],
                           implementation="dmd3c_ros")
    with pytest.raises(ValueError, match="distinct indices"):
        make_synchronizers(FakeNode(), TOPICS, 10, groups=[([0, 0], 5, 0.05, print)],
                           implementation="dmd3c_ros")
    with pytest.raises(ValueError, match="extra_callbacks"):
        make_synchronizers(FakeNode(), TOPICS, 10, groups=[], extra_callbacks={5: print},
                           implementation="dmd3c_ros")
    with pytest.raises(ValueError, match="implementation"):
        make_synchronizers(FakeNode(), TOPICS, 10, groups=[], implementation="rospy")


# --- a real rclpy graph -----------------------------------------------------------------------

def tiny_messages(i: int):
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
    image = Image(height=1, width=1, encoding="rgb8", step=3, data=bytes(3))
    info = CameraInfo(height=1, width=1, k=[1.0, 0.0, 0.5, 0.0, 1.0, 0.5, 0.0, 0.0, 1.0])
    points = PointCloud2(height=1, width=0, point_step=12, row_step=0, is_dense=True,
                         fields=[PointField(name=n, offset=4 * k, datatype=PointField.FLOAT32,
                                            count=1) for k, n in enumerate("xyz")])
    for msg in (image, info, points):
        msg.header.frame_id = "camera"
        msg.header.stamp.sec, msg.header.stamp.nanosec = 200 + i, 0
    points.header.frame_id = "lidar"
    points.header.stamp.nanosec = 20_000_000  # sweep stamped 20 ms after the image
    return image, info, points


@pytest.mark.parametrize("impl", ["dmd3c_ros", "message_filters"])
def test_synchronizers_through_a_real_rclpy_graph(impl, monkeypatch):
    rclpy = pytest.importorskip("rclpy")
    if impl == "message_filters":
        pytest.importorskip("message_filters")
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(random.SystemRandom().randint(101, 200)))
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    executor = None
    try:
        pub_node = rclpy.create_node("sync_test_publisher", context=ctx)
        sub_node = rclpy.create_node("sync_test_subscriber", context=ctx)
        qos = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
        topics = [(Image, "image"), (CameraInfo, "camera_info"), (PointCloud2, "points")]
        pubs = [pub_node.create_publisher(t, name, qos) for t, name in topics]
        triples, pairs, seen = [], [], {0: [], 1: [], 2: []}
        sync_set = make_synchronizers(
            sub_node, topics, qos,
            groups=[([0, 1, 2], 10, 0.05, lambda *m: triples.append(m)),
                    ([0, 1], 10, 0.05, lambda *m: pairs.append(m))],
            extra_callbacks={i: (lambda m, i=i: seen[i].append(m)) for i in range(3)},
            implementation=impl)
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(pub_node)
        executor.add_node(sub_node)

        def spin_until(done, limit=30.0):
            deadline = time.monotonic() + limit
            while not done() and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.05)
            return done()

        assert spin_until(lambda: all(p.get_subscription_count() >= 1 for p in pubs)), \
            "subscriptions were not discovered"
        frames = 5
        for i in range(frames):
            for pub, msg in zip(pubs, tiny_messages(i)):
                pub.publish(msg)
        assert spin_until(lambda: len(triples) == frames and len(pairs) == frames
                          and all(len(v) == frames for v in seen.values()))
        assert [m[0].header.stamp.sec for m in triples] == [200 + i for i in range(frames)]
        for image, info, points in triples:
            assert isinstance(image, Image) and isinstance(info, CameraInfo)
            assert isinstance(points, PointCloud2) and points.header.frame_id == "lidar"
            assert info.header.stamp == image.header.stamp
        assert [(a.header.stamp.sec, type(b)) for a, b in pairs] == \
            [(200 + i, CameraInfo) for i in range(frames)]
        assert sync_set.implementation == impl
        assert [g.matched for g in sync_set] == [frames, frames]
    finally:
        if executor is not None:
            executor.shutdown()
        rclpy.shutdown(context=ctx)
