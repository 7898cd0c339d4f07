"""Contact sheet of real-semantic pairs: source | target side by side, numbered keypoints
joined by lines (same colour = same keypoint), object boxes in white, a caption with the
pair's kind, instances and keypoint-box bins.

    python scripts/draw_real_semantic.py [--root data/real_semantic] [--split test] \
        [--n 12] [--every 1] [--out real_semantic_pairs.png]

Generates the set first when ``--root`` holds none (seed 0, default sizes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image, ImageDraw

from sosc.data.real_semantic import generate_real_semantic

COLOURS = [(255, 40, 40), (40, 220, 40), (40, 120, 255), (255, 230, 0), (255, 0, 255), (0, 230, 230), (255, 140, 0), (255, 255, 255)]
ROW_H = 240


def draw_pair(root: Path, split: str, line: str) -> Image.Image:
    pair = json.loads((root / "PairAnnotation" / split / f"{line}.json").read_text())
    ims, scales = [], []
    for side in ("src", "trg"):
        im = Image.open(root / "JPEGImages" / pair["category"] / pair[f"{side}_imname"]).convert("RGB")
        s = ROW_H / im.height
        ims.append(im.resize((round(im.width * s), ROW_H), Image.Resampling.LANCZOS))
        scales.append(s)
    sheet = Image.new("RGB", (ims[0].width + ims[1].width + 8, ROW_H + 16), "black")
    sheet.paste(ims[0], (0, 0))
    sheet.paste(ims[1], (ims[0].width + 8, 0))
    d = ImageDraw.Draw(sheet)
    offs = (0, ims[0].width + 8)
    for side, off, s in zip(("src", "trg"), offs, scales):
        x0, y0, x1, y1 = pair[f"{side}_bndbox"]
        d.rectangle([off + x0 * s, y0 * s, off + x1 * s - 1, y1 * s - 1], outline=(255, 255, 255))
    for ps, pt, kid in zip(pair["src_kps"], pair["trg_kps"], pair["kps_ids"]):
        c = COLOURS[int(kid) % len(COLOURS)]
        a = (ps[0] * scales[0], ps[1] * scales[0])
        b = (offs[1] + pt[0] * scales[1], pt[1] * scales[1])
        d.line([a, b], fill=c, width=1)
        for x, y in (a, b):
            d.ellipse([x - 3, y - 3, x + 3, y + 3], outline=c, width=2)
            d.text((x + 4, y - 10), kid, fill=c)
    d.text((2, ROW_H + 2), f"{line.split('-')[0]} {pair['kind']} {pair['src_instance']}->{pair['trg_instance']} "
           f"bins {pair['src_kp_bin']}->{pair['trg_kp_bin']} (kp box {pair['src_kp_size']:.0f}->{pair['trg_kp_size']:.0f} px)",
           fill=(255, 255, 255))
    return sheet


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data/real_semantic")
    parser.add_argument("--split", default="test", choices=("val", "test"))
    parser.add_argument("--n", type=int, default=12, help="pairs drawn")
    parser.add_argument("--every", type=int, default=1, help="draw every k-th pair of the split")
    parser.add_argument("--start", type=int, default=0, help="first pair index drawn")
    parser.add_argument("--out", default="real_semantic_pairs.png")
    args = parser.parse_args(argv)
    root = generate_real_semantic(args.root)
    lines = (root / "Layout" / "large" / f"{args.split}.txt").read_text().split()
    rows = [draw_pair(root, args.split, line) for line in lines[args.start :: args.every][: args.n]]
    width = max(r.width for r in rows)
    sheet = Image.new("RGB", (width, sum(r.height + 4 for r in rows)), (40, 40, 40))
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height + 4
    out = Path(args.out)
    sheet.save(out)
    print(f"{len(rows)} pairs of {args.split} -> {out}")
    return out


if __name__ == "__main__":
    main()
