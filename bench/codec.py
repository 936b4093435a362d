"""Codec throughput: encode + decode of SHOT frames, against CRC-32 alone over the same bytes."""

from __future__ import annotations

import time
import zlib
from typing import Any

from drivers.protocol import FrameDecoder, Shot, encode_frame


def _shot(n: int) -> Shot:
    return Shot(
        n,
        n,
        n * 100_000,
        0,
        1,
        16_000,
        15_870,
        1_800,
        ((1, 16_000), (5, 20_000), (6, 800_000), (7, 2_000), (8, 10_000)),
    )


def run(*, quick: bool = False) -> list[dict[str, Any]]:
    n = 2_000 if quick else 100_000
    shots = [_shot(i) for i in range(n)]
    start = time.perf_counter()
    wire = b"".join(encode_frame(s.TYPE, s.event_no, s.pack()) for s in shots)
    decoder = FrameDecoder()
    decoder.feed(wire)
    count = 0
    while decoder.next() is not None:
        count += 1
    codec_s = time.perf_counter() - start
    assert count == n
    raws = [s.pack() for s in shots]
    start = time.perf_counter()
    for raw in raws:
        zlib.crc32(raw)
    baseline_s = time.perf_counter() - start
    value, baseline = n / codec_s, n / baseline_s
    return [
        {
            "name": "codec frames/s (encode+decode SHOT)",
            "value": value,
            "unit": "frames/s",
            "baseline": baseline,
            "baseline_name": "zlib.crc32 alone",
            "ratio": value / baseline,
        }
    ]
