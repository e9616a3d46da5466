"""robot_node's camera intake: images taken off the executor and read from their bytes.

Each image is taken serialized by a :class:`Receiver` (no executor wake-up, ~1.2 ms of a robot core each), its
fields read from the CDR bytes with its pixels viewed in place (nodes.cdr: no deserialization copy), checked,
converted to rgb8 and offered to the frame thread as the newest frame.

Threads: the receiver's thread runs :meth:`_on_raw` and ``offer``; :meth:`close` from the executor (deactivate).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from builtin_interfaces.msg import Time as TimeMsg
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from intradp_ros.nodes.cdr import CdrError, CdrImage, image_from_cdr
from intradp_ros.nodes.common import subscription_qos
from intradp_ros.nodes.receiver import Receiver
from intradp_ros.topology import TOPICS
from intradp_ros.vision.image_convert import ImageConversionError, image_to_array, to_rgb8

__all__ = ["CameraIntake"]


class CameraIntake:
    def __init__(self, node, counters, report, max_pixels: int, offer: Callable[[Header, np.ndarray], None]):
        """``offer(header, rgb8)``: a good frame; bad ones are counted (``bad_images``) and reported."""
        self.counters, self.report, self.max_pixels, self.offer = counters, report, int(max_pixels), offer
        self._rx = Receiver(node, "camera")
        self.subscription = self._rx.add(Image, TOPICS["camera"].name, subscription_qos(node, "camera"),
                                         self._on_raw)
        self._rx.start()

    @property
    def topic_name(self) -> str:
        return self.subscription.topic_name

    def _on_raw(self, raw: bytes, _arrived: float) -> None:
        self.counters.inc("frames_received")
        img = None
        try:
            img = image_from_cdr(raw) or _from_message(deserialize_message(raw, Image))
            if img.width * img.height > self.max_pixels:
                raise ImageConversionError(f"{img.width}x{img.height} is over max_image_pixels "
                                           f"({self.max_pixels}); raise it if your camera is that large")
            arr = image_to_array(img.encoding, img.height, img.width, img.step, img.data, img.is_bigendian)
            rgb = to_rgb8(arr, img.encoding)
        except (ImageConversionError, CdrError) as e:
            self.counters.inc("bad_images")
            where = f"{img.frame_id}@{img.sec}.{img.nanosec:09d}" if img is not None else "(unreadable header)"
            self.report("bad_images", f"camera image {where} refused: {e}")
            return
        except Exception as e:  # noqa: BLE001 - bytes that do not deserialize at all are garbage too
            self.counters.inc("bad_images")
            self.report("bad_images", f"camera image that does not deserialize refused: {e}")
            return
        self.offer(Header(stamp=TimeMsg(sec=img.sec, nanosec=img.nanosec), frame_id=img.frame_id), rgb)

    def close(self) -> None:
        self._rx.close()


def _from_message(m: Image) -> CdrImage:
    """The same fields from a deserialized message (a buffer in another CDR encapsulation)."""
    return CdrImage(m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id, m.height, m.width, m.encoding,
                    bool(m.is_bigendian), m.step, memoryview(m.data))
