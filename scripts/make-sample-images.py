#!/usr/bin/env python3
"""Generates the sample images of tests/images.rs (committed; run again only
to change them): a few small real PNG and JPEG photos-like pictures under
tests/data/images/good/, and a corpus of damaged ones under
tests/data/images/damaged/ that the thumbnail guest must fail one by one.

Needs Pillow (`pip install pillow`); the tests themselves do not.
Deterministic: the same files every time.
"""
import io
import math
import os
import random
import struct
import zlib

from PIL import Image, ImageDraw

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "images")
good = os.path.join(root, "good")
damaged = os.path.join(root, "damaged")
os.makedirs(good, exist_ok=True)
os.makedirs(damaged, exist_ok=True)
rng = random.Random(15)


def scene(w, h, mode="RGB"):
    """A sky gradient, a sun, hills and some noise: compresses like a photo."""
    img = Image.new("RGB", (w, h))
    px = img.load()
    for y in range(h):
        for x in range(w):
            t = y / h
            n = rng.randint(-6, 6)
            px[x, y] = (int(90 + 100 * t) + n, int(150 + 60 * t) + n, int(235 - 80 * t) + n)
    d = ImageDraw.Draw(img)
    r = min(w, h) // 8
    d.ellipse((w * 3 // 4 - r, h // 5 - r, w * 3 // 4 + r, h // 5 + r), fill=(255, 220, 90))
    for k, colour in enumerate([(60, 120, 50), (40, 95, 40)]):
        pts = [(0, h)]
        for x in range(0, w + 1, max(1, w // 40)):
            y = h * (0.6 + 0.1 * k) + h * 0.08 * math.sin(x / w * 6.0 + k * 2)
            pts.append((x, int(y)))
        pts.append((w, h))
        d.polygon(pts, fill=colour)
    return img.convert(mode)


def save(img, path, **kw):
    img.save(path, **kw)
    return path


def png_bytes(img):
    b = io.BytesIO()
    img.save(b, "PNG")
    return b.getvalue()


save(scene(640, 427), os.path.join(good, "hills.jpg"), quality=80)
save(scene(300, 500), os.path.join(good, "portrait.jpg"), quality=75, progressive=True)
save(scene(320, 200), os.path.join(good, "landscape.png"), optimize=True)
save(scene(200, 200, "L"), os.path.join(good, "grey.png"), optimize=True)
rgba = scene(180, 120).convert("RGBA")
ImageDraw.Draw(rgba).rectangle((20, 20, 80, 80), fill=(255, 0, 0, 90))
save(rgba, os.path.join(good, "overlay.png"))
save(scene(96, 64).convert("P", palette=Image.ADAPTIVE, colors=32), os.path.join(good, "small-palette.png"))
os.makedirs(os.path.join(good, "album"), exist_ok=True)
save(scene(400, 300), os.path.join(good, "album", "day two.jpg"), quality=70)

# Damaged images: each must fail alone.
land = png_bytes(scene(320, 200))
with open(os.path.join(damaged, "truncated.png"), "wb") as f:
    f.write(land[: len(land) // 2])
bad_crc = bytearray(land)
bad_crc[29] ^= 0xFF  # the last byte of IHDR's CRC
with open(os.path.join(damaged, "bad-crc.png"), "wb") as f:
    f.write(bytes(bad_crc))
with open(os.path.join(good, "hills.jpg"), "rb") as f:
    jpg = f.read()
garbage = bytearray(jpg[:200])
garbage += bytes(rng.randrange(256) for _ in range(2000))
with open(os.path.join(damaged, "garbage.jpg"), "wb") as f:
    f.write(bytes(garbage))
with open(os.path.join(damaged, "truncated.jpg"), "wb") as f:
    f.write(jpg[:600])
open(os.path.join(damaged, "empty.png"), "wb").close()
with open(os.path.join(damaged, "notes.png"), "w") as f:
    f.write("This is a text file with a .png name, not an image.\n")


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_claiming(width, height, rows):
    """A well-formed PNG header declaring width x height RGBA, with `rows` of zero data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    raw = zlib.compress(b"\0" * (rows * (1 + 4 * min(width, 4096))), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


# A decompression bomb: 100,000 x 100,000 RGBA (40 GB decoded) in a few hundred bytes.
with open(os.path.join(damaged, "bomb-dimensions.png"), "wb") as f:
    f.write(png_claiming(100_000, 100_000, 2))
# Within the side limit but 8,000 x 8,000 RGBA = 256 MB decoded.
with open(os.path.join(damaged, "bomb-memory.png"), "wb") as f:
    f.write(png_claiming(8_000, 8_000, 2))
# A JPEG whose frame header declares 65,000 x 65,000.
sof = jpg.find(b"\xff\xc0")
bomb = bytearray(jpg)
bomb[sof + 5 : sof + 9] = struct.pack(">HH", 65_000, 65_000)
with open(os.path.join(damaged, "bomb-dimensions.jpg"), "wb") as f:
    f.write(bytes(bomb))

total = sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(root) for n in ns)
print(f"wrote tests/data/images ({total} bytes)")
