#!/usr/bin/env python3
"""Write a copy of a zip-format PyTorch state dict with NaN / ±inf planted in named tensors.

No PyTorch needed: the zip's `data.pkl` is read with a stub unpickler that only records
which storage file (and element offset) each key's tensor lives in; the raw little-endian
float32 storages are then patched in place in a copy of the archive.

    python3 scripts/poison_state_dict.py            # writes tests/fixtures/densenet_tiny_nan.pth

(from tests/fixtures/densenet_tiny.pth: 3 NaN + 1 inf at the start of
`features.conv0.weight`, and -inf in the first element of `features.norm5.running_var`).
"""
import os
import pickle
import struct
import sys
import zipfile
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
NAN, INF = float("nan"), float("inf")


class _Storage:
    def __init__(self, key, dtype):
        self.key, self.dtype = key, dtype


class _Tensor:
    def __init__(self, storage, offset, size):
        self.storage, self.offset, self.size = storage, offset, size


def _rebuild_tensor_v2(storage, offset, size, stride, *args):
    return _Tensor(storage, offset, size)


class _Stub:
    def __init__(self, name):
        self.name = name

    def __call__(self, *args, **kwargs):
        return {}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "collections" and name == "OrderedDict":
            import collections
            return collections.OrderedDict
        return _Stub(f"{module}.{name}")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel)
        return _Storage(pid[2], getattr(pid[1], "name", str(pid[1])))


def storages(path):
    with zipfile.ZipFile(path) as z:
        pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        prefix = pkl[: -len("data.pkl")]
        sd = _Unpickler(z.open(pkl)).load()
    return prefix, {k: v for k, v in sd.items() if isinstance(v, _Tensor)}


def poison(src, dst, plants):
    """plants: {key: [values written from the tensor's first element on]}.

    The archive is patched in place (data bytes, then the CRC-32 in the member's local header
    and central-directory entry), so its layout, PyTorch's 64-byte data alignment included,
    stays exactly as torch.save wrote it."""
    prefix, tensors = storages(src)
    raw = bytearray(open(src, "rb").read())
    with zipfile.ZipFile(src) as z:
        infos = {i.filename: i for i in z.infolist()}
    # Central-directory entries: filename -> offset of the entry.
    eocd = raw.rindex(b"PK\x05\x06")
    count, = struct.unpack_from("<H", raw, eocd + 10)
    cd, = struct.unpack_from("<I", raw, eocd + 16)
    central = {}
    for _ in range(count):
        assert raw[cd:cd + 4] == b"PK\x01\x02"
        n, e, c = struct.unpack_from("<HHH", raw, cd + 28)
        central[raw[cd + 46:cd + 46 + n].decode()] = cd
        cd += 46 + n + e + c
    for key, values in plants.items():
        t = tensors[key]
        assert t.storage.dtype.endswith("FloatStorage"), f"{key}: {t.storage.dtype}"
        info = infos[f"{prefix}data/{t.storage.key}"]
        assert info.compress_type == zipfile.ZIP_STORED
        h = info.header_offset
        n, e = struct.unpack_from("<HH", raw, h + 26)
        start = h + 30 + n + e
        for i, v in enumerate(values):
            struct.pack_into("<f", raw, start + 4 * (t.offset + i), v)
        crc = zlib.crc32(raw[start:start + info.file_size]) & 0xFFFFFFFF
        struct.pack_into("<I", raw, h + 14, crc)
        struct.pack_into("<I", raw, central[info.filename] + 16, crc)
    open(dst, "wb").write(raw)
    with zipfile.ZipFile(dst) as z:
        assert z.testzip() is None, "CRC check of the patched archive"


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(FIX, "densenet_tiny.pth")
    dst = sys.argv[2] if len(sys.argv) > 2 else os.path.join(FIX, "densenet_tiny_nan.pth")
    poison(src, dst, {
        "features.conv0.weight": [NAN, NAN, INF, NAN],
        "features.norm5.running_var": [-INF],
    })
    print(f"wrote {dst}")


if __name__ == "__main__":
    main()
