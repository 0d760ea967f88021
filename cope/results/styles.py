"""One colour and one marker per method, shared by the report's figures and `cope view`, so
a method looks the same in a paper's figure and on the page.

Colours are the Okabe-Ito palette (distinguishable with the common colour-vision
deficiencies) and a few more; markers differ too, so a figure printed in grey still tells
the methods apart.
"""

from __future__ import annotations

import zlib

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
           "#882255", "#999933", "#44AA99", "#AA4499", "#661100")
# matplotlib's names; the viewer draws the same shapes in SVG
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h", "<", ">", "p", "*")
# methods of the paper and its baselines keep fixed places, so their styles never move
KNOWN = ("cope", "large", "abc", "mot_verify", "mot_vote", "frugalgpt", "small_majority",
         "small_single", "cope_s1s2", "cope_s2s3", "cope_s1s3", "cope_reversed")


def method_style(method: str) -> dict[str, str]:
    """{"colour": "#rrggbb", "marker": matplotlib marker} of a method."""
    if method in KNOWN:
        index = KNOWN.index(method)
    else:  # stable across runs and machines (no salted hash())
        index = zlib.crc32(method.encode()) % len(PALETTE)
    return {"colour": PALETTE[index % len(PALETTE)], "marker": MARKERS[index % len(MARKERS)]}
