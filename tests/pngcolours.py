"""Count the distinct colours of a PNG (8-bit RGB/RGBA, non-interlaced: what Chromium writes), with zlib only."""

from __future__ import annotations

import struct
import zlib


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode(data: bytes) -> tuple[int, int, int, list[bytes]]:
    """(width, height, bytes per pixel, rows of raw pixel bytes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    assert header is not None
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                line[i] = (line[i] + _paeth(a, b, c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def distinct_colours(data: bytes, step: int = 3) -> int:
    """Distinct RGB colours, sampling every ``step``-th row and column (enough to tell blank from drawn).

    Uses Pillow when it is installed (faster), else the decoder above.
    """
    try:
        import io

        from PIL import Image
    except ImportError:
        pass
    else:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        small = image.resize((image.width // step, image.height // step), Image.NEAREST)
        return len(small.getcolors(maxcolors=1 << 24) or ())
    _, _, bpp, rows = decode(data)
    seen = set()
    for row in rows[::step]:
        for x in range(0, len(row), bpp * step):
            seen.add(row[x:x + 3])
    return len(seen)


def pixel(data: bytes, x: int, y: int) -> tuple[int, int, int]:
    """The RGB colour at (x, y)."""
    _, _, bpp, rows = decode(data)
    return tuple(rows[y][x * bpp:x * bpp + 3])  # type: ignore[return-value]
