"""The page at ``GET /``: drop an image (or choose one), see the verdict and the overlay.

The verdict is shown beside the threshold that decided it and the score on its scale (the
image threshold; the pixel one for runs without it) and their ratio (1.0 is the cut); regions
of a passed image are "below the verdict threshold". One request per image
(``?overlay=base64``: the row with the overlay inside). Nothing is shown before the first
image (elements start ``hidden``, and the style lets ``hidden`` hide them).

Self-contained: inline CSS and JavaScript only (no external files), allowed by a
Content-Security-Policy that names their SHA-256 hashes and nothing else. What the server
fills in (model, engine, threshold) is HTML-escaped; what a response brings (file name,
numbers, error text) is set with ``textContent``, never parsed as HTML.
"""
from __future__ import annotations

import base64
import hashlib
import html

from ssimae.reporting.predictions import threshold_story

_STYLE = """
[hidden] { display: none !important; }
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; background: #fff; }
#drop { border: 2px dashed #888; border-radius: 8px; padding: 24px; max-width: 560px; }
#drop.over { background: #e8eefc; }
#verdict { display: inline-block; padding: 8px 16px; border-radius: 6px; font-size: 22px; font-weight: bold;
           margin: 16px 0 8px; min-width: 10em; }
#verdict.defective { background: #c62828; color: #fff; }
#verdict.good { background: #2e7d32; color: #fff; }
#verdict.error { background: #616161; color: #fff; }
#overlay { display: block; image-rendering: pixelated; margin-top: 8px; }
"""

_SCRIPT = """
"use strict";
const $ = (id) => document.getElementById(id);
async function score(file) {
  const verdict = $("verdict"), details = $("details"), overlay = $("overlay");
  document.body.dataset.state = "scoring";
  verdict.hidden = false; verdict.className = ""; verdict.textContent = "scoring...";
  details.textContent = ""; overlay.hidden = true;
  const headers = {"Content-Type": "application/octet-stream"};
  const key = $("key");
  if (key && key.value) headers["X-API-Key"] = key.value;
  try {
    const r = await fetch("v1/predict?overlay=base64", {method: "POST", headers: headers, body: file});
    if (!r.ok) {
      const e = await r.json().catch(() => ({error: r.statusText}));
      throw new Error(r.status + ": " + e.error);
    }
    const row = await r.json();
    const image = row.image_threshold !== null;
    const cut = image ? row.image_threshold : row.threshold;
    verdict.className = row.defective ? "defective" : "good";
    verdict.textContent = row.defective ? "defective" : "no defect";
    const regions = row.n_regions === 0 ? "no regions" : row.defective ?
      row.n_regions + " defect region(s), " + row.defect_area + " px" :
      row.n_regions + " region(s) below the verdict threshold (" + row.defect_area + " px above the pixel threshold)";
    details.textContent = file.name + ": score " + row.score.toPrecision(6) + (row.defective ? " > " : " <= ") +
      (image ? "image" : "pixel") + " threshold " + cut.toPrecision(6) + " (score / threshold " +
      (row.score_norm === null ? "n/a" : row.score_norm.toFixed(3)) + "; above 1 is defective); " + regions;
    const bytes = Uint8Array.from(atob(row.overlay_png_base64), (c) => c.charCodeAt(0));
    if (overlay.src) URL.revokeObjectURL(overlay.src);
    await new Promise((done) => { overlay.onload = done; overlay.onerror = done;
                                   overlay.src = URL.createObjectURL(new Blob([bytes], {type: "image/png"})); });
    overlay.hidden = false;
  } catch (err) {
    verdict.className = "error"; verdict.textContent = "error";
    details.textContent = String(err.message || err);
  }
  document.body.dataset.state = "done";
}
$("file").addEventListener("change", (e) => { if (e.target.files.length) score(e.target.files[0]); });
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files.length) score(e.dataTransfer.files[0]);
});
"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


# Everything the page may load or run: its own inline style and script, overlay blobs, fetches to this server.
CONTENT_SECURITY_POLICY = (f"default-src 'none'; script-src {_sha256(_SCRIPT)}; style-src {_sha256(_STYLE)}; "
                           "img-src blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
                           "frame-ancestors 'none'")


def render_page(title: str, engine: str, threshold: float, image_threshold: float | None, needs_key: bool) -> str:
    """The page's HTML for a model (``title``, e.g. "SSIM-AE"), its engine, its pixel
    ``threshold`` and ``image_threshold`` (None: the pixel one decides); ``needs_key``: show a
    field for the API key."""
    e = html.escape
    decides = threshold_story(threshold, image_threshold)
    key = ('<p><label>API key <input type="password" id="key" autocomplete="off"></label></p>'
           if needs_key else "")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ssimae serve: {e(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>ssimae serve</h1>
<p id="model">{e(title)} ({e(engine)}); {e(decides)}</p>
<div id="drop">Drop an image here, or choose one: <input type="file" id="file"></div>
{key}
<div id="verdict" hidden></div>
<p id="details"></p>
<img id="overlay" alt="the image with its defect mask in red" hidden>
<script>{_SCRIPT}</script>
</body>
</html>
"""
