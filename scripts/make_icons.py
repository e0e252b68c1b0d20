#!/usr/bin/env python3
"""Writes the PWA icons in www/icons/: a candle on the theme colour, plain (rounded) and maskable
(full bleed, the candle inside the central safe zone), at 192 and 512 pixels. Standard library only."""
import math
import struct
import zlib
from pathlib import Path

BG, FLAME, WAX = (0x1F, 0x2A, 0x44), (0xFF, 0xB3, 0x47), (0xF4, 0xF1, 0xEA)


def pixel(u, v, maskable):
    if not maskable:
        pad, r = 0.08, 0.18
        dx = max(abs(u - 0.5) - (0.5 - r - pad), 0)
        dy = max(abs(v - 0.5) - (0.5 - r - pad), 0)
        if math.hypot(dx, dy) > r or abs(u - 0.5) > 0.5 - pad or abs(v - 0.5) > 0.5 - pad:
            return None
    if 0.42 < u < 0.58 and 0.48 < v < 0.78:
        return WAX
    fx, fy = (u - 0.5) / 0.07, (v - 0.36) / 0.12
    if fx * fx + fy * fy < 1 and v < 0.46:
        return FLAME
    return BG


def png(path, size, maskable):
    rows = []
    for y in range(size):
        row = bytearray([0])
        for x in range(size):
            c = pixel(x / size, y / size, maskable)
            row += bytes([0, 0, 0, 0]) if c is None else bytes([*c, 255])
        rows.append(bytes(row))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b""))


out = Path(__file__).resolve().parent.parent / "www" / "icons"
out.mkdir(exist_ok=True)
for size in (192, 512):
    png(out / f"icon-{size}.png", size, False)
    png(out / f"maskable-{size}.png", size, True)
