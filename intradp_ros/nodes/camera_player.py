"""camera_player: publishes frames from an image folder, an image, a video or a generated pattern.

A stand-in for a camera driver, for demos and tests: ``sensor_msgs/Image`` on ``TOPICS["camera"]`` with the
camera QoS of ``topology`` (overridable by ``qos_overrides.`` parameters), stamped with the node's clock.

Sources (parameter ``source``):
  * ``samples`` (default): darknet's sample images, from the first folder holding images among
    ``$INTRADP_SAMPLES``, ``$INTRADP_ROOT/.cache/samples``, ``<checkout>/.cache/samples``,
    ``<package share>/.cache/samples`` and ``/usr/share/darknet/data``. When none is found the node warns
    and plays the test pattern instead (``./intradp setup`` warns about the same thing).
  * ``pattern``: a generated moving test pattern of ``width`` x ``height`` pixels, endless.
  * a path: an image folder (sorted by name), one image, or anything ``cv2.VideoCapture`` opens (a video
    file, ``/dev/video0``). A path that does not exist or cannot be read is an error: the node logs it and
    publishes nothing (no silent fallback to a pattern a detector would then "see"); it stays alive, or
    exits with status 1 when ``exit_when_done`` is set.

Frames to publish: ``count`` > 0 publishes exactly ``count`` frames, cycling through the source as needed;
``count`` == 0 publishes each source frame once, or cycles forever when ``loop`` is set. When done the node
logs once and stops publishing but keeps spinning (a launch file sees no crash), or, with
``exit_when_done``, waits until reliable subscribers acknowledged the last frame and exits with status 0.

Publishing starts once ``wait_for_subscribers`` subscriptions are matched (polled on the timer), so the first
frames of a short sequence are not lost to discovery.

Example::

    ros2 run intradp_ros camera_player --ros-args -p source:=pattern -p rate_hz:=10.0 -p encoding:=rgb8
"""
from __future__ import annotations

import pathlib
from typing import Callable, Iterator

import numpy as np
import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.duration import Duration
from rclpy.node import Node
from sensor_msgs.msg import Image

from intradp_ros.nodes.common import Counters, declare, publisher, run_node
from intradp_ros.vision.image_convert import ENCODINGS, array_to_image_fields, cv_bridge_or_none, from_bgr8
from intradp_ros.vision.samples import DARKNET_DATA, IMAGE_SUFFIXES, find_samples, images_in

__all__ = ["CameraPlayer", "main", "find_samples", "open_source", "SourceError"]


class SourceError(RuntimeError):
    """The ``source`` parameter names nothing that can be read."""


def pattern_frames(width: int, height: int) -> Iterator[np.ndarray]:
    """Endless BGR test pattern: scrolling colour bars, a bouncing white square and the frame number."""
    bars = np.array([[255, 255, 255], [0, 255, 255], [255, 255, 0], [0, 255, 0],
                     [255, 0, 255], [0, 0, 255], [255, 0, 0], [0, 0, 0]], np.uint8)  # BGR
    row = bars[np.arange(width) * len(bars) // width]                                # (W, 3)
    side = max(4, min(width, height) // 6)
    try:
        import cv2
    except ImportError:
        cv2 = None
    k = 0
    while True:
        frame = np.broadcast_to(np.roll(row, 4 * k, axis=0), (height, width, 3)).copy()   # (H, W, 3)
        x = abs((7 * k) % (2 * max(1, width - side)) - max(1, width - side))
        y = abs((5 * k) % (2 * max(1, height - side)) - max(1, height - side))
        frame[y:y + side, x:x + side] = 255
        if cv2 is not None:
            cv2.putText(frame, f"{k}", (8, max(20, height // 12)), cv2.FONT_HERSHEY_SIMPLEX,
                        max(0.5, height / 480), (0, 0, 0), 2)
        yield frame
        k += 1


def _image_frames(paths: list[pathlib.Path], warn: Callable[[str], None]) -> Iterator[np.ndarray]:
    import cv2

    for path in paths:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            warn(f"cannot read image {path}: skipped")
            continue
        yield frame


def _video_frames(path: str) -> Iterator[np.ndarray]:
    import cv2

    capture = cv2.VideoCapture(path)
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            if frame.ndim == 2:
                frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
            yield frame[:, :, :3]
    finally:
        capture.release()


def open_source(source: str, width: int, height: int,
                warn: Callable[[str], None]) -> tuple[str, Callable[[], Iterator[np.ndarray]]]:
    """Resolve ``source`` to (description, factory of iterators over its BGR uint8 frames).

    Each call of the factory starts the source from its first frame (used for cycling).

    Raises:
        SourceError: the path does not exist, or is neither an image (folder) nor a video OpenCV can open.
    """
    if source == "pattern":
        return f"test pattern {width}x{height}", lambda: pattern_frames(width, height)
    if source == "samples":
        folder = find_samples()
        if folder is None:
            warn("no sample images found (looked in $INTRADP_SAMPLES, .cache/samples, "
                 f"{DARKNET_DATA}; run ./intradp setup): playing the test pattern instead")
            return open_source("pattern", width, height, warn)
        source = str(folder)
    path = pathlib.Path(source).expanduser()
    if not path.exists():
        raise SourceError(f"source {source!r} does not exist: give an image folder, an image, a video file, "
                          "'samples' or 'pattern'")
    if path.is_dir():
        images = images_in(path)
        if not images:
            raise SourceError(f"source folder {path} holds no image ({', '.join(IMAGE_SUFFIXES)})")
        return f"{len(images)} images in {path}", lambda: _image_frames(images, warn)
    import cv2

    if path.suffix.lower() in IMAGE_SUFFIXES:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            raise SourceError(f"source image {path} cannot be read by OpenCV")
        return f"image {path}", lambda: iter((frame,))
    capture = cv2.VideoCapture(str(path))
    opened = capture.isOpened()
    capture.release()
    if not opened:
        raise SourceError(f"source {path} is neither an image nor a video OpenCV can open")
    return f"video {path}", lambda: _video_frames(str(path))


class CameraPlayer(Node):
    """Publishes frames of ``source`` on the camera topic at ``rate_hz``."""

    def __init__(self, **kwargs):
        """``kwargs`` go to ``rclpy.node.Node`` (context, parameter_overrides, ...: used by tests)."""
        super().__init__("camera_player", **kwargs)
        self.source = declare(self, "source", "samples",
                              "'samples', 'pattern', or a path: image folder, image, or video file", True)
        self.rate_hz = declare(self, "rate_hz", 2.0, "frames per second (> 0; may be changed live)",
                               limits=(0.01, 1000.0))
        self.encoding = declare(self, "encoding", "bgr8", f"published encoding: {' | '.join(ENCODINGS)}", True)
        self.loop = declare(self, "loop", False, "with count == 0: cycle through the source forever", True)
        self.count = declare(self, "count", 0,
                             "frames to publish, cycling through the source; 0 = each source frame once "
                             "(forever when loop)", True)
        self.frame_id = declare(self, "frame_id", "camera", "header.frame_id of the images (may be changed live)")
        self.width = declare(self, "width", 640, "pattern width in pixels", True)
        self.height = declare(self, "height", 480, "pattern height in pixels", True)
        self.wait_for_subscribers = declare(self, "wait_for_subscribers", 1,
                                            "publish only once this many subscriptions are matched (0 = at once)",
                                            True)
        self.exit_when_done = declare(self, "exit_when_done", False,
                                      "exit (status 0) after the last frame instead of idling", True)
        self._check_parameters()
        self.add_on_set_parameters_callback(self.parameters_callback)

        self.exit_code = 0
        self.published = 0
        self._state = "waiting"            # waiting -> publishing -> done | failed
        self._warned = set()
        self._bridge = cv_bridge_or_none()
        self._counters = Counters(self, ["frames_published", "frames_unreadable"])
        self._publisher = publisher(self, Image, "camera")
        self._open_frames = None
        self._frames = iter(())
        self._frames_this_pass = 0
        try:
            self._description, self._open_frames = open_source(self.source, self.width, self.height,
                                                               self._warn_unreadable)
        except SourceError as e:
            self._state = "failed"
            self.exit_code = 1
            self.get_logger().error(f"{e}; publishing nothing"
                                    + ("; exiting" if self.exit_when_done else " (node stays up)"))
        else:
            self._frames = self._open_frames()
        self._timer = self.create_timer(1.0 / self.rate_hz, self.timer_callback)

    def _check_parameters(self) -> None:
        problems = []
        if self.rate_hz <= 0:
            problems.append(f"rate_hz must be > 0 (got {self.rate_hz})")
        if self.encoding not in ENCODINGS:
            problems.append(f"encoding {self.encoding!r} is not one of {', '.join(ENCODINGS)}")
        if self.count < 0 or self.wait_for_subscribers < 0:
            problems.append(f"count ({self.count}) and wait_for_subscribers ({self.wait_for_subscribers}) "
                            "must be >= 0")
        if self.width <= 0 or self.height <= 0:
            problems.append(f"width and height must be > 0 (got {self.width}x{self.height})")
        if problems:
            for problem in problems:
                self.get_logger().fatal(f"bad parameter: {problem}")
            raise SystemExit(2)

    def parameters_callback(self, params) -> SetParametersResult:
        """Validate and apply live changes of rate_hz and frame_id."""
        for p in params:
            if p.name == "rate_hz":
                if not isinstance(p.value, float) or p.value <= 0:
                    return SetParametersResult(successful=False, reason=f"rate_hz must be a float > 0, not {p.value}")
        for p in params:
            if p.name == "rate_hz":
                self.rate_hz = p.value
                self._timer.timer_period_ns = int(1e9 / p.value)
                self.get_logger().info(f"rate changed to {p.value} Hz")
            elif p.name == "frame_id":
                self.frame_id = p.value
        return SetParametersResult(successful=True)

    def _warn_unreadable(self, text: str) -> None:
        if text not in self._warned:
            self._warned.add(text)
            self.get_logger().warning(text)
        self._counters.inc("frames_unreadable")

    def _next_frame(self) -> np.ndarray | None:
        frame = next(self._frames, None)
        cycle = self.count > 0 or self.loop
        if frame is None and cycle and self._frames_this_pass > 0:
            self._frames = self._open_frames()
            self._frames_this_pass = 0
            frame = next(self._frames, None)
        if frame is not None:
            self._frames_this_pass += 1
        return frame

    def _to_msg(self, frame: np.ndarray) -> Image:
        arr = from_bgr8(frame, self.encoding)
        if self._bridge is not None:
            msg = self._bridge.cv2_to_imgmsg(arr, encoding=self.encoding)
        else:
            msg = Image(**array_to_image_fields(arr, self.encoding))
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.frame_id
        return msg

    def timer_callback(self) -> None:
        if self._state == "failed":
            if self.exit_when_done:
                self._exit()
            return
        if self._state == "done":
            return
        if self._state == "waiting":
            matched = self._publisher.get_subscription_count()
            if matched < self.wait_for_subscribers:
                if "subscribers" not in self._warned:
                    self._warned.add("subscribers")
                    self.get_logger().info(f"waiting for {self.wait_for_subscribers} subscriber(s) on "
                                           f"{self._publisher.topic_name} ({matched} matched)")
                return
            self._state = "publishing"
            self.get_logger().info(f"publishing {self._description} as {self.encoding} at {self.rate_hz} Hz on "
                                   f"{self._publisher.topic_name}"
                                   + (f", {self.count} frames" if self.count else ""))
        frame = self._next_frame()
        if frame is None:
            self._finish()
            return
        msg = self._to_msg(frame)
        self._publisher.publish(msg)
        self.published += 1
        self._counters.inc("frames_published")
        self.get_logger().debug(f"frame {self.published} ({msg.width}x{msg.height} {msg.encoding}, "
                                f"frame_id {msg.header.frame_id}) published")
        if self.count and self.published >= self.count:
            self._finish()

    def _finish(self) -> None:
        self._state = "done"
        self._timer.cancel()
        self.get_logger().info(f"done: published {self.published} frame(s) from {self._description}"
                               + ("; exiting" if self.exit_when_done else "; idling"))
        if self.exit_when_done:
            # reliable subscribers get the last frames before the writer disappears (no-op for best effort)
            if not self._publisher.wait_for_all_acked(Duration(seconds=5.0)):
                self.get_logger().warning("not every subscriber acknowledged the last frames within 5 s")
            self._exit()

    def _exit(self) -> None:
        self._timer.cancel()
        rclpy.try_shutdown(context=self.context)   # ends the executor's spin; run_node cleans up


def main(args=None) -> int:
    """Console script ``camera_player``: 0 on Ctrl-C or when done, 1 when the source cannot be read."""
    nodes = []

    def factory() -> CameraPlayer:
        nodes.append(CameraPlayer())
        return nodes[-1]

    try:
        status = run_node(factory, args, "camera_player")
    except SystemExit as e:       # bad parameters, already logged
        return int(e.code or 0)
    return status or (nodes[0].exit_code if nodes else 1)


if __name__ == "__main__":
    raise SystemExit(main())
