"""``sosc-app``: a page to match your own image pair, with and without KBC (Gradio, offline, CPU).

Drop a source and a target image, click the source keypoints on the source (or type them),
choose the matcher (the packaged training-free FeatureMatcher, or a checkpoint written by
``sosc fit``) and press *Match*: the page shows the match figure (:mod:`sosc.viz`: without and
with KBC, KBC's windows and a zoom on each), a table of the predicted target keypoints and the
JSON that ``sosc-match`` would write (:func:`sosc.inference.match_pair`).

    pip install -e '.[app]'
    sosc-app                          # http://127.0.0.1:7860
    sosc-app --ckpt last.ckpt --port 8080

It runs offline: Gradio's analytics and version check are off (``GRADIO_ANALYTICS_ENABLED``),
nothing is fetched from a hub (``HF_HUB_OFFLINE``), the page uses no web fonts, no share link
is made, and it listens on 127.0.0.1 unless ``--host`` says otherwise. Gradio is imported
only by :func:`build_app` and :func:`command` (the ``app`` extra).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sosc.errors import SoscError

#: The matcher choices of the page.
FEATURE = "FeatureMatcher (training-free, packaged weights)"
CHECKPOINT = "checkpoint (sosc fit)"
#: The result JSON's textbox, the figure and the table, for scripts and tests.
ELEM_IDS = {"src": "src-image", "trg": "trg-image", "kps": "src-kps", "match": "match", "json": "result-json",
            "figure": "figure", "table": "table", "status": "status"}


def offline_environment() -> None:
    """Gradio's analytics and version check off, hubs offline (before Gradio is imported)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("GRADIO_SSR_MODE", "False")


def _import_gradio():
    offline_environment()
    try:
        import gradio as gr
    except ImportError as err:
        raise SoscError("sosc-app needs the app extra: pip install -e '.[app]' (or pip install gradio)") from err
    return gr


@functools.lru_cache(maxsize=2)
def _load_matcher(kind: str, ckpt: str, mtime: float, device: str) -> tuple[Any, Any]:
    """The matcher and its input size (cached by checkpoint path and modification time)."""
    if kind == CHECKPOINT:
        from sosc.checkpoint import load_module

        module = load_module(ckpt)
        matcher, size = module.matcher, tuple(module.input_size or (256, 256))
    else:
        from sosc.matchers.feature import FeatureMatcher

        matcher, size = FeatureMatcher(pretrained="package").eval(), 256
    return matcher.to(device), size


def load_matcher(kind: str, ckpt: str | None, device: str = "cpu") -> tuple[Any, Any]:
    """``(matcher, input_size)`` for the page's choice: :data:`FEATURE` or :data:`CHECKPOINT`
    (``ckpt`` the path; an error names a missing file)."""
    if kind == CHECKPOINT:
        path = Path(ckpt or "").expanduser()
        if not ckpt or not path.is_file():
            raise SoscError(f"checkpoint {ckpt!r} not found: give the path of a file written by sosc fit")
        return _load_matcher(kind, str(path.resolve()), path.stat().st_mtime, device)
    return _load_matcher(FEATURE, "", 0.0, device)


def as_tensor_image(image: np.ndarray | None, name: str) -> torch.Tensor:
    """A page image (``(H, W, 3)`` uint8) as ``(3, H, W)`` float in ``[0, 1]``."""
    if image is None:
        raise SoscError(f"{name}: drop an image first")
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    array = array[..., :3]
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8) if array.max() > 1.0 else (array * 255).round().astype(np.uint8)
    return torch.from_numpy(np.array(array, copy=True)).permute(2, 0, 1).float() / 255.0


def format_points(points: Sequence[Sequence[float]]) -> str:
    """``"x,y x,y"`` with one decimal (what :func:`sosc.inference.parse_keypoints` reads).

    >>> format_points([[10, 20.25], [3.5, 4]])
    '10.0,20.2 3.5,4.0'
    """
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in points)


def read_points(text: str | None) -> list[list[float]]:
    """The points of the keypoint box (empty text: none)."""
    from sosc.inference import parse_keypoints

    if not text or not text.strip():
        return []
    return parse_keypoints(text).tolist()


def draw_points(image: np.ndarray | None, points: Sequence[Sequence[float]]) -> np.ndarray | None:
    """``image`` with the numbered keypoints drawn (the colours of :mod:`sosc.viz`)."""
    if image is None:
        return None
    from PIL import Image, ImageDraw

    from sosc.viz import keypoint_colours

    canvas = Image.fromarray(np.asarray(image)[..., :3].astype(np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    r = max(3, round(max(canvas.size) / 120))
    for k, ((x, y), colour) in enumerate(zip(points, keypoint_colours(len(points)))):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour, outline="black", width=max(1, r // 3))
        draw.text((x + r + 1, y - 2 * r), str(k + 1), fill=colour, stroke_width=2, stroke_fill="black")
    return np.asarray(canvas)


def result_table(result: dict[str, Any]) -> list[list[Any]]:
    """One row per keypoint: number, source, without KBC, with KBC (x, y), and the pass kept."""
    rows = []
    kept = result["kbc"].get("from_pass2") or [False] * len(result["kps"])
    zoomed = result["kbc"].get("reason") == "zoomed"
    for k, (s, p, q, two) in enumerate(zip(result["src_kps"], result["plain_kps"], result["kps"], kept)):
        rows.append([k + 1, round(s[0], 1), round(s[1], 1), p[0], p[1], q[0], q[1],
                     ("pass 2" if two else "pass 1") if zoomed else "pass 1 (no zoom)"])
    return rows


TABLE_HEADERS = ["#", "source x", "source y", "without KBC x", "without KBC y", "with KBC x", "with KBC y", "kept"]


def run_match(src: np.ndarray | None, trg: np.ndarray | None, kps_text: str, kind: str, ckpt: str | None,
              use_kbc: bool, device: str = "cpu") -> tuple[np.ndarray, list[list[Any]], str, str]:
    """What *Match* does: ``(figure, table rows, result JSON, status line)``.

    Raises:
        SoscError: for a missing image or checkpoint, no keypoint, or keypoints outside the source.
    """
    from sosc.inference import match_pair
    from sosc.kbc import KBCConfig
    from sosc.viz import figure_array, plot_result

    src_img, trg_img = as_tensor_image(src, "source image"), as_tensor_image(trg, "target image")
    points = read_points(kps_text)
    if not points:
        raise SoscError("source keypoints: click on the source image (or type x,y x,y ...) first")
    matcher, size = load_matcher(kind, ckpt, device)
    config = KBCConfig(enabled=bool(use_kbc), target="pred-box", train_p=0.0)
    result = match_pair(matcher, src_img, trg_img, points, size, config)
    result = {"src_kps": [[round(x, 2), round(y, 2)] for x, y in points], **result}
    fig = plot_result(src_img, trg_img, result)
    array = figure_array(fig)
    fig.clear()
    kbc = result["kbc"]
    if not kbc["enabled"]:
        status = "KBC off: the plain prediction."
    elif kbc["reason"] == "zoomed":
        counts = kbc["counts"]
        status = (f"KBC zoomed: pass 2 ran on the windows; {counts['keypoints zoomed, pass 2 kept']} keypoint(s) "
                  f"kept pass 2, {counts['keypoints zoomed, pass 1 kept']} kept pass 1.")
    else:
        status = f"KBC did not zoom ({kbc['reason']}): the result is pass 1's."
    return array, result_table(result), json.dumps(result), status


def build_app(ckpt: str | None = None, device: str = "cpu"):
    """The page as a ``gradio.Blocks`` (not launched). ``ckpt``: a checkpoint to offer first."""
    gr = _import_gradio()

    # The clicked points live in a session State (read when the event runs, so that quick clicks
    # queue up in order); the text box shows them and can be edited.
    def on_click(image, points, shown, evt: gr.SelectData):
        image = image if image is not None else shown  # a click that came before the upload event ran
        if image is None:
            raise gr.Error("drop a source image first")
        points = [*points, [float(evt.index[0]) + 0.5, float(evt.index[1]) + 0.5]]  # the pixel's centre
        return image, points, format_points(points), draw_points(image, points)

    # Gradio finds the event argument by its annotation, which must be the class itself (this
    # module's annotations are strings)
    on_click.__annotations__["evt"] = gr.SelectData

    def on_text(image, text):
        try:
            points = read_points(text)
        except SoscError as err:
            raise gr.Error(str(err)) from None
        return points, draw_points(image, points)

    def on_undo(image, points):
        points = list(points)[:-1]
        return points, format_points(points), draw_points(image, points)

    def on_match(src, trg, text, kind, path, use_kbc):
        try:
            return run_match(src, trg, text, kind, path, use_kbc, device)
        except SoscError as err:
            raise gr.Error(str(err)) from None

    with gr.Blocks(title="sosc: match your own image pair", analytics_enabled=False) as app:
        gr.Markdown("## sosc: match your own image pair\n"
                    "1. Drop a **source** and a **target** image. 2. Click the keypoints on the source "
                    "(or type `x,y x,y ...`). 3. Choose the matcher and press **Match**: the figure shows "
                    "the prediction without KBC (the plain pass) and with KBC, KBC's windows and a zoom on each.")
        src_raw, points = gr.State(None), gr.State([])
        with gr.Row():
            src = gr.Image(label="source image: drop it, then click its keypoints", type="numpy", image_mode="RGB",
                           sources=["upload"], elem_id=ELEM_IDS["src"])
            trg = gr.Image(label="target image", type="numpy", image_mode="RGB", sources=["upload"],
                           elem_id=ELEM_IDS["trg"])
        with gr.Row():
            kps = gr.Textbox(label="source keypoints, original pixels: x,y x,y ...", elem_id=ELEM_IDS["kps"], scale=3)
            undo = gr.Button("Undo last point", elem_id="undo", scale=0)
            clear = gr.Button("Clear points", elem_id="clear", scale=0)
        with gr.Row():
            kind = gr.Radio([FEATURE, CHECKPOINT], value=CHECKPOINT if ckpt else FEATURE, label="matcher",
                            elem_id="matcher")
            path = gr.Textbox(value=ckpt or "", label="checkpoint path (for a checkpoint)", elem_id="ckpt")
            use_kbc = gr.Checkbox(value=True, label="KBC (pred-box, leak-free)", elem_id="kbc")
        match = gr.Button("Match", variant="primary", elem_id=ELEM_IDS["match"])
        status = gr.Markdown(elem_id=ELEM_IDS["status"])
        figure = gr.Image(label="match figure", type="numpy", interactive=False, elem_id=ELEM_IDS["figure"])
        table = gr.Dataframe(headers=TABLE_HEADERS, label="predicted target keypoints, original target pixels",
                             interactive=False, elem_id=ELEM_IDS["table"])
        result = gr.Textbox(label="result (the JSON sosc-match writes)", lines=4, max_lines=12,
                            elem_id=ELEM_IDS["json"])

        # the source shows its numbered keypoints; the file as dropped is kept in src_raw
        src.upload(lambda image: (image, [], ""), inputs=src, outputs=[src_raw, points, kps])
        src.clear(lambda: (None, [], ""), outputs=[src_raw, points, kps])
        src.select(on_click, inputs=[src_raw, points, src], outputs=[src_raw, points, kps, src],
                   trigger_mode="multiple")
        kps.submit(on_text, inputs=[src_raw, kps], outputs=[points, src])
        kps.blur(on_text, inputs=[src_raw, kps], outputs=[points, src])
        undo.click(on_undo, inputs=[src_raw, points], outputs=[points, kps, src])
        clear.click(lambda image: ([], "", image), inputs=src_raw, outputs=[points, kps, src])
        match.click(on_match, inputs=[src_raw, trg, kps, kind, path, use_kbc],
                    outputs=[figure, table, result, status])
    return app


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sosc-app", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--ckpt", default=None, help="a checkpoint written by sosc fit, offered first")
    parser.add_argument("--device", default="cpu", help="e.g. cuda (default cpu)")
    return parser


def command(argv: Sequence[str] | None = None) -> None:
    """The installed ``sosc-app`` script: build the page and serve it until interrupted."""
    opts = build_parser().parse_args(argv)
    try:
        app = build_app(opts.ckpt, opts.device)
    except SoscError as err:
        raise SystemExit(f"sosc-app: error: {err}") from None
    print(f"sosc-app: serving on http://{opts.host}:{opts.port} (Ctrl+C to stop)", flush=True)
    app.launch(server_name=opts.host, server_port=opts.port, share=False, inbrowser=False, show_error=True,
               ssr_mode=False, footer_links=[], quiet=True)


if __name__ == "__main__":
    command()
