"""Regenerates samples/frames/ (the demo's replayed camera) from two public-domain photos in
tests/data: astronaut.png (NASA, Eileen Collins, public domain) and coffee.png (CC0,
Rachel Michetti), both from the scikit-image package's data folder.

The sequence is what a kiosk camera sees at arm's length (BlazeFace short-range wants faces of
roughly a fifth of the frame or more): a face drifting across a 640x480 view for 12 frames,
then 8 frames with nobody in view (so the face is reported as gone), looped by the replay source.
Each frame has a sidecar JSON with what it shows, for tests and for people reading the folder.
"""
import json
import pathlib
from PIL import Image

here = pathlib.Path(__file__).resolve().parent
data = here.parent / "tests" / "data"
out = here / "frames"
out.mkdir(exist_ok=True)
for old in out.glob("*"):
    old.unlink()

astronaut = Image.open(data / "astronaut.png").convert("RGB")
empty = Image.open(data / "coffee.png").convert("RGB").resize((640, 480), Image.LANCZOS)
n = 0
for i in range(12):
    # A 320x240 window around her face, scaled 2x: the face is ~190 px tall, moving a little.
    x0, y0 = 90 + i * 6, 20 + (i % 4) * 3
    canvas = astronaut.crop((x0, y0, x0 + 320, y0 + 240)).resize((640, 480), Image.LANCZOS)
    canvas.save(out / f"{n:04d}.jpg", quality=85)
    (out / f"{n:04d}.json").write_text(json.dumps({"faces": 1, "expect": "happy"}) + "\n")
    n += 1
for i in range(8):
    empty.save(out / f"{n:04d}.jpg", quality=85)
    (out / f"{n:04d}.json").write_text(json.dumps({"faces": 0}) + "\n")
    n += 1
print(f"wrote {n} frames to {out}")
