"""Headless Chromium for tests: what a person's browser renders, checked by pixels and DOM.

Chromium is Debian's package (``.ci/run`` installs it); without it these tests skip
locally and fail under CI.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest


def chromium_or_skip() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is required under CI: apt-get install -y chromium")
        pytest.skip("chromium not installed (apt-get install -y chromium); CI runs this test")
    return path


def _headless(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *args,
        ],
        check=True,
        capture_output=True,
        timeout=180,
        env={**os.environ, "HOME": str(profile)},
    )


def _uri(page: Path | str) -> str:
    return page if isinstance(page, str) else page.resolve().as_uri()


def screenshot(
    chromium: str, page: Path | str, png: Path, profile: Path, *, size: str = "1280,2000"
) -> None:
    """Render ``page`` (a file, or a URL) and save a PNG of the window."""
    _headless(chromium, profile, f"--screenshot={png}", f"--window-size={size}", _uri(page))


def dump_dom(chromium: str, page: Path | str, profile: Path) -> str:
    """The DOM as the browser built it (after parsing, styles applied)."""
    return _headless(chromium, profile, "--dump-dom", _uri(page)).stdout.decode()


def read_png_rows(path: Path, rows: int) -> np.ndarray:
    """The first ``rows`` rows of an 8-bit RGB/RGBA PNG as an array [rows, width, 3]."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0
    bpp = 3 if color == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(idat)
    out = np.zeros((min(rows, height), stride), dtype=np.uint8)
    prior = bytearray(stride)
    for y in range(out.shape[0]):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        if kind == 1:  # Sub: a running sum per channel
            line = bytearray(
                np.cumsum(np.frombuffer(line, np.uint8).reshape(-1, bpp), axis=0, dtype=np.uint64)
                .astype(np.uint8)
                .tobytes()
            )
        elif kind == 2:  # Up
            line = bytearray(
                (np.frombuffer(line, np.uint8) + np.frombuffer(prior, np.uint8)).tobytes()
            )
        elif kind in (3, 4):  # Average, Paeth: sequential
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prior[i]
                if kind == 3:
                    line[i] = (line[i] + (a + b) // 2) & 0xFF
                    continue
                c = prior[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        out[y] = np.frombuffer(line, np.uint8)
        prior = line
    return out.reshape(out.shape[0], width, bpp)[:, :, :3]


def near(pixels: np.ndarray, hex_color: str, tolerance: int = 24) -> np.ndarray:
    rgb = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)
    return np.abs(pixels.astype(np.int16) - rgb).max(axis=-1) <= tolerance


__all__ = ["chromium_or_skip", "dump_dom", "near", "read_png_rows", "screenshot"]
