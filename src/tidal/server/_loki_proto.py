"""Loki's push schema (``logproto``, from Loki's published ``push.proto``), built in code.

No generated ``_pb2`` module and no ``protoc``: the file descriptor is written
here as a :class:`~google.protobuf.descriptor_pb2.FileDescriptorProto`, added
to a private descriptor pool (next to ``google/protobuf/timestamp.proto``),
and the message classes come from
:func:`google.protobuf.message_factory.GetMessageClass`. The wire format is the
one Loki, Promtail, Grafana Alloy and the Loki Go client speak::

    message PushRequest    { repeated StreamAdapter streams = 1; }
    message StreamAdapter  { string labels = 1; repeated EntryAdapter entries = 2;
                             uint64 hash = 3; }
    message EntryAdapter   { google.protobuf.Timestamp timestamp = 1; string line = 2;
                             repeated LabelPairAdapter structuredMetadata = 3; }
    message LabelPairAdapter { string name = 1; string value = 2; }

(Loki's own ``.proto`` names the messages ``PushRequest``, ``StreamAdapter``,
``EntryAdapter`` and ``LabelPairAdapter`` and uses ``gogoproto`` options that do
not change the bytes on the wire.)

>>> request = PushRequest()
>>> stream = request.streams.add(labels='{app="api"}')
>>> entry = stream.entries.add(line="hello")
>>> entry.timestamp.FromNanoseconds(1_767_225_600_000_000_001)
>>> PushRequest.FromString(request.SerializeToString()).streams[0].entries[0].line
'hello'
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

__all__ = ["EntryAdapter", "LabelPairAdapter", "PushRequest", "StreamAdapter"]

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED


def _file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name="tidal/loki/push.proto", package="logproto", syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"])

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> None:
        m = file.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            f = m.field.add(name=field_name, number=number, type=kind, label=label,
                            json_name=field_name)
            if type_name:
                f.type_name = type_name

    message("PushRequest",
            ("streams", 1, _F.TYPE_MESSAGE, _REPEATED, ".logproto.StreamAdapter"))
    message("StreamAdapter",
            ("labels", 1, _F.TYPE_STRING, _OPTIONAL, ""),
            ("entries", 2, _F.TYPE_MESSAGE, _REPEATED, ".logproto.EntryAdapter"),
            ("hash", 3, _F.TYPE_UINT64, _OPTIONAL, ""))
    message("EntryAdapter",
            ("timestamp", 1, _F.TYPE_MESSAGE, _OPTIONAL, ".google.protobuf.Timestamp"),
            ("line", 2, _F.TYPE_STRING, _OPTIONAL, ""),
            ("structuredMetadata", 3, _F.TYPE_MESSAGE, _REPEATED,
             ".logproto.LabelPairAdapter"))
    message("LabelPairAdapter",
            ("name", 1, _F.TYPE_STRING, _OPTIONAL, ""),
            ("value", 2, _F.TYPE_STRING, _OPTIONAL, ""))
    return file


def _classes() -> dict[str, Any]:
    pool = descriptor_pool.DescriptorPool()  # (private: no clash with other logproto users)
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(_file().SerializeToString())
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"logproto.{name}"))
            for name in __all__}


_CLASSES = _classes()
PushRequest: Any = _CLASSES["PushRequest"]
StreamAdapter: Any = _CLASSES["StreamAdapter"]
EntryAdapter: Any = _CLASSES["EntryAdapter"]
LabelPairAdapter: Any = _CLASSES["LabelPairAdapter"]
