"""The validate report: one self-contained HTML file, its thumbnails inline as base64 PNG.

It shows each model's figures with their intervals, the confusion matrices, the paired
comparison and the frames where the (first) model and the driver disagree, each with its time
in the recording (what ``--exclude`` takes). The PNGs are encoded here with numpy and zlib, so
the report needs no plotting library (validate runs where the runtime runs).
"""

from __future__ import annotations

import base64
import html
import struct
import zlib
from pathlib import Path

import numpy as np

from sim2real.contracts.manifest import write_bytes_atomic
from sim2real.recordings.labels import LABELS

COMMANDS = ("forward", "left", "right", "stop")
_SCALE = 2


def png(rgb: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 image as PNG bytes."""
    height, width, _ = rgb.shape
    rows = b"".join(b"\x00" + rgb[y].tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def depth_rgb(depth_m: np.ndarray, max_range_m: float = 5.0) -> np.ndarray:
    """Depth as grey (near dark, far light), no return in magenta, enlarged ``_SCALE`` times."""
    depth = np.asarray(depth_m, np.float32)
    with np.errstate(invalid="ignore"):
        valid = (depth > 0) | (depth == -np.inf)
        grey = np.clip(np.nan_to_num(depth, nan=0.0, posinf=max_range_m, neginf=0.0) / max_range_m, 0, 1)
    rgb = np.repeat((40 + 215 * grey)[..., None], 3, axis=2).astype(np.uint8)
    rgb[~valid] = (230, 0, 200)
    return np.repeat(np.repeat(rgb, _SCALE, axis=0), _SCALE, axis=1)


def _pct(figure: dict) -> str:
    value, ci = figure.get("value"), figure.get("ci95")
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" ({ci[0]:.3f}–{ci[1]:.3f})" if ci else "")


def _matrix(model: dict) -> str:
    matrix = model["confusion"]["matrix"]
    head = "".join(f"<th>{c}</th>" for c in COMMANDS)
    body = "".join(f"<tr><th>{label}</th>" + "".join(f"<td>{n}</td>" for n in row) + "</tr>"
                   for label, row in zip(LABELS, matrix))
    return f"<table><tr><th>driver \\ model</th>{head}</tr>{body}</table>"


def render_html(result: dict, frames: list, seen: int) -> str:
    esc = html.escape
    models = result["models"]
    rows = "".join(
        f"<tr><td>{esc(Path(m['model']).name)}</td><td>{_pct(m['agreement'])}</td><td>{_pct(m['unsafe_rate'])}</td>"
        f"<td>{_pct(m['mirror_consistency'])}</td><td>{m['command_flips_per_s']}</td><td>{m['failsafe_stops']}</td>"
        f"<td>{m['latency_ms'].get('total', {}).get('p50', '')} / {m['latency_ms'].get('total', {}).get('p99', '')}"
        f"</td></tr>" for m in models)
    frames_ = result["frames"]
    boot = result["bootstrap"]
    intro = (f"<h1>sim2real validate</h1><p>{frames_['images']} images in {len(result['recordings'])} recording(s): "
             f"{frames_['moving']} with the driver moving, {frames_['stopped']} stopped, {frames_['unlabelled']} "
             f"without a recent command, {frames_['excluded']} excluded. Driver command changes per second: "
             f"{result['driver_flips_per_s']}. Intervals: 95 %, {esc(boot['method'])} over {boot['blocks']} blocks "
             f"of {boot['block_s']:g} s. {esc(boot.get('note', ''))}</p>")
    table = ("<table><tr><th>model</th><th>agreement</th><th>unsafe rate</th><th>mirror consistency</th>"
             f"<th>flips / s</th><th>fail-safe stops</th><th>total ms p50 / p99</th></tr>{rows}</table>")
    per_bag = "".join(f"<tr><td>{esc(r['name'])}</td><td>{r['duration_s']:g}</td><td>{r['images']}</td>"
                      + "".join(f"<td>{'n/a' if a is None else f'{a:.3f}'}</td>" for a in r["agreement"])
                      + "</tr>" for r in result["recordings"])
    heads = "".join(f"<th>agreement {esc(Path(m['model']).name)}</th>" for m in models)
    recordings = f"<table><tr><th>recording</th><th>s</th><th>images</th>{heads}</tr>{per_bag}</table>"
    parts = [intro, table, recordings]
    gate = result["gate"]
    if gate["min_agreement"] is not None or gate["max_unsafe"] is not None:
        verdict = "passed" if gate["passed"] else "FAILED: " + "; ".join(gate["failures"])
        parts.append(f"<p><b>gate</b>: {esc(verdict)}</p>")
    if "comparison" in result:
        c = result["comparison"]
        parts.append(f"<h2>paired comparison (a − b, same {c['frames']} frames)</h2><p>agreement "
                     f"{_pct(c['agreement_difference'])}, unsafe rate {_pct(c['unsafe_rate_difference'])}; "
                     f"pairs {esc(str(c['pairs']))}</p>")
    for m in models:
        parts.append(f"<h2>confusion: {esc(Path(m['model']).name)}</h2>{_matrix(m)}")
    names = [Path(m["model"]).name for m in models]
    parts.append(f"<h2>frames where {esc(names[0])} and the driver disagree</h2><p>{len(frames)} shown of {seen} "
                 f"(magenta: no return). Times are seconds from the recording's start.</p><div class='grid'>")
    for recording, t_s, label, commands, thumb in frames:
        encoded = base64.b64encode(png(depth_rgb(thumb.astype(np.float32)))).decode()
        said = ", ".join(f"{esc(n)}: {COMMANDS[c]}" for n, c in zip(names, commands))
        bag = esc(result["recordings"][recording]["name"])
        parts.append(f"<figure><img src='data:image/png;base64,{encoded}'><figcaption>{bag} @ {t_s:.2f} s<br>"
                     f"driver: {LABELS[label]}<br>{said}</figcaption></figure>")
    parts.append("</div>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
             ".grid{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0;font-size:12px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>sim2real validate</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")


def write_report(result: dict, path: Path, frames: list, seen: int) -> Path:
    """Write the report atomically; return its path."""
    write_bytes_atomic(path, render_html(result, frames, seen).encode())
    return path
