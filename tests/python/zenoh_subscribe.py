"""A Zenoh subscriber written with Zenoh's own Python binding (eclipse-zenoh), independent of
livedepth: listens on ENDPOINT, subscribes to KEYEXPR, prints "ready", then collects samples
until none came for 3 s after the first (or TIMEOUT_S passed), decoding the depth images with
Foxglove's published protobuf schemas (foxglove-schemas-protobuf).

usage: zenoh_subscribe.py ENDPOINT KEYEXPR TIMEOUT_S
Prints one JSON line: messages and encoding per key, the last depth image's size, encoding and
value range, and the last status.
"""

import json
import struct
import sys
import threading
import time

import zenoh
from foxglove_schemas_protobuf.RawImage_pb2 import RawImage


def main():
    endpoint, keyexpr, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
    config = zenoh.Config()
    config.insert_json5("mode", '"peer"')
    config.insert_json5("listen/endpoints", json.dumps([endpoint]))
    config.insert_json5("scouting/multicast/enabled", "false")
    out = {"keys": {}, "encodings": {}}
    lock = threading.Lock()
    last = [None]

    def on_sample(sample):
        key = str(sample.key_expr)
        payload = sample.payload.to_bytes()
        with lock:
            last[0] = time.monotonic()
            out["keys"][key] = out["keys"].get(key, 0) + 1
            out["encodings"][key] = str(sample.encoding)
            if key.endswith("/depth/image"):
                image = RawImage()
                image.ParseFromString(payload)
                values = struct.unpack("<%df" % (len(image.data) // 4), image.data)
                out["depth"] = {
                    "width": image.width,
                    "height": image.height,
                    "encoding": image.encoding,
                    "min": min(values),
                    "max": max(values),
                }
            elif key.endswith("/livedepth/status"):
                out["status"] = json.loads(payload)

    start = time.monotonic()
    with zenoh.open(config) as session:
        session.declare_subscriber(keyexpr, on_sample)
        print("ready", flush=True)
        while time.monotonic() - start < timeout:
            time.sleep(0.2)
            with lock:
                if last[0] is not None and time.monotonic() - last[0] > 3.0:
                    break
        with lock:
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
