"""The evaluation report: one self-contained HTML file (plots embedded as PNG) plus the trajectory PNG.

``write_report(result, path, compare=expert_result)`` shows the policy's headline numbers beside
the comparison's (the privileged expert: the ceiling), a top-down plot of the episodes, the
per-step inference latency and sample depth frames with the command chosen on each; given a
latency sweep, success against injected command latency.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

from sim2real.contracts.manifest import write_bytes_atomic

_GREEN, _RED, _GREY = "#2e9d4a", "#d1352b", "#9a9a9a"
_DETAIL_PANELS = 6


def _figure(width: float, height: float):
    from matplotlib.figure import Figure   # no pyplot: no global backend, no GUI (Agg canvas)

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _arena(ax, sizes: list[tuple[float, float]]) -> None:
    """The arena walls: one solid outline, or a thin one per size when episodes drew different sizes."""
    from matplotlib.patches import Rectangle

    distinct = sorted(set(sizes))
    for sx, sy in distinct:
        ax.add_patch(Rectangle((-sx / 2, -sy / 2), sx, sy, fill=False, ec="black",
                               lw=2.0 if len(distinct) == 1 else 0.6, alpha=1.0 if len(distinct) == 1 else 0.35))
    pad = 0.2
    sx, sy = max(size[0] for size in distinct), max(size[1] for size in distinct)
    ax.set_xlim(-sx / 2 - pad, sx / 2 + pad)
    ax.set_ylim(-sy / 2 - pad, sy / 2 + pad)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def _obstacles(ax, obstacles: list[dict]) -> None:
    """Each obstacle of an episode record, drawn by its kind (``sim.kinds``)."""
    from sim2real.sim.kinds import Obstacle, of

    for record in obstacles:
        obstacle = Obstacle.from_record(record)
        of(obstacle).draw(ax, obstacle)


def _people(ax, people: list[dict]) -> None:
    """Each person's walk (a thin line) and where it stood at the end, drawn by the ``person`` kind."""
    from sim2real.sim.kinds import Obstacle, get

    for person in people:
        xs, ys = zip(*person["path"])
        ax.plot(xs, ys, color="#c07a20", lw=0.7, alpha=0.8)
        r = person["radius"]
        get("person").draw(ax, Obstacle("cylinder", xs[-1], ys[-1], 0.0, (r, r), person["height"], "person"))


def _episode(ax, ep: dict, lw: float, alpha: float, robot_radius: float | None = None) -> None:
    from matplotlib.patches import Circle

    colour = _GREEN if ep["success"] else _RED
    xs = [pt[0] for pt in ep["trajectory"]]
    ys = [pt[1] for pt in ep["trajectory"]]
    ax.plot(xs, ys, color=colour, lw=lw, alpha=alpha)
    ax.plot(xs[:1], ys[:1], "o", ms=3.5, mfc="white", mec=colour, alpha=min(1.0, alpha + 0.3))
    if robot_radius:
        ax.add_patch(Circle((xs[-1], ys[-1]), robot_radius, fill=False, ec=colour, lw=0.8))
    if ep.get("collision_point"):
        cx, cy = ep["collision_point"][:2]
        ax.plot([cx], [cy], "x", color="black", ms=7, mew=2.0)


def trajectory_figure(result: dict) -> bytes:
    """All episodes overlaid (left) and a few episodes with their obstacles (right)."""
    episodes = result["per_episode"]
    default = tuple(result.get("arena_size_m", (8.0, 8.0)))

    def size(ep: dict) -> tuple[float, float]:
        return tuple(ep.get("arena_size_m", default))

    fig = _figure(14.0, 6.6)
    grid = fig.add_gridspec(2, 5)
    ax = fig.add_subplot(grid[:, :2])
    _arena(ax, [size(ep) for ep in episodes] or [default])
    alpha = 0.75 if len(episodes) <= 30 else 0.45
    for ep in episodes:
        _episode(ax, ep, lw=1.0, alpha=alpha)
    ok = sum(ep["success"] for ep in episodes)
    rooms = len({size(ep) for ep in episodes})
    ax.set_title(f"all {len(episodes)} episodes: {ok} succeeded (green), {len(episodes) - ok} failed (red), "
                 f"x = collision, o = start" + (f"\n{rooms} arena sizes, one thin outline each" if rooms > 1 else ""),
                 fontsize=9)

    # Up to half the panels for failures, the rest successes; either fills in when the other runs out.
    failures = [ep for ep in episodes if not ep["success"]]
    successes = [ep for ep in episodes if ep["success"]]
    n_fail = min(len(failures), max(_DETAIL_PANELS // 2, _DETAIL_PANELS - len(successes)))
    chosen = failures[:n_fail] + successes[: _DETAIL_PANELS - n_fail]
    chosen = sorted(chosen, key=lambda ep: ep["index"])
    for k, ep in enumerate(chosen):
        sub = fig.add_subplot(grid[k // 3, 2 + k % 3])
        _arena(sub, [size(ep)])
        _obstacles(sub, ep.get("obstacles", []))
        _people(sub, ep.get("people", []))
        _episode(sub, ep, lw=1.6, alpha=0.95, robot_radius=result.get("robot_radius_m"))
        verdict = "success" if ep["success"] else ("collision" if ep["collided"] else "too little progress")
        sub.set_title(f"episode {ep['index']}: {verdict}, {ep['progress_m']:.1f} m", fontsize=8)
    fig.suptitle(f"{result.get('policy')} in {result.get('backend')} / {result.get('scenario')}: "
                 f"success {result['success_rate']:.2f}", fontsize=11)
    return _png(fig)


def latency_figure(result: dict, compare: dict | None = None) -> bytes:
    fig = _figure(6.4, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    for res, colour in ((result, "#3a6fb0"), (compare, _GREY)):
        hist = (res or {}).get("latency_histogram_ms") or {}
        if not hist.get("counts"):
            continue
        edges, counts = hist["edges"], hist["counts"]
        widths = [b - a for a, b in zip(edges[:-1], edges[1:])]
        ax.bar(edges[:-1], counts, width=widths, align="edge", color=colour, alpha=0.75,
               label=f"{res.get('policy')} (p50 {res['latency_ms']['p50']:.2f}, p99 {res['latency_ms']['p99']:.2f} ms)")
    ax.set_xlabel("policy latency per step (ms; for ros2: image published → Twist received)")
    ax.set_ylabel("steps")
    ax.legend(fontsize=8)
    return _png(fig)


def frames_figure(frames: list[dict], columns: int = 5) -> bytes | None:
    """The sample depth frames (near dark, far bright, invalid black), each titled with its command."""
    import matplotlib

    from sim2real.eval.frames import decode_frame

    if not frames:
        return None
    rows = math.ceil(len(frames) / columns)
    fig = _figure(2.6 * columns, 2.5 * rows)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="black")
    for k, frame in enumerate(frames):
        ax = fig.add_subplot(rows, columns, k + 1)
        image = ax.imshow(decode_frame(frame), cmap=cmap, vmin=0.0, vmax=frame["max_range_m"])
        when = "last frame before the collision" if frame["collision"] else f"t = {frame['t_s']:.1f} s"
        ax.set_title(f"episode {frame['episode']}, {when}\n→ {frame['command']}", fontsize=8,
                     color=_RED if frame["collision"] else "#222")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=fig.axes, shrink=0.6, label="depth (m)")
    return _png(fig)


def sweep_figure(sweep: dict) -> bytes:
    """Success rate (with its 95% interval) and collision rate against injected command latency."""
    points = sweep["points"]
    xs = [pt["latency_ms"] for pt in points]
    rates = [pt["success_rate"] for pt in points]
    below = [r - pt["success_ci95"][0] for r, pt in zip(rates, points)]
    above = [pt["success_ci95"][1] - r for r, pt in zip(rates, points)]
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    ax.errorbar(xs, rates, yerr=[below, above], color=_GREEN, marker="o", capsize=3, label="success rate (95% CI)")
    ax.plot(xs, [pt["collision_rate"] for pt in points], color=_RED, marker="x", ls="--", label="collision rate")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("injected command latency (ms)")
    ax.set_ylabel(f"fraction of {sweep.get('episodes')} episodes")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def _sweep_section(sweep: dict, png: bytes) -> str:
    rows = "".join(
        f"<tr><td>{pt['latency_ms']:g}</td><td>{_fmt_rate(pt)}</td><td>{pt['collisions']}</td>"
        f"<td>{pt['mean_progress_m']:.2f}</td></tr>" for pt in sweep["points"])
    return (f"<h2>Success against command latency</h2>"
            f"<p>The same {sweep.get('episodes')} episodes, each command delayed by the latency "
            f"(a policy served from afar).</p>"
            f'<img alt="latency sweep" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
            f"<table><tr><th>latency (ms)</th><th>success rate</th><th>collisions</th>"
            f"<th>mean net progress (m)</th></tr>{rows}</table>")


def _fmt_rate(res: dict) -> str:
    lo, hi = res["success_ci95"]
    return f"<b>{res['success_rate']:.1%}</b> <span class=ci>(95% CI {lo:.1%}–{hi:.1%})</span>"


def _rows(res: dict) -> list[tuple[str, str]]:
    lat = res["latency_ms"]
    sha = res.get("model_sha256")
    return [
        ("Success rate", _fmt_rate(res)),
        ("Successes / episodes", f"{res['successes']} / {res['episodes']}"),
        ("Collisions", str(res["collisions"])),
        ("Zero-Twist commands (fail-safe stops)", str(res.get("stop_commands", 0))),
        ("Exact left/right ties (resolved to left)",
         "–" if res.get("left_right_ties") is None else str(res["left_right_ties"])),
        ("Mean net progress", f"{res['mean_progress_m']:.2f} m"),
        ("Mean path length", f"{res['mean_path_length_m']:.2f} m" if "mean_path_length_m" in res else "–"),
        ("Latency p50 / p99 / mean", f"{lat['p50']:.2f} / {lat['p99']:.2f} / {lat['mean']:.2f} ms"),
        ("Policy", html.escape(str(res.get("policy")))),
        ("Model", html.escape(str(res.get("model")))),
        ("Model sha256", f"<code>{html.escape(sha)}</code>" if sha else "–"),
        ("Scenario", f"{html.escape(str(res.get('scenario')))} <code>{html.escape(str(res.get('scenario_sha256', ''))[:12])}</code>"),
        ("Simulator", html.escape(str(res.get("backend")))),
        ("Seed", html.escape(str(res.get("seed")))),
        ("Throughput", f"{res.get('steps_per_s')} steps/s, {res.get('wall_s')} s wall"),
    ]


def _episode_table(result: dict) -> str:
    rows = []
    for ep in result["per_episode"]:
        cls = "ok" if ep["success"] else "bad"
        verdict = "success" if ep["success"] else ("collision" if ep["collided"] else "too little progress")
        rows.append(f"<tr class={cls}><td>{ep['index']}</td><td>{verdict}</td><td>{ep['progress_m']:.2f}</td>"
                    f"<td>{ep['path_length_m']:.2f}</td><td>{ep['steps']}</td>"
                    f"<td>{ep.get('latency_ms_mean', 0):.2f}</td></tr>")
    return ("<table class=eps><tr><th>episode</th><th>result</th><th>net progress (m)</th>"
            "<th>path (m)</th><th>steps</th><th>mean latency (ms)</th></tr>" + "".join(rows) + "</table>")


def render_html(result: dict, trajectories_png: bytes, latency_png: bytes, compare: dict | None = None,
                sweep: dict | None = None, frames_png: bytes | None = None) -> str:
    mine = _rows(result)
    if compare:
        theirs = dict(_rows(compare))
        head = (f"<tr><th></th><th>{html.escape(str(result.get('policy')))}</th>"
                f"<th>{html.escape(str(compare.get('policy')))} "
                f"({'ceiling' if compare.get('policy') == 'expert' else 'comparison'})</th></tr>")
        body = "".join(f"<tr><td>{k}</td><td>{v}</td><td>{theirs.get(k, '–')}</td></tr>" for k, v in mine)
    else:
        head = ""
        body = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in mine)

    def img(data: bytes, alt: str) -> str:
        return f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'

    rule = (f"An episode succeeds when the robot drives {result.get('duration_s', '?')} s without touching "
            f"anything and ends at least {result.get('min_progress_m', '?')} m (straight line) from its start.")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>sim2real evaluation: {html.escape(str(result.get('policy')))} on {html.escape(str(result.get('scenario')))}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1450px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ddd; padding: 4px 10px; text-align: left; font-size: 14px; }}
th {{ background: #f3f3f3; }}
.ci {{ color: #666; font-size: 12px; }}
code {{ font-size: 12px; }}
img {{ max-width: 100%; border: 1px solid #eee; }}
table.eps td, table.eps th {{ font-size: 12px; padding: 2px 8px; }}
tr.ok td:nth-child(2) {{ color: {_GREEN}; }} tr.bad td:nth-child(2) {{ color: {_RED}; }}
details {{ margin: 1em 0; }}
</style></head><body>
<h1>Closed-loop evaluation in {html.escape(str(result.get('backend')))}</h1>
<p>{html.escape(rule)}</p>
<table>{head}{body}</table>
<h2>Trajectories (top-down)</h2>
{img(trajectories_png, "trajectories")}
<h2>Inference latency</h2>
{img(latency_png, "latency histogram")}
{"<h2>What the policy saw, and what it commanded</h2>" + img(frames_png, "sample depth frames") if frames_png else ""}
{_sweep_section(sweep, sweep_figure(sweep)) if sweep else ""}
<details><summary>Per-episode results ({result['episodes']})</summary>{_episode_table(result)}</details>
</body></html>
"""


def write_report(result: dict, path: Path, compare: dict | None = None, sweep: dict | None = None) -> Path:
    """Write the HTML report to ``path`` and ``<stem>_trajectories.png`` beside it (both atomically).

    ``sweep`` (``sim2real.eval.sweep``'s ``latency_sweep``) adds the success-against-latency section.
    """
    path = Path(path)
    trajectories = trajectory_figure(result)
    latency = latency_figure(result, compare if compare and compare.get("policy") == "model" else None)
    write_bytes_atomic(path.with_name(f"{path.stem}_trajectories.png"), trajectories)
    frames = frames_figure(result.get("sample_frames", []))
    write_bytes_atomic(path, render_html(result, trajectories, latency, compare, sweep, frames).encode("utf-8"))
    return path
