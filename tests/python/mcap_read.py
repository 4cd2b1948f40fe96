"""Reads an MCAP file with the mcap package (independent of livedepth) and prints one JSON line.

usage: mcap_read.py FILE indexed|stream
- indexed: the summary's channels and schemas, messages per topic through the indexed reader,
  the first depth image decoded with the recorded protobuf schema, and the last status JSON
  (and the last one carrying pipeline statistics, and adaptation status), and the last camera
  pose on /tf (foxglove.FrameTransform) when there is one;
- stream: a file that may be cut short (a killed run): reads records from the start until the
  data ends, as a recovery tool does, and counts the whole messages per topic it got.
"""

import json
import struct
import sys

from mcap.exceptions import McapError
from mcap.reader import make_reader
from mcap.records import Channel, Message
from mcap.stream_reader import StreamReader
from mcap_protobuf.decoder import DecoderFactory


def indexed(path):
    out = {"topics": {}, "messages": {}}
    with open(path, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        out["chunks"] = len(summary.chunk_indexes)
        for ch in summary.channels.values():
            out["topics"][ch.topic] = summary.schemas[ch.schema_id].name
        protobuf = DecoderFactory()
        for schema, channel, message in reader.iter_messages():
            out["messages"][channel.topic] = out["messages"].get(channel.topic, 0) + 1
            if channel.topic == "/livedepth/status":
                # The last status, and the last that carried pipeline statistics / adaptation.
                status = json.loads(message.data)
                out["status"] = status
                for key in ("pipeline", "adapt"):
                    if status.get(key) is not None:
                        out["status_with_" + key] = status
            if channel.topic == "/tf":
                # The camera's last pose (odom -> camera).
                decoded = protobuf.decoder_for(channel.message_encoding, schema)(message.data)
                t, q = decoded.translation, decoded.rotation
                out["tf_last"] = {
                    "parent": decoded.parent_frame_id,
                    "child": decoded.child_frame_id,
                    "translation": [t.x, t.y, t.z],
                    "rotation": [q.x, q.y, q.z, q.w],
                }
            if channel.topic == "/depth/image" and "depth" not in out:
                decoded = protobuf.decoder_for(channel.message_encoding, schema)(message.data)
                values = struct.unpack("<%df" % (len(decoded.data) // 4), decoded.data)
                out["depth"] = {
                    "width": decoded.width,
                    "height": decoded.height,
                    "encoding": decoded.encoding,
                    "min": min(values),
                    "max": max(values),
                }
    return out


def stream(path):
    out = {"messages": {}, "error": None}
    topics = {}
    with open(path, "rb") as f:
        try:
            for record in StreamReader(f).records:
                if isinstance(record, Channel):
                    topics[record.id] = record.topic
                elif isinstance(record, Message):
                    topic = topics.get(record.channel_id, str(record.channel_id))
                    out["messages"][topic] = out["messages"].get(topic, 0) + 1
        except (McapError, EOFError, struct.error, ValueError) as e:
            out["error"] = type(e).__name__
    return out


if __name__ == "__main__":
    mode = sys.argv[2]
    print(json.dumps(indexed(sys.argv[1]) if mode == "indexed" else stream(sys.argv[1])))
