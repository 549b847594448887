#!/usr/bin/env python3
"""Generate the small mislabelled / damaged image files petal's bad-input tests use.

Needs only Pillow (from PyPI: `pip install pillow`):

    python3 scripts/make_bad_images.py

Writes to tests/fixtures/:
- `png_named.jpg`   a PNG saved under a `.jpg` name (24x16, pixel (x, y) = (10x, 15y, 99));
- `jpeg_named.png`  a JPEG saved under a `.png` name (24x16, flat (120, 60, 200), q95);
- `truncated.jpg`   a 64x48 JPEG cut after 60 % of its bytes (no end-of-image marker);
- `corrupt_idat.png` a 24x16 PNG whose header, chunk layout and IEND are intact but whose
  compressed pixel data is garbage: a header scan accepts it, only decoding fails.
Pillow itself opens the first two by content, refuses `truncated.jpg` on load ("image file
is truncated") and fails on `corrupt_idat.png`; the script checks that before writing.
"""
import io
import os
import struct
import zlib

from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures")


def gradient(w, h):
    img = Image.new("RGB", (w, h))
    img.putdata([(10 * x, 15 * y, 99) for y in range(h) for x in range(w)])
    return img


def encoded(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    print(f"{name}: {len(data)} bytes")


def corrupt_idat(png):
    """Replaces the IDAT payload with bytes that are no zlib stream, fixing up the CRC."""
    out, at = png[:8], 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind = png[at + 4 : at + 8]
        body = png[at + 8 : at + 8 + length]
        if kind == b"IDAT":
            body = bytes((i * 37 + 11) % 256 for i in range(length))
        crc = struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        out += png[at : at + 4] + kind + body + crc
        at += 12 + length
    return out


def main():
    png = encoded(gradient(24, 16), "PNG")
    jpeg = encoded(Image.new("RGB", (24, 16), (120, 60, 200)), "JPEG", quality=95)
    photo = Image.new("RGB", (64, 48))
    photo.putdata([(4 * x, 5 * y, 77) for y in range(48) for x in range(64)])
    full = encoded(photo, "JPEG", quality=90)
    truncated = full[: len(full) * 3 // 5]
    bad = corrupt_idat(png)

    assert Image.open(io.BytesIO(png)).format == "PNG"
    assert Image.open(io.BytesIO(jpeg)).format == "JPEG"
    for data in (truncated, bad):
        try:
            Image.open(io.BytesIO(data)).load()
        except (OSError, zlib.error):
            pass
        else:
            raise SystemExit("Pillow loaded a file meant to be damaged")
    write("png_named.jpg", png)
    write("jpeg_named.png", jpeg)
    write("truncated.jpg", truncated)
    write("corrupt_idat.png", bad)


if __name__ == "__main__":
    main()
