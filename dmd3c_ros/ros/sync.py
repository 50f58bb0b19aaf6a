"""Approximate time synchronisation of stamped inputs (image, camera_info, points).

``ApproximateTimeSync`` is a pure-Python equivalent of the Python
``message_filters.ApproximateTimeSynchronizer``, for machines where message_filters is not
installed (ROS 2 from the package registry). ``make_synchronizers`` wires one subscription per
topic to one or several synchronisers over subsets of the inputs (the completion node runs a
3-way image + camera_info + points sync and a 2-way image + camera_info sync for mono mode); it
uses message_filters where it imports and ``ApproximateTimeSync`` otherwise, with the same
behaviour either way.

Semantics (those of message_filters' Python synchroniser):

- One queue per input, keyed by header stamp in integer nanoseconds
  (``stamp.sec * 10**9 + stamp.nanosec``). A queue holds at most ``queue_size`` messages; when it
  overflows, the message with the oldest stamp is dropped (which may be the one just added, if
  it arrived late). A second message with the same stamp on the same input replaces the first.
- Each new message is matched against the *other* queues only: per queue the candidates within
  ``slop`` of the new stamp, sorted nearest first (ties: older stamp first); the combinations are
  tried in ``itertools.product`` order and the first whose stamps all lie within ``slop`` of each
  other (``max - min <= slop``) is emitted as ``callback(*msgs)`` in input order, and its
  messages leave their queues (a message is used at most once). Older queued messages are not
  re-examined when a set is emitted; they wait for a partner or eviction.
- ``slop`` is in seconds (float), converted once to integer nanoseconds (rounded).

Differences from message_filters, all deliberate:

- ``max - min <= slop`` where message_filters tests ``< slop``: its candidate filter already
  admits stamps exactly ``slop`` away, and with ``<`` a slop of 0 matches nothing, not even
  identical stamps. With ``<=``, ``slop=0`` means exact synchronisation. ``make_synchronizers``
  hands message_filters ``slop`` + 1 ns so that both implementations pair the same messages.
- A stamp that goes backwards by more than ``reset_jump`` seconds (default 1 s) relative to the
  newest stamp seen on its input (a bag loop, a clock jump) first drops every queued message of
  that synchroniser stamped more than ``reset_jump`` after it: all of them after a bag loop, only
  the stale "future" ones when a sensor's clock is put right (``resets`` counts it). Without
  this, stale messages with newer stamps would fill the queues and evict every new message as the
  "oldest", and the synchroniser would go silent for good; dropping only the stale ones lets the
  first good message pair at once. ``make_synchronizers`` adds the same reset in front of
  message_filters.
- The callback runs outside the lock, so a slow callback never blocks the other subscriptions'
  callbacks and may itself call ``add``. With a multi-threaded executor two sets can therefore be
  delivered concurrently or out of stamp order; with the usual single-threaded executor they
  arrive one at a time. (message_filters calls back with its lock held.)
- Counters: ``matched`` (sets emitted), ``dropped`` (messages evicted, replaced or cleared by a
  reset without being used), ``resets``. Under message_filters ``dropped`` is None (it evicts
  silently); ``matched`` and ``resets`` are counted.

Cost: memory is bounded by ``count * queue_size`` messages; one ``add`` sorts at most
``queue_size`` stamps per input and tries at most ``queue_size ** (count - 1)`` combinations
(count 2-3 and queue_size 10-20 here), stopping at the first valid one; with count 2 the first is
always valid. Nothing in this module imports rclpy: ``make_synchronizers`` only calls
``node.create_subscription``.
"""
from __future__ import annotations

import itertools
import math
import numbers
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

__all__ = ["ApproximateTimeSync", "SyncGroup", "GroupSync", "SyncSet", "make_synchronizer",
           "make_synchronizers", "stamp_to_ns", "header_stamp_ns", "message_filters_available"]

NS_PER_S = 10**9  # ROS stamps: integer seconds + nanoseconds
DEFAULT_RESET_JUMP = 1.0  # seconds backwards on one input that clear the queues
IMPLEMENTATIONS = ("auto", "message_filters", "dmd3c_ros")


def stamp_to_ns(stamp: Any) -> int:
    """A stamp as integer nanoseconds.

    Accepts builtin_interfaces/Time (``.sec``, ``.nanosec``), rclpy Time (``.nanoseconds``),
    an integer (nanoseconds) or a float (seconds; double precision limits it to about 0.25 us
    at current epoch times).
    """
    if isinstance(stamp, bool):
        raise TypeError("a stamp cannot be a bool")
    if isinstance(stamp, numbers.Integral):
        return int(stamp)
    if isinstance(stamp, numbers.Real):
        if not math.isfinite(stamp):
            raise ValueError(f"stamp must be finite, got {stamp}")
        return round(float(stamp) * NS_PER_S)  # seconds to nanoseconds
    if hasattr(stamp, "sec") and hasattr(stamp, "nanosec"):
        return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)
    if hasattr(stamp, "nanoseconds"):
        return int(stamp.nanoseconds)
    raise TypeError(f"cannot read a time stamp from {type(stamp).__name__}")


def header_stamp_ns(msg: Any) -> int:
    """``msg.header.stamp`` in integer nanoseconds; ValueError for a message without a header."""
    header = getattr(msg, "header", None)
    stamp = getattr(header, "stamp", None)
    if stamp is None:
        raise ValueError(f"{type(msg).__name__} has no header.stamp: only stamped messages can "
                         "be synchronised")
    return stamp_to_ns(stamp)


def _seconds_to_ns(value: float, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return round(float(value) * NS_PER_S)  # seconds to nanoseconds


class _NewestStamps:
    """Newest stamp seen per input, to detect a stamp going backwards by more than a jump."""

    def __init__(self, count: int, jump_ns: int | None):
        self.jump_ns = jump_ns
        self.newest: list[int | None] = [None] * count

    def jumped_back(self, index: int, ns: int) -> bool:
        newest = self.newest[index]
        return self.jump_ns is not None and newest is not None and newest - ns > self.jump_ns

    def update(self, index: int, ns: int) -> None:
        if self.newest[index] is None or ns > self.newest[index]:
            self.newest[index] = ns

    def clear(self) -> None:
        self.newest = [None] * len(self.newest)


class ApproximateTimeSync:
    """Pairs messages of ``count`` inputs whose header stamps lie within ``slop`` seconds.

    ``callback(*msgs)`` gets one message per input, in input order. Thread-safe: ``add`` may be
    called from several threads; the callback runs outside the lock. ``reset_jump`` (seconds, or
    None to disable) is how far a stamp may go backwards on one input before all queues clear.
    """

    def __init__(self, count: int, queue_size: int, slop: float, callback: Callable[..., Any],
                 *, reset_jump: float | None = DEFAULT_RESET_JUMP):
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be an integer >= 1, got {count!r}")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"queue_size must be an integer >= 1, got {queue_size!r}")
        if not callable(callback):
            raise TypeError("callback must be callable")
        self.count = count
        self.queue_size = queue_size
        self.slop = float(slop)
        self.slop_ns = _seconds_to_ns(slop, "slop")
        jump_ns = None if reset_jump is None else _seconds_to_ns(reset_jump, "reset_jump")
        self._callback = callback
        self._lock = threading.Lock()
        self._queues: list[dict[int, Any]] = [{} for _ in range(count)]
        self._newest = _NewestStamps(count, jump_ns)
        self.received = 0
        self.matched = 0
        self.dropped = 0
        self.resets = 0

    def add(self, msg: Any, index: int, stamp: Any = None) -> bool:
        """Queue ``msg`` on input ``index`` and emit a set if it completes one.

        ``stamp`` overrides ``msg.header.stamp`` (see ``stamp_to_ns`` for accepted forms).
        Returns True when the callback was called for a set containing ``msg``.
        """
        if not 0 <= index < self.count:
            raise IndexError(f"input index {index} out of range for {self.count} inputs")
        ns = header_stamp_ns(msg) if stamp is None else stamp_to_ns(stamp)
        with self._lock:
            self.received += 1
            if self._newest.jumped_back(index, ns):
                self._reset_locked(after_ns=ns + self._newest.jump_ns)
            self._newest.update(index, ns)
            queue = self._queues[index]
            if ns in queue:
                self.dropped += 1  # same stamp again on this input: the newer message wins
            queue[ns] = msg
            while len(queue) > self.queue_size:
                del queue[min(queue)]
                self.dropped += 1
            msgs = self._match_locked(index, ns) if ns in queue else None
            if msgs is not None:
                self.matched += 1
        if msgs is None:
            return False
        self._callback(*msgs)
        return True

    def _match_locked(self, index: int, ns: int) -> tuple | None:
        candidates = []
        for other, queue in enumerate(self._queues):
            if other == index:
                continue
            near = sorted((abs(t - ns), t) for t in queue if abs(t - ns) <= self.slop_ns)
            if not near:
                return None
            candidates.append([t for _, t in near])
        for combination in itertools.product(*candidates):
            stamps = list(combination)
            stamps.insert(index, ns)
            if max(stamps) - min(stamps) <= self.slop_ns:
                return tuple(queue.pop(t) for queue, t in zip(self._queues, stamps))
        return None

    def reset(self, after_ns: int | None = None) -> None:
        """Forget the queued messages (counted as dropped): all of them, or those stamped later
        than ``after_ns``; the newest stamps follow what is left."""
        with self._lock:
            self._reset_locked(after_ns)

    def _reset_locked(self, after_ns: int | None = None) -> None:
        for index, queue in enumerate(self._queues):
            stale = list(queue) if after_ns is None else [t for t in queue if t > after_ns]
            for t in stale:
                del queue[t]
            self.dropped += len(stale)
            self._newest.newest[index] = max(queue) if queue else None
        self.resets += 1

    def pending(self) -> list[int]:
        """How many messages wait in each input's queue."""
        with self._lock:
            return [len(queue) for queue in self._queues]

    def stats(self) -> dict[str, int]:
        return {"received": self.received, "matched": self.matched, "dropped": self.dropped,
                "resets": self.resets}


@dataclass(frozen=True)
class SyncGroup:
    """One synchroniser over a subset of the subscriptions (indices into that list)."""
    inputs: Sequence[int]
    queue_size: int
    slop: float
    callback: Callable[..., Any]


class GroupSync:
    """A synchroniser made by ``make_synchronizers``, with the same counters in both
    implementations (``dropped`` is None under message_filters)."""

    def __init__(self, implementation: str, group: SyncGroup, reset_jump: float | None):
        self.implementation = implementation
        self.inputs = tuple(group.inputs)
        self.queue_size = group.queue_size
        self.slop = float(group.slop)
        self.synchronizer: Any = None  # ApproximateTimeSync or message_filters' synchroniser
        self.subscriptions: list = []  # all of the SyncSet's, set by make_synchronizers
        jump_ns = None if reset_jump is None else _seconds_to_ns(reset_jump, "reset_jump")
        self._newest = _NewestStamps(len(self.inputs), jump_ns)  # message_filters only
        self._lock = threading.Lock()
        self._matched = 0
        self._resets = 0

    @property
    def matched(self) -> int:
        return self._matched if self._native is None else self._native.matched

    @property
    def dropped(self) -> int | None:
        return None if self._native is None else self._native.dropped

    @property
    def resets(self) -> int:
        return self._resets if self._native is None else self._native.resets

    @property
    def _native(self) -> ApproximateTimeSync | None:
        sync = self.synchronizer
        return sync if isinstance(sync, ApproximateTimeSync) else None

    def reset(self, after_ns: int | None = None) -> None:
        """Drop the queued messages: all, or those stamped later than ``after_ns``."""
        if self._native is not None:
            self._native.reset(after_ns)
            return
        with self._lock:
            self._newest.clear()
            self._resets += 1
        lock, queues = getattr(self.synchronizer, "lock", None), getattr(self.synchronizer,
                                                                         "queues", None)
        if lock is not None and queues is not None:
            with lock:
                for queue in queues:  # message_filters keys its queues by rclpy Time
                    for key in [k for k in queue if after_ns is None or stamp_to_ns(k) > after_ns]:
                        del queue[key]

    def _observe(self, local_index: int, ns: int) -> None:
        """message_filters only: called before its ``add`` to reset on a backwards jump."""
        with self._lock:
            jumped = self._newest.jumped_back(local_index, ns)
            self._newest.update(local_index, ns)
        if jumped:
            self.reset(after_ns=ns + self._newest.jump_ns)
            with self._lock:
                self._newest.update(local_index, ns)

    def _counting(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        def on_set(*msgs):
            with self._lock:
                self._matched += 1
            callback(*msgs)
        return on_set

    def stats(self) -> dict[str, Any]:
        return {"implementation": self.implementation, "inputs": list(self.inputs),
                "matched": self.matched, "dropped": self.dropped, "resets": self.resets}


class SyncSet:
    """The subscriptions and synchronisers made by ``make_synchronizers``; index it for groups."""

    def __init__(self, implementation: str, subscriptions: list, groups: list[GroupSync]):
        self.implementation = implementation
        self.subscriptions = subscriptions  # rclpy Subscription or message_filters.Subscriber
        self.groups = groups

    def __getitem__(self, index: int) -> GroupSync:
        return self.groups[index]

    def __len__(self) -> int:
        return len(self.groups)

    def __iter__(self):
        return iter(self.groups)

    def reset(self) -> None:
        for group in self.groups:
            group.reset()

    def stats(self) -> list[dict[str, Any]]:
        return [group.stats() for group in self.groups]


def message_filters_available() -> bool:
    try:
        import message_filters  # noqa: F401
    except ImportError:
        return False
    return True


def _message_filters_slop(slop_ns: int) -> float:
    # message_filters keeps a set when max - min < Duration(seconds=slop), truncating seconds to
    # whole nanoseconds; slop + 1 ns (the extra half absorbs float error) makes that <= slop.
    return (slop_ns + 1.5) / NS_PER_S


def _as_group(group: SyncGroup | Sequence, n_inputs: int) -> SyncGroup:
    if not isinstance(group, SyncGroup):
        group = SyncGroup(*group)
    inputs = tuple(group.inputs)
    if not inputs or len(set(inputs)) != len(inputs) \
            or any(not isinstance(i, int) or not 0 <= i < n_inputs for i in inputs):
        raise ValueError(f"group inputs must be distinct indices into the {n_inputs} "
                         f"subscriptions, got {list(group.inputs)}")
    if isinstance(group.queue_size, bool) or not isinstance(group.queue_size, int) \
            or group.queue_size < 1:
        raise ValueError(f"queue_size must be an integer >= 1, got {group.queue_size!r}")
    _seconds_to_ns(group.slop, "slop")
    if not callable(group.callback):
        raise TypeError("group callback must be callable")
    return SyncGroup(inputs, group.queue_size, group.slop, group.callback)


def make_synchronizers(node: Any, subscriptions: Sequence[tuple[type, str]], qos: Any,
                       groups: Sequence[SyncGroup | tuple], *,
                       extra_callbacks: Mapping[int, Callable[[Any], Any]] | None = None,
                       callback_group: Any = None, implementation: str = "auto",
                       reset_jump: float | None = DEFAULT_RESET_JUMP) -> SyncSet:
    """One subscription per ``(msg_type, topic)`` feeding one synchroniser per group.

    ``groups``: ``SyncGroup``s or ``(inputs, queue_size, slop, callback)`` tuples, ``inputs``
    being indices into ``subscriptions``; each callback gets its group's messages in the order
    of ``inputs``. ``extra_callbacks`` maps a subscription index to ``fn(msg)``, called with
    every message of that input as it arrives, before any synchroniser sees it. ``implementation``
    is ``auto`` (message_filters when it imports), ``message_filters`` or ``dmd3c_ros``.
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    if implementation == "auto":
        implementation = "message_filters" if message_filters_available() else "dmd3c_ros"
    subscriptions = list(subscriptions)
    groups = [_as_group(group, len(subscriptions)) for group in groups]
    extra = dict(extra_callbacks or {})
    if any(not isinstance(i, int) or not 0 <= i < len(subscriptions) for i in extra):
        raise ValueError(f"extra_callbacks keys must index the {len(subscriptions)} "
                         f"subscriptions, got {sorted(extra)}")
    handles = [GroupSync(implementation, group, reset_jump) for group in groups]
    # Per input: the (group handle, position within the group) pairs it feeds.
    targets = [[(h, h.inputs.index(i)) for h in handles if i in h.inputs]
               for i in range(len(subscriptions))]
    kwargs = {} if callback_group is None else {"callback_group": callback_group}
    if implementation == "message_filters":
        subs = _wire_message_filters(node, subscriptions, qos, groups, handles, targets, extra,
                                     kwargs)
    else:
        subs = _wire_native(node, subscriptions, qos, groups, handles, targets, extra, kwargs,
                            reset_jump)
    for handle in handles:
        handle.subscriptions = subs
    return SyncSet(implementation, subs, handles)


def _wire_native(node, subscriptions, qos, groups, handles, targets, extra, kwargs, reset_jump):
    for group, handle in zip(groups, handles):
        handle.synchronizer = ApproximateTimeSync(len(group.inputs), group.queue_size,
                                                  group.slop, group.callback,
                                                  reset_jump=reset_jump)
    subs = []
    for index, (msg_type, topic) in enumerate(subscriptions):
        feeds = [(handle.synchronizer, local) for handle, local in targets[index]]
        callback = _input_callback(extra.get(index), feeds)
        subs.append(node.create_subscription(msg_type, topic, callback, qos, **kwargs))
    return subs


def _input_callback(extra, feeds):
    def on_message(msg):
        if extra is not None:
            extra(msg)
        if feeds:
            ns = header_stamp_ns(msg)
            for sync, local in feeds:
                sync.add(msg, local, stamp=ns)
    return on_message


def _wire_message_filters(node, subscriptions, qos, groups, handles, targets, extra, kwargs):
    import message_filters

    subs = []
    for index, (msg_type, topic) in enumerate(subscriptions):
        sub = message_filters.Subscriber(node, msg_type, topic, qos_profile=qos, **kwargs)
        # Callbacks run in registration order: extra first, then the jump check, then the syncs.
        if index in extra:
            sub.registerCallback(extra[index])
        if targets[index]:
            sub.registerCallback(_jump_guard(targets[index]))
        subs.append(sub)
    for group, handle in zip(groups, handles):
        sync = message_filters.ApproximateTimeSynchronizer(
            [subs[i] for i in group.inputs], group.queue_size,
            _message_filters_slop(_seconds_to_ns(group.slop, "slop")))
        sync.registerCallback(handle._counting(group.callback))
        handle.synchronizer = sync
    return subs


def _jump_guard(targets):
    def on_message(msg):
        ns = header_stamp_ns(msg)
        for handle, local in targets:
            handle._observe(local, ns)
    return on_message


def make_synchronizer(node: Any, subscriptions: Sequence[tuple[type, str]], qos: Any,
                      queue_size: int, slop: float, callback: Callable[..., Any], *,
                      extra_callbacks: Mapping[int, Callable[[Any], Any]] | None = None,
                      callback_group: Any = None, implementation: str = "auto",
                      reset_jump: float | None = DEFAULT_RESET_JUMP) -> GroupSync:
    """One synchroniser over all ``subscriptions``; see ``make_synchronizers``.

    The returned ``GroupSync`` has ``.implementation``, ``.matched``, ``.dropped``, ``.resets``
    and ``.subscriptions`` (which keep the subscriptions alive).
    """
    sync_set = make_synchronizers(
        node, subscriptions, qos, [SyncGroup(range(len(subscriptions)), queue_size, slop,
                                             callback)],
        extra_callbacks=extra_callbacks, callback_group=callback_group,
        implementation=implementation, reset_jump=reset_jump)
    return sync_set[0]
