"""Writes ROS 2 bags (MCAP, CDR) with mcap-ros2-support, independently of livedepth.

usage:
  write_ros2_bag.py compressed OUT.mcap FRAMES_DIR N
      the first N real JPEG frames of a 7-Scenes folder (frame-XXXXXX.color.jpg), as they are,
      on /camera/image_raw/compressed (sensor_msgs/msg/CompressedImage), with
      /camera/camera_info (sensor_msgs/msg/CameraInfo) and an unrelated /imu/temperature topic,
      stamped at 30 Hz;
  write_ros2_bag.py raw OUT.mcap
      one 4x2 sensor_msgs/msg/Image per encoding (rgb8, bgr8, rgba8, bgra8, mono8, yuv422),
      each on /raw/<encoding>, of the pixels printed as JSON (the RGB each should decode to).
"""

import json
import sys

from mcap_ros2.writer import Writer

SEPARATOR = "=" * 80

TIME = "int32 sec\nuint32 nanosec"
HEADER = "builtin_interfaces/Time stamp\nstring frame_id"


def with_deps(body, deps):
    parts = [body]
    for name, text in deps:
        parts.append(f"{SEPARATOR}\nMSG: {name}\n{text}")
    return "\n".join(parts)


HEADER_DEPS = [("std_msgs/Header", HEADER), ("builtin_interfaces/Time", TIME)]
IMAGE = with_deps(
    "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\n"
    "uint8 is_bigendian\nuint32 step\nuint8[] data",
    HEADER_DEPS,
)
COMPRESSED = with_deps("std_msgs/Header header\nstring format\nuint8[] data", HEADER_DEPS)
CAMERA_INFO = with_deps(
    "std_msgs/Header header\nuint32 height\nuint32 width\nstring distortion_model\n"
    "float64[] d\nfloat64[9] k\nfloat64[9] r\nfloat64[12] p\nuint32 binning_x\n"
    "uint32 binning_y\nsensor_msgs/RegionOfInterest roi",
    HEADER_DEPS
    + [
        (
            "sensor_msgs/RegionOfInterest",
            "uint32 x_offset\nuint32 y_offset\nuint32 height\nuint32 width\nbool do_rectify",
        )
    ],
)
TEMPERATURE = with_deps(
    "std_msgs/Header header\nfloat64 temperature\nfloat64 variance", HEADER_DEPS
)


def header(i, frame_id="camera"):
    t = 1_700_000_000 + i / 30.0
    return {"stamp": {"sec": int(t), "nanosec": int(round((t - int(t)) * 1e9))}, "frame_id": frame_id}


def compressed(out, frames_dir, n):
    with open(out, "wb") as f:
        writer = Writer(f)
        image = writer.register_msgdef("sensor_msgs/msg/CompressedImage", COMPRESSED)
        info = writer.register_msgdef("sensor_msgs/msg/CameraInfo", CAMERA_INFO)
        temp = writer.register_msgdef("sensor_msgs/msg/Temperature", TEMPERATURE)
        for i in range(n):
            with open(f"{frames_dir}/frame-{i:06d}.color.jpg", "rb") as jpg:
                data = jpg.read()
            ns = int((1_700_000_000 + i / 30.0) * 1e9)
            if i == 0:
                writer.write_message(
                    "/camera/camera_info",
                    info,
                    {
                        "header": header(i),
                        "height": 480,
                        "width": 640,
                        "distortion_model": "plumb_bob",
                        "d": [0.0] * 5,
                        "k": [585.0, 0.0, 320.0, 0.0, 585.0, 240.0, 0.0, 0.0, 1.0],
                        "r": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                        "p": [585.0, 0.0, 320.0, 0.0, 0.0, 585.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                        "binning_x": 0,
                        "binning_y": 0,
                        "roi": {"x_offset": 0, "y_offset": 0, "height": 0, "width": 0, "do_rectify": False},
                    },
                    log_time=ns,
                    publish_time=ns,
                )
            writer.write_message(
                "/camera/image_raw/compressed",
                image,
                {"header": header(i), "format": "jpeg", "data": data},
                log_time=ns,
                publish_time=ns,
            )
            writer.write_message(
                "/imu/temperature",
                temp,
                {"header": header(i, "imu"), "temperature": 21.5, "variance": 0.0},
                log_time=ns,
                publish_time=ns,
            )
        writer.finish()
    print(json.dumps({"frames": n}))


def raw(out):
    w, h = 4, 2
    rgb = [((37 * i) % 256, (91 * i + 17) % 256, (53 * i + 200) % 256) for i in range(w * h)]
    expected = {}
    with open(out, "wb") as f:
        writer = Writer(f)
        schema = writer.register_msgdef("sensor_msgs/msg/Image", IMAGE)
        for k, encoding in enumerate(["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "yuv422"]):
            if encoding == "rgb8":
                data = bytes(c for p in rgb for c in p)
                want = rgb
            elif encoding == "bgr8":
                data = bytes(c for p in rgb for c in reversed(p))
                want = rgb
            elif encoding == "rgba8":
                data = bytes(c for p in rgb for c in (*p, 255))
                want = rgb
            elif encoding == "bgra8":
                data = bytes(c for p in rgb for c in (p[2], p[1], p[0], 7))
                want = rgb
            elif encoding == "mono8":
                grey = [(29 * i) % 256 for i in range(w * h)]
                data = bytes(grey)
                want = [(g, g, g) for g in grey]
            else:
                # UYVY with neutral chroma: the luma maps to grey through BT.601 video range.
                luma = [16 + 30 * i for i in range(w * h)]
                data = bytes(c for i in range(0, w * h, 2) for c in (128, luma[i], 128, luma[i + 1]))
                want = [(v, v, v) for v in (min(255, max(0, round(1.164 * (y - 16)))) for y in luma)]
            step = len(data) // h
            ns = 1_000_000_000 * (k + 1)
            writer.write_message(
                f"/raw/{encoding}",
                schema,
                {
                    "header": header(k),
                    "height": h,
                    "width": w,
                    "encoding": encoding,
                    "is_bigendian": 0,
                    "step": step,
                    "data": data,
                },
                log_time=ns,
                publish_time=ns,
            )
            expected[encoding] = [c for p in want for c in p]
        writer.finish()
    print(json.dumps(expected))


if __name__ == "__main__":
    if sys.argv[1] == "compressed":
        compressed(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        raw(sys.argv[2])
