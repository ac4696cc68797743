"""Fixture for TensorBoard event files (src/tensorboard.rs): the bytes TensorBoard's own writer
produces for a file-version event and three scalar events.

    /path/to/python tests/parity/tb_events.py   # writes tests/parity/tensorboard.tfevents

tensorboard 2.x (PyPI `tensorboard`): its `Event`/`Summary` protocol buffers and its TFRecord
`RecordWriter` (the one `SummaryWriter` / `EventFileWriter` use). Python's protobuf serializes
fields in field-number order, as src/tensorboard.rs does.
"""

import io
import os

from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.record_writer import RecordWriter

HERE = os.path.dirname(os.path.abspath(__file__))

buf = io.BytesIO()
w = RecordWriter(buf)
w.write(Event(wall_time=1_700_000_000.25, file_version="brain.Event:2").SerializeToString())
points = [
    (1_700_000_001.5, 0, [("loss", 0.75), ("lr", 1e-3)]),
    (1_700_000_002.5, 2048, [("img_per_s", 123.5), ("loss", -0.0)]),
    (1_700_000_003.0, 300_000_000_000, [("kimg", 3e8), ("loss", 1.1754943508222875e-38)]),
]
for t, step, values in points:
    s = Summary(value=[Summary.Value(tag=k, simple_value=v) for k, v in values])
    w.write(Event(wall_time=t, step=step, summary=s).SerializeToString())
with open(os.path.join(HERE, "tensorboard.tfevents"), "wb") as f:
    f.write(buf.getvalue())
print(len(buf.getvalue()), "bytes")
