"""Writes ROS 2 bags (MCAP, CDR) with mcap-ros2-support, independently of livedepth.

usage:
  write_ros2_bag.py compressed OUT.mcap FRAMES_DIR N
      the first N real JPEG frames of a 7-Scenes folder (frame-XXXXXX.color.jpg), as they are,
      on /camera/image_raw/compressed (sensor_msgs/msg/CompressedImage), with
      /camera/camera_info (sensor_msgs/msg/CameraInfo) and an unrelated /imu/temperature topic,
      stamped at 30 Hz;
  write_ros2_bag.py imu OUT.mcap FRAMES_DIR N
      the same, plus /imu/data (sensor_msgs/msg/Imu) carrying the orientation an IMU mounted
      in ROS body axes (x forward, y left, z up) with the camera looking along its x axis would
      report, from the folder's ground-truth poses: one sample 10 ms before the first frame and
      one at each frame's stamp; and /imu/raw, an IMU without orientation (covariance[0] = -1);
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
VECTOR3 = "float64 x\nfloat64 y\nfloat64 z"
IMU = with_deps(
    "std_msgs/Header header\ngeometry_msgs/Quaternion orientation\n"
    "float64[9] orientation_covariance\ngeometry_msgs/Vector3 angular_velocity\n"
    "float64[9] angular_velocity_covariance\ngeometry_msgs/Vector3 linear_acceleration\n"
    "float64[9] linear_acceleration_covariance",
    HEADER_DEPS
    + [
        ("geometry_msgs/Quaternion", "float64 x\nfloat64 y\nfloat64 z\nfloat64 w"),
        ("geometry_msgs/Vector3", VECTOR3),
    ],
)
# The camera's axes in the IMU's: camera z (forward) = IMU x, camera x (right) = IMU -y,
# camera y (down) = IMU -z. Rows of the camera-to-IMU rotation.
CAMERA_IN_IMU = [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]


def matmul(a, b):
    return [[sum(a[i][k] * b[k][j] for k in range(3)) for j in range(3)] for i in range(3)]


def transpose(a):
    return [[a[j][i] for j in range(3)] for i in range(3)]


def quaternion(m):
    """(x, y, z, w) of a rotation matrix."""
    trace = m[0][0] + m[1][1] + m[2][2]
    if trace > 0:
        s = 2.0 * (trace + 1.0) ** 0.5
        return ((m[2][1] - m[1][2]) / s, (m[0][2] - m[2][0]) / s, (m[1][0] - m[0][1]) / s, s / 4)
    if m[0][0] > m[1][1] and m[0][0] > m[2][2]:
        s = 2.0 * (1.0 + m[0][0] - m[1][1] - m[2][2]) ** 0.5
        return (s / 4, (m[0][1] + m[1][0]) / s, (m[0][2] + m[2][0]) / s, (m[2][1] - m[1][2]) / s)
    if m[1][1] > m[2][2]:
        s = 2.0 * (1.0 + m[1][1] - m[0][0] - m[2][2]) ** 0.5
        return ((m[0][1] + m[1][0]) / s, s / 4, (m[1][2] + m[2][1]) / s, (m[0][2] - m[2][0]) / s)
    s = 2.0 * (1.0 + m[2][2] - m[0][0] - m[1][1]) ** 0.5
    return ((m[0][2] + m[2][0]) / s, (m[1][2] + m[2][1]) / s, s / 4, (m[1][0] - m[0][1]) / s)


def imu_orientation(frames_dir, i):
    """The IMU's orientation in the world at frame i, from the camera-to-world pose."""
    with open(f"{frames_dir}/frame-{i:06d}.pose.txt") as f:
        pose = [[float(v) for v in line.split()] for line in f if line.strip()]
    camera_in_world = [row[:3] for row in pose[:3]]
    return quaternion(matmul(camera_in_world, transpose(CAMERA_IN_IMU)))


def stamp(t):
    return {"sec": int(t), "nanosec": int(round((t - int(t)) * 1e9))}


def imu_message(t, q, covariance0=0.0):
    zeros = [0.0] * 9
    return {
        "header": {"stamp": stamp(t), "frame_id": "imu"},
        "orientation": {"x": q[0], "y": q[1], "z": q[2], "w": q[3]},
        "orientation_covariance": [covariance0] + [0.0] * 8,
        "angular_velocity": {"x": 0.0, "y": 0.0, "z": 0.0},
        "angular_velocity_covariance": zeros,
        "linear_acceleration": {"x": 0.0, "y": 0.0, "z": 9.81},
        "linear_acceleration_covariance": zeros,
    }


TEMPERATURE = with_deps(
    "std_msgs/Header header\nfloat64 temperature\nfloat64 variance", HEADER_DEPS
)


def header(i, frame_id="camera"):
    return {"stamp": stamp(1_700_000_000 + i / 30.0), "frame_id": frame_id}


def compressed(out, frames_dir, n, with_imu=False):
    with open(out, "wb") as f:
        writer = Writer(f)
        image = writer.register_msgdef("sensor_msgs/msg/CompressedImage", COMPRESSED)
        info = writer.register_msgdef("sensor_msgs/msg/CameraInfo", CAMERA_INFO)
        temp = writer.register_msgdef("sensor_msgs/msg/Temperature", TEMPERATURE)
        imu = writer.register_msgdef("sensor_msgs/msg/Imu", IMU) if with_imu else None
        if with_imu:
            t = 1_700_000_000 - 0.010
            ns = int(t * 1e9)
            q = imu_orientation(frames_dir, 0)
            for topic, covariance0 in (("/imu/data", 0.0), ("/imu/raw", -1.0)):
                message = imu_message(t, q, covariance0)
                writer.write_message(topic, imu, message, log_time=ns, publish_time=ns)
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
            if with_imu:
                t = 1_700_000_000 + i / 30.0
                message = imu_message(t, imu_orientation(frames_dir, i))
                writer.write_message("/imu/data", imu, message, log_time=ns, publish_time=ns)
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
    if sys.argv[1] in ("compressed", "imu"):
        compressed(sys.argv[2], sys.argv[3], int(sys.argv[4]), with_imu=sys.argv[1] == "imu")
    else:
        raw(sys.argv[2])
