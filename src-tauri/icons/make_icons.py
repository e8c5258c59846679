#!/usr/bin/env python3
"""Draws the Tunesmith icon (an eighth note on a rounded indigo square) as RGBA
PNGs with the standard library only. Run from anywhere: writes next to itself."""

import math
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
SS = 4  # supersampling per axis, for anti-aliased edges


def inside_round_rect(x, y, r):
    # unit square [0,1]^2 with corner radius r
    cx = min(max(x, r), 1 - r)
    cy = min(max(y, r), 1 - r)
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def in_note(x, y):
    # note head: tilted ellipse
    hx, hy = 0.40, 0.70
    a, b, t = 0.145, 0.10, -0.45
    dx, dy = x - hx, y - hy
    u = dx * math.cos(t) + dy * math.sin(t)
    v = -dx * math.sin(t) + dy * math.cos(t)
    if (u / a) ** 2 + (v / b) ** 2 <= 1:
        return True
    # stem
    if 0.505 <= x <= 0.555 and 0.20 <= y <= 0.68:
        return True
    # flag: band curving down and right from the stem's top
    if 0.53 <= x <= 0.76:
        s = (x - 0.53) / 0.23
        top = 0.20 + 0.22 * s * s
        if top <= y <= top + 0.09 * (1 - 0.5 * s):
            return True
    return False


def pixel(px, py, n):
    acc = [0.0, 0.0, 0.0, 0.0]
    for sy in range(SS):
        for sx in range(SS):
            x = (px + (sx + 0.5) / SS) / n
            y = (py + (sy + 0.5) / SS) / n
            if not inside_round_rect(x, y, 0.22):
                continue
            if in_note(x, y):
                c = (255, 255, 255)
            else:
                # diagonal gradient indigo -> violet
                g = (x + y) / 2
                c = (
                    round(79 + (124 - 79) * g),
                    round(70 + (58 - 70) * g),
                    round(229 + (237 - 229) * g),
                )
            acc[0] += c[0]
            acc[1] += c[1]
            acc[2] += c[2]
            acc[3] += 255
    k = SS * SS
    alpha = acc[3] / k
    if alpha == 0:
        return (0, 0, 0, 0)
    # colours are averaged over covered samples only (straight alpha)
    cov = acc[3] / 255
    return (round(acc[0] / cov), round(acc[1] / cov), round(acc[2] / cov), round(alpha))


def png(n):
    rows = b""
    for py in range(n):
        rows += b"\x00" + b"".join(bytes(pixel(px, py, n)) for px in range(n))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", n, n, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


if __name__ == "__main__":
    for name, n in (("32x32.png", 32), ("icon.png", 128)):
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(png(n))
