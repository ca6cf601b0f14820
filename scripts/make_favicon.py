"""Write static/root/favicon.ico: the mark of static/img/favicon.svg (a blue diamond on the
sidebar's slate, rounded corners) as a 32x32 PNG inside an ICO, for clients that ask for
/favicon.ico without reading the page's ``<link rel="icon">``. Standard library only (no
image library is installed); run ``python scripts/make_favicon.py`` after changing the SVG."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

SIZE = 32
SLATE = (0x0F, 0x17, 0x2A)
BLUE = (0x25, 0x63, 0xEB)
SAMPLES = 4  # per axis, for smooth edges


def _coverage(x: float, y: float) -> tuple[bool, bool]:
    """(inside the rounded square, inside the diamond) for a point in SVG units."""
    r = 6.0
    cx = min(max(x, r), SIZE - r)
    cy = min(max(y, r), SIZE - r)
    in_square = (x - cx) ** 2 + (y - cy) ** 2 <= r * r
    in_diamond = abs(x - 16) + abs(y - 16) <= 12
    return in_square, in_diamond


def _pixel(px: int, py: int) -> bytes:
    square = diamond = 0
    for i in range(SAMPLES):
        for j in range(SAMPLES):
            s, d = _coverage(px + (i + 0.5) / SAMPLES, py + (j + 0.5) / SAMPLES)
            square += s
            diamond += d
    n = SAMPLES * SAMPLES
    if not square:
        return bytes(4)
    mix = diamond / square
    rgb = (round(a * (1 - mix) + b * mix) for a, b in zip(SLATE, BLUE, strict=True))
    return bytes([*rgb, round(255 * square / n)])


def png() -> bytes:
    rows = b"".join(b"\0" + b"".join(_pixel(x, y) for x in range(SIZE)) for y in range(SIZE))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def ico() -> bytes:
    image = png()
    directory = struct.pack("<BBBBHHII", SIZE, SIZE, 0, 0, 1, 32, len(image), 6 + 16)
    return struct.pack("<HHH", 0, 1, 1) + directory + image


if __name__ == "__main__":
    target = Path(__file__).resolve().parents[1] / "static" / "root" / "favicon.ico"
    target.write_bytes(ico())
    print(f"wrote {target} ({target.stat().st_size} bytes)")
