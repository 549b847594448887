#!/usr/bin/env python3
"""The TensorBoard reference file for petal's event writer (tests/fixtures/tb_reference.tfevents).

Written by the `tensorboard` package's own protobufs and record framing (its RecordWriter, what
its EventFileWriter uses; pip install tensorboard): the file-version event, a scalar event and
a text event with fixed wall times, so that petal's
writer (crates/trainer/src/tensorboard.rs) can be compared with it byte for byte.
With --read FILE instead, loads FILE with TensorBoard's EventAccumulator and prints what it
sees (the check that TensorBoard reads petal's files).

    /tmp/fx/bin/python scripts/make_tb_fixture.py
    /tmp/fx/bin/python scripts/make_tb_fixture.py --read RUN/tb
"""
import os
import sys

from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tb_reference.tfevents")


def write():
    # RecordWriter is the framing EventFileWriter writes with (tensorboard.summary.writer).
    with open(OUT, "wb") as f:
        rw = RecordWriter(f)
        rw.write(event_pb2.Event(wall_time=1234.5, step=0, file_version="brain.Event:2").SerializeToString())
        scalars = summary_pb2.Summary(value=[
            summary_pb2.Summary.Value(tag="train/loss", simple_value=0.5),
            summary_pb2.Summary.Value(tag="lr/group0", simple_value=2e-3),
        ])
        rw.write(event_pb2.Event(wall_time=1235.25, step=3, summary=scalars).SerializeToString())
        text = summary_pb2.Summary(value=[summary_pb2.Summary.Value(
            tag="config",
            tensor=tensor_pb2.TensorProto(
                dtype=types_pb2.DT_STRING,
                tensor_shape=tensor_shape_pb2.TensorShapeProto(
                    dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)]),
                string_val=[b"lr = 0.002"]),
            metadata=summary_pb2.SummaryMetadata(
                plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text")))])
        rw.write(event_pb2.Event(wall_time=1236.0, step=0, summary=text).SerializeToString())
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


def read(path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(path, size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in sorted(tags["scalars"]):
        events = acc.Scalars(tag)
        print(f"scalar {tag}: {len(events)} points, steps {events[0].step}..{events[-1].step}, "
              f"last {events[-1].value:.6g}")
    for tag in sorted(tags["tensors"]):
        t = acc.Tensors(tag)[0].tensor_proto
        print(f"text {tag}: {t.string_val[0][:60]!r}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--read":
        read(sys.argv[2])
    else:
        write()
