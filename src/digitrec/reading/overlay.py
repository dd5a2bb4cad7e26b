"""A reading drawn on its picture, for a person to check (`digitrec read --overlay`)."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from digitrec.reading.results import Reading


def overlay_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def draw_reading(image: Image.Image, reading: Reading, threshold: float) -> Image.Image:
    """The (upright) input in RGB under a header band with the reading; each digit's box drawn with
    the digit above it and its confidence below, green when confident, orange when a person should
    look (below the reject threshold, or the whole reading rejected)."""
    source = image.convert("RGB")
    w, h = source.size
    header = max(16, min(48, round(0.08 * max(w, h))))
    canvas = Image.new("RGB", (w, h + header), (255, 255, 255))
    canvas.paste(source, (0, header))
    draw = ImageDraw.Draw(canvas)
    line = max(1, round(max(w, h) / 400))
    for item in reading.digits:
        x0, y0, x1, y1 = item["box"]
        y0, y1 = y0 + header, y1 + header
        ok = item["confidence"] >= threshold and not reading.rejected
        colour = (0, 150, 0) if ok else (230, 110, 0)
        draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=colour, width=line)
        big = overlay_font(max(10, int(0.4 * (y1 - y0))))
        small = overlay_font(max(8, int(0.22 * (y1 - y0))))
        for text, font, top in ((str(item["digit"]), big, None), (f"{item['confidence']:.2f}", small, y1 + line)):
            left, t, right, bottom = draw.textbbox((0, 0), text, font=font)
            y = top if top is not None else y0 - (bottom - t) - 2 * line - t
            x = (x0 + x1) / 2 - (right - left) / 2
            draw.text((x, y), text, fill=colour, font=font)
    if reading.rejected:
        summary = f"rejected: {reading.reason}"
    else:
        summary = reading.text + ("   (needs review)" if reading.needs_review else "")
    draw.text((4, max(0, header // 2 - header * 0.35)), summary, fill=(0, 0, 0), font=overlay_font(int(header * 0.7)))
    return canvas
