#!/usr/bin/env python3
"""Real landscape photos from Debian's `endless-sky-data` as an ImageFolder for petal.

The package (bookworm main, 0.9.8-1.2, `apt-get download endless-sky-data`) ships 273 real
camera photos, 720×360 JPEG, in `usr/share/games/endless-sky/images/land/` (Unsplash,
morgue-file, NASA, USGS, Wikimedia; public domain, CC-BY-SA-3.0 and CC-BY-SA-4.0 per
`/usr/share/doc/endless-sky-data/copyright` — attribution in that file). A photo's class is
its file name up to the first digit (`mountain12-harro.jpg` → `mountain`).

Default classes: the eight scene kinds with at least 10 photos whose names do not overlap
(mountain, city, sea, canyon, fields, snow, desert, sky — 127 photos; `water`/`beach` overlap
`sea`, `valley`/`badlands` overlap `canyon`, so they are left out unless asked for). Every
`--valid-every`-th photo of a class (sorted by name) goes to valid/, the rest to train/.

Usage:
  apt-get download endless-sky-data            # endless-sky-data_0.9.8-1.2_all.deb
  python3 scripts/endless_sky_to_imagefolder.py endless-sky-data_0.9.8-1.2_all.deb /tmp/landscapes
  petal train --data /tmp/landscapes --weights mobilenet_v2-b0353104.pth ...
"""

import argparse
import io
import re
import shutil
import subprocess
import sys
import tarfile
from collections import defaultdict
from pathlib import Path

LAND = "usr/share/games/endless-sky/images/land/"
DEFAULT_CLASSES = ["mountain", "city", "sea", "canyon", "fields", "snow", "desert", "sky"]


def land_photos(deb: Path) -> dict:
    """{file name: JPEG bytes} of the package's land photos (dpkg-deb, no install)."""
    tar = subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True
    ).stdout
    out = {}
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        for m in t.getmembers():
            name = m.name.lstrip("./")
            if m.isfile() and name.startswith(LAND) and name.endswith(".jpg"):
                out[name[len(LAND):]] = t.extractfile(m).read()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("deb", type=Path, help="endless-sky-data_*.deb (or a folder of the land photos)")
    ap.add_argument("out", type=Path, help="output folder (train/<class>/, valid/<class>/)")
    ap.add_argument("--classes", default=",".join(DEFAULT_CLASSES), help="comma-separated class names")
    ap.add_argument("--valid-every", type=int, default=3, help="every N-th photo of a class goes to valid/")
    ap.add_argument("--force", action="store_true", help="replace an existing output folder")
    args = ap.parse_args()

    if args.deb.is_dir():
        photos = {p.name: p.read_bytes() for p in sorted(args.deb.glob("*.jpg"))}
    else:
        photos = land_photos(args.deb)
    if not photos:
        print(f"no land photos found in {args.deb}", file=sys.stderr)
        return 2
    by_class = defaultdict(list)
    for name in sorted(photos):
        by_class[re.sub(r"[0-9].*$", "", name.removesuffix(".jpg"))].append(name)
    wanted = [c.strip() for c in args.classes.split(",") if c.strip()]
    missing = [c for c in wanted if c not in by_class]
    if missing:
        print(f"unknown classes {missing}; the package has {sorted(by_class)}", file=sys.stderr)
        return 2
    if args.out.exists():
        if not args.force:
            print(f"{args.out} exists (use --force to replace it)", file=sys.stderr)
            return 2
        shutil.rmtree(args.out)
    for c in wanted:
        for i, name in enumerate(by_class[c]):
            split = "valid" if i % args.valid_every == args.valid_every - 1 else "train"
            d = args.out / split / c
            d.mkdir(parents=True, exist_ok=True)
            (d / name).write_bytes(photos[name])
    for split in ["train", "valid"]:
        counts = {c: len(list((args.out / split / c).glob("*.jpg"))) for c in wanted}
        print(f"{split}: {sum(counts.values())} photos  {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
