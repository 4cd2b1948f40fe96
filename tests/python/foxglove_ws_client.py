"""A Foxglove WebSocket client written from the public protocol description, independent of
livedepth: connects with subprotocol foxglove.sdk.v1, reads the channel advertisements,
subscribes to the depth and calibration channels and decodes what arrives with the protobuf
schemas the server advertised.

usage: foxglove_ws_client.py URL DEPTH_MESSAGES TIMEOUT_S
Prints one JSON line: advertised topics with their schema names, how many depth messages
arrived, and the first depth image's size, encoding and value range.
"""

import asyncio
import base64
import json
import struct
import sys

import websockets
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory


def message_class(schema_name, schema_b64):
    """The protobuf class of `schema_name` from a base64 FileDescriptorSet."""
    files = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(schema_b64))
    pool = descriptor_pool.DescriptorPool()
    for f in files.file:
        pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(schema_name))


async def connect(url, deadline):
    """Connects, retrying while the server is still starting."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return await websockets.connect(url, subprotocols=["foxglove.sdk.v1"], max_size=None)
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def run(url, wanted, timeout):
    result = {"topics": {}, "depth_messages": 0, "calibration_messages": 0}
    start_deadline = asyncio.get_running_loop().time() + timeout
    async with await connect(url, start_deadline) as ws:
        result["subprotocol"] = ws.subprotocol
        channels = {}
        subscriptions = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while result["depth_messages"] < wanted and loop.time() < deadline:
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=max(0.1, deadline - loop.time()))
            except asyncio.TimeoutError:
                break
            if isinstance(raw, str):
                msg = json.loads(raw)
                if msg.get("op") == "advertise":
                    for ch in msg["channels"]:
                        channels[ch["id"]] = ch
                        result["topics"][ch["topic"]] = ch.get("schemaName")
                    wanted_topics = ("/depth/image", "/camera/calibration")
                    subs = []
                    for ch in msg["channels"]:
                        if ch["topic"] in wanted_topics and ch["id"] not in subscriptions.values():
                            sub_id = len(subscriptions) + 1
                            subscriptions[sub_id] = ch["id"]
                            subs.append({"id": sub_id, "channelId": ch["id"]})
                    if subs:
                        await ws.send(json.dumps({"op": "subscribe", "subscriptions": subs}))
                continue
            if raw[0] != 0x01:
                continue
            sub_id, _log_time = struct.unpack_from("<IQ", raw, 1)
            payload = raw[13:]
            ch = channels[subscriptions[sub_id]]
            cls = message_class(ch["schemaName"], ch["schema"])
            decoded = cls.FromString(payload)
            if ch["topic"] == "/depth/image":
                result["depth_messages"] += 1
                if "depth" not in result:
                    values = struct.unpack("<%df" % (len(decoded.data) // 4), decoded.data)
                    result["depth"] = {
                        "width": decoded.width,
                        "height": decoded.height,
                        "encoding": decoded.encoding,
                        "step": decoded.step,
                        "bytes": len(decoded.data),
                        "min": min(values),
                        "max": max(values),
                    }
            else:
                result["calibration_messages"] += 1
                result["calibration_k"] = list(decoded.K if hasattr(decoded, "K") else decoded.k)
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(run(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
