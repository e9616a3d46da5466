"""The detections message: ``vision_msgs/msg/Detection2DArray`` where vision_msgs is installed, else
``intradp_ros/msg/DetectionArray``; aggregator_node's ``detections_type`` parameter picks (see :func:`detections_type`).

Both carry the same detections, boxes in pixels of the original camera image:

==========================  =====================================================================================
intradp_ros ``Detection``   vision_msgs ``Detection2D``
==========================  =====================================================================================
(array's header)            ``header`` (the camera image's, as the array's)
``class_name`` ("dog")      ``results[0].hypothesis.class_id``
``class_id`` (16)           ``id`` ("16")
``score``                   ``results[0].hypothesis.score`` (the same float32 value, as float64)
``center_x``, ``center_y``  ``bbox.center.position.x``, ``.y`` (vision_msgs >= 4.0, Humble and later;
                            ``bbox.center.x``, ``.y`` before)
``size_x``, ``size_y``      ``bbox.size_x``, ``bbox.size_y``
==========================  =====================================================================================

``hypothesis.class_id`` is the class NAME: it is a string, the consumers of Detection2D (rviz plugins, trackers,
yolo_ros / Isaac ROS style pipelines) show it as the label, and a name is self-describing where a numeric id means
something only with the label list (vision_msgs' VisionInfo, which intradp_ros does not publish). The class index is
kept in ``Detection2D.id``, so that no content of DetectionArray is lost; note that vision_msgs documents ``id`` as
an object identity across messages (for tracking): here it is the same for every object of one class, so a
consumer must not treat it as a track id. ``results[0].pose`` is left zero (no 6D pose from a 2D detector).

What Detection2DArray has no field for: DetectionArray's ``frame_seq`` and ``plan_spec``. Both are in the
frame's ``intradp_ros/msg/FrameTiming`` on ``/intradp/frame_timing``, which has the same header (match by stamp).
"""
from __future__ import annotations

import typing

__all__ = ["CHOICES", "Box", "detections_type", "is_vision_msgs", "detections_message", "to_detection2d_array",
           "read_detections", "frame_and_plan", "type_name"]

CHOICES = ("auto", "vision_msgs", "intradp")


class Box(typing.NamedTuple):
    """One detection as either message carries it (original-image pixels; ``class_id`` -1 where not given)."""
    class_id: int
    class_name: str
    score: float
    center_x: float
    center_y: float
    size_x: float
    size_y: float


def detections_type(choice: str = "auto"):
    """The message class for ``choice``: ``auto`` = vision_msgs' Detection2DArray when ``vision_msgs.msg`` imports,
    else intradp_ros' DetectionArray; ``vision_msgs`` / ``intradp`` = that one. Raises ValueError (one line saying
    what to do) for ``vision_msgs`` where it is not importable, and for an unknown choice."""
    if choice not in CHOICES:
        raise ValueError(f"detections_type {choice!r} is not one of {' | '.join(CHOICES)}")
    if choice != "intradp":
        try:
            from vision_msgs.msg import Detection2DArray
            return Detection2DArray
        except ImportError as e:
            if choice == "vision_msgs":
                raise ValueError(f"detections_type vision_msgs: cannot import vision_msgs.msg ({e}); install it "
                                 "(apt install ros-$ROS_DISTRO-vision-msgs) or set detections_type to auto or "
                                 "intradp") from None
    from intradp_ros.msg import DetectionArray
    return DetectionArray


def is_vision_msgs(msg_type) -> bool:
    """Whether ``msg_type`` (a class or a message) is vision_msgs' Detection2DArray, not intradp_ros' type."""
    return "frame_seq" not in msg_type.get_fields_and_field_types()


def type_name(msg_type) -> str:
    """``vision_msgs/msg/Detection2DArray`` or ``intradp_ros/msg/DetectionArray``, as ``ros2 topic`` shows it."""
    return "vision_msgs/msg/Detection2DArray" if is_vision_msgs(msg_type) else "intradp_ros/msg/DetectionArray"


def detections_message(msg_type, header, frame_seq: int, plan_spec: str, dets):
    """The message of type ``msg_type`` (from :func:`detections_type`) for one frame's detections ``dets``
    (intradp_ros.vision.detection.Detection: class id and name, score, centre and size in original-image px)."""
    from intradp_ros.msg import Detection, DetectionArray
    msg = DetectionArray(header=header, frame_seq=int(frame_seq), plan_spec=plan_spec)
    msg.detections = [Detection(class_id=int(d.class_id), class_name=d.class_name, score=float(d.score),
                                center_x=float(d.center_x), center_y=float(d.center_y),
                                size_x=float(d.size_x), size_y=float(d.size_y)) for d in dets]
    return to_detection2d_array(msg) if is_vision_msgs(msg_type) else msg


def to_detection2d_array(msg):
    """intradp_ros DetectionArray -> vision_msgs Detection2DArray, the same detections (see the module docstring)."""
    from vision_msgs.msg import BoundingBox2D, Detection2D, Detection2DArray, ObjectHypothesisWithPose
    out = Detection2DArray(header=msg.header)
    for d in msg.detections:
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = d.class_name
        hyp.hypothesis.score = float(d.score)
        box = BoundingBox2D(size_x=float(d.size_x), size_y=float(d.size_y))
        centre = getattr(box.center, "position", box.center)     # vision_msgs < 4.0: geometry_msgs/Pose2D x, y
        centre.x, centre.y = float(d.center_x), float(d.center_y)
        out.detections.append(Detection2D(header=msg.header, results=[hyp], bbox=box, id=str(int(d.class_id))))
    return out


def read_detections(msg) -> list[Box]:
    """The detections of either message type, as :class:`Box` es."""
    if not is_vision_msgs(msg):
        return [Box(int(d.class_id), d.class_name, float(d.score), float(d.center_x), float(d.center_y),
                    float(d.size_x), float(d.size_y)) for d in msg.detections]
    boxes = []
    for d in msg.detections:
        hyp = d.results[0].hypothesis if d.results else None
        centre = getattr(d.bbox.center, "position", d.bbox.center)
        class_id = int(d.id) if d.id.lstrip("-").isdigit() else -1
        boxes.append(Box(class_id, hyp.class_id if hyp else "", float(hyp.score) if hyp else 0.0,
                         float(centre.x), float(centre.y), float(d.bbox.size_x), float(d.bbox.size_y)))
    return boxes


def frame_and_plan(msg) -> tuple[int, str] | None:
    """``(frame_seq, plan_spec)`` of a DetectionArray; None for a Detection2DArray, which has neither (the frame's
    FrameTiming, same header stamp, has both)."""
    return None if is_vision_msgs(msg) else (int(msg.frame_seq), msg.plan_spec)
