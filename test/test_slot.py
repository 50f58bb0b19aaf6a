import threading

from dmd3c_ros.ros.slot import LatestSlot


def test_newest_wins_and_drops_are_counted():
    slot = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True
    assert slot.put(3) is True
    assert slot.get(timeout=0) == 3
    assert slot.get(timeout=0) is None
    assert (slot.dropped, slot.put_count) == (2, 3)


def test_get_waits_for_a_put_from_another_thread():
    slot = LatestSlot()
    threading.Timer(0.05, slot.put, args=("frame",)).start()
    assert slot.get(timeout=5.0) == "frame"


def test_close_wakes_a_waiting_worker():
    slot = LatestSlot()
    result = []
    worker = threading.Thread(target=lambda: result.append(slot.get(timeout=30.0)))
    worker.start()
    slot.close()
    worker.join(timeout=5.0)
    assert not worker.is_alive() and result == [None]


def test_superseded_items_are_not_counted_as_drops():
    slot = LatestSlot()
    slot.put(("mono", 1))
    slot.put(("lidar", 1), superseded=lambda old: old == ("mono", 1))
    assert slot.dropped == 0 and slot.get(timeout=0) == ("lidar", 1)
    slot.put(("mono", 2))
    slot.put(("lidar", 3), superseded=lambda old: old == ("mono", 3))
    assert slot.dropped == 1
