"""Turns results.jsonl from run.sh into a Markdown table and an SVG plot (standard library only)."""
import json
import sys
from pathlib import Path

rows = [json.loads(l) for l in Path(sys.argv[1]).read_text().splitlines() if l.strip()]
out = Path(sys.argv[2])
load = [r for r in rows if "rps" in r]
stmts = [r for r in rows if "statements" in r]

lines = ["| run | requests | errors | req/s | p50 ms | p90 ms | p99 ms | max ms | peak RSS MiB |",
         "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
for r in load:
    lines.append(f"| {r['label']} | {r['requests']} | {r['errors']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | "
                 f"{r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.2f} | {r['rss_peak_kib'] / 1024:.1f} |")
if stmts:
    lines += ["", "| page size | SQL statements per request |", "| ---: | ---: |"]
    for r in stmts:
        lines.append(f"| {r['label'].split('page')[1]} | {r['statements']} |")
by = {r["label"]: r for r in load}
ours, peer = by.get("dashboard@max"), by.get("peer-dashboard@max")
if ours and peer and peer["rps"] > 0:
    lines += ["", f"Dashboard at saturation: Passerelle {ours['rps']:.0f} req/s (p99 {ours['p99_ms']:.1f} ms), "
              f"PostGraphile {peer['rps']:.0f} req/s (p99 {peer['p99_ms']:.1f} ms): ratio {ours['rps'] / peer['rps']:.2f}×."]
(out / "report.md").write_text("\n".join(lines) + "\n")

# p99 latency per run, one bar each.
w, bar, gap, left, top = 900, 22, 8, 260, 30
h = top + len(load) * (bar + gap) + 40
vmax = max([r["p99_ms"] for r in load] + [1.0])
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
       f'<text x="{left}" y="18" font-weight="bold">p99 latency (ms) per run</text>']
for i, r in enumerate(load):
    y = top + i * (bar + gap)
    bw = (w - left - 80) * r["p99_ms"] / vmax
    color = "#c0504d" if r["label"].startswith("peer") else "#4f81bd"
    svg.append(f'<text x="{left - 8}" y="{y + bar * 0.7}" text-anchor="end">{r["label"]}</text>')
    svg.append(f'<rect x="{left}" y="{y}" width="{bw:.1f}" height="{bar}" fill="{color}"/>')
    svg.append(f'<text x="{left + bw + 6:.1f}" y="{y + bar * 0.7}">{r["p99_ms"]:.2f} ms, {r["rps"]:.0f} req/s</text>')
svg.append("</svg>")
(out / "latency.svg").write_text("\n".join(svg) + "\n")
print((out / "report.md").read_text())
