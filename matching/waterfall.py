"""The explain waterfall: the prior, then each comparison's weight, then the total."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from singleid.matching.service.types import Explanation

WIDTH, ROW, MARGIN_LEFT, MARGIN = 900, 34, 330, 20
POSITIVE, NEGATIVE, TOTAL, NULL = (46, 139, 87), (200, 60, 60), (40, 90, 170), (170, 170, 170)


def draw_waterfall(explanation: Explanation, path: Path) -> None:
    steps = [("prior (log2 odds)", explanation.prior_weight, "")]
    steps += [(f"{f.comparison}: {f.level}", f.weight, f.level) for f in explanation.fields]
    running, spans = 0.0, []
    for label, weight, level in steps:
        spans.append((label, running, running + weight, weight, level))
        running += weight
    spans.append((f"match weight = {explanation.match_weight:.2f}", 0.0,
                  explanation.match_weight, explanation.match_weight, "total"))
    low = min(0.0, *(min(a, b) for _, a, b, _, _ in spans))
    high = max(0.0, *(max(a, b) for _, a, b, _, _ in spans))
    scale = (WIDTH - MARGIN_LEFT - 2 * MARGIN) / max(high - low, 1e-9)
    height = MARGIN * 3 + ROW * (len(spans) + 1)
    image = Image.new("RGB", (WIDTH, height), "white")
    pen = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=14)

    def x(value: float) -> float:
        return MARGIN_LEFT + MARGIN + (value - low) * scale

    title = (f"probability {explanation.probability:.6f}; action {explanation.action}"
             + (f"; hard rules {', '.join(explanation.hard_rules)}"
                if explanation.hard_rules else ""))
    pen.text((MARGIN, MARGIN // 2), title, fill="black", font=font)
    pen.line([(x(0), MARGIN + ROW - 6), (x(0), height - MARGIN)], fill=(120, 120, 120))
    for index, (label, start, end, weight, level) in enumerate(spans):
        top = MARGIN + ROW * (index + 1)
        colour = (TOTAL if level == "total" else NULL if level == "null"
                  else POSITIVE if weight >= 0 else NEGATIVE)
        left, right = sorted((x(start), x(end)))
        pen.rectangle([left, top, max(right, left + 2), top + ROW - 10], fill=colour)
        pen.text((MARGIN, top + 2), label[:40], fill="black", font=font)
        pen.text((max(right, left + 2) + 4, top + 2), f"{weight:+.2f}", fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "PNG")
