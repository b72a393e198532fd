"""Turns results.jsonl from run.sh into report.md (tables and the targets) and latency.svg
(standard library only). Usage: report.py RESULTS.jsonl OUT_DIR [SLO_P99_MS]"""
import json
import sys
from pathlib import Path

rows = [json.loads(l) for l in Path(sys.argv[1]).read_text().splitlines() if l.strip()]
out = Path(sys.argv[2])
slo = float(sys.argv[3]) if len(sys.argv) > 3 else 100.0
load = [r for r in rows if "rps" in r]
by = {r["label"]: r for r in load}
mib = lambda r: r["rss_peak_kib"] / 1024
# Runs before run S did not record the host's steal.
steal = lambda r: "" if r.get("steal_pct") is None else f"{r['steal_pct']:.0f}"


def rate_of(label):
    tail = label.rsplit("@", 1)[1]
    return None if tail == "max" else int(tail)


lines = ["# Passerelle load benchmark", "",
         "Every Passerelle request carries its own bearer token (minted for the run, used in turn; "
         "each token's signature is verified once and remembered until it expires, its session (client, revocation, "
         "sharing agreements) read at its first use and remembered until an auth change anywhere; every answer is audited). `@N` is an open-loop run at N requests/s, `@max` a closed loop "
         "at saturation. Latencies from the scheduled send time (no coordinated omission). RSS is "
         "the server's peak during the run.", "",
         "| run | requests | errors | req/s | p50 ms | p90 ms | p99 ms | max ms | peak RSS MiB | host steal % |",
         "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
for r in load:
    lines.append(f"| {r['label']} | {r['requests']} | {r['errors']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | "
                 f"{r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.2f} | {mib(r):.1f} | {steal(r)} |")

pages = [r for r in rows if r.get("label", "").startswith("statements@page")]
if pages:
    lines += ["", "## Page size", "", "| page size | SQL statements per request | req/s at saturation | p99 ms |",
              "| ---: | ---: | ---: | ---: |"]
    for r in pages:
        size = r["label"].split("page")[1]
        run = by.get(f"dashboard-page{size}@max", {})
        lines.append(f"| {size} | {r['statements']} | {run.get('rps', 0):.0f} | {run.get('p99_ms', 0):.1f} |")

scales = [r for r in rows if "scale" in r and "statements" in r]
if scales:
    lines += ["", "## Data scale", "",
              "| scale | actions | outcomes | statements per dashboard | dashboard p50 / p99 ms at 100 req/s | dashboard req/s at saturation | research aggregate req/s |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in scales:
        s = r["label"][len("scale"):]
        fixed, sat, res = by.get(f"dashboard-scale{s}@100", {}), by.get(f"dashboard-scale{s}@max", {}), by.get(f"research-scale{s}@max", {})
        lines.append(f"| {s} | {r['actions']} | {r['outcomes']} | {r['statements']} | "
                     f"{fixed.get('p50_ms', 0):.1f} / {fixed.get('p99_ms', 0):.1f} | {sat.get('rps', 0):.0f} | {res.get('rps', 0):.1f} |")


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def within_slo(r):
    """A fixed-rate run with no errors, keeping up, and p99 within the SLO."""
    rate = rate_of(r["label"])
    return bool(rate) and r["errors"] == 0 and r["p99_ms"] <= slo and r["rps"] >= 0.95 * rate


def best_rate(prefix):
    """The highest fixed rate run within the SLO."""
    ok = [rate_of(r["label"]) for r in load if r["label"].startswith(prefix + "@") and within_slo(r)]
    return max(ok) if ok else None


lines += ["", "## Targets", "", "| target | measured | met |", "| --- | --- | :---: |"]
ours, peer = by.get("dashboard@max"), by.get("peer-dashboard@max")
if ours and peer and peer["rps"] > 0:
    ratio = ours["rps"] / peer["rps"]
    lines.append(f"| dashboard ≥ 3× PostGraphile's throughput (saturation, one run each, the peer's minutes later) | Passerelle {ours['rps']:.0f} req/s at p99 "
                 f"{ours['p99_ms']:.0f} ms, PostGraphile {peer['rps']:.0f} req/s at p99 {peer['p99_ms']:.0f} ms: "
                 f"{ratio:.2f}× | no verdict: runs minutes apart on a machine that drifts; the pairs decide |")


def climbs(prefix):
    """Per round, the highest rate of the runs slo{i}-{prefix}@RATE within the SLO (each climb
    stops at its first miss), and whether the climb ended on a miss: one that ran out of rates
    gives only a lower bound, shown as "≥"."""
    rounds, i = [], 1
    while runs := [r for r in load if r["label"].startswith(f"slo{i}-{prefix}@")]:
        rounds.append((best_rate(f"slo{i}-{prefix}"), not within_slo(runs[-1])))
        i += 1
    return rounds


def climbed(rate, missed):
    return f"{'' if missed else '≥'}{rate or 'none'}"


ours_slo, peer_slo = climbs("dashboard"), climbs("peer-dashboard")
if ours_slo and peer_slo:
    shown, ratios, bounded = [], [], False
    for (a, a_missed), (b, b_missed) in zip(ours_slo, peer_slo):
        shown.append(f"{climbed(a, a_missed)} vs {climbed(b, b_missed)}")
        bounded |= not (a_missed and b_missed)
        if a and b:
            ratios.append(a / b)
    m = median(ratios) if ratios else None
    lines.append(f"| dashboard ≥ 3× PostGraphile's throughput at equal p99 (highest rate sustained with p99 ≤ {slo:.0f} ms, "
                 f"{len(shown)} rounds, each side climbing in turn; median) | " + ", ".join(shown) + " req/s"
                 + (f": {m:.2f}× (from {min(ratios):.2f}× to {max(ratios):.2f}×)" if ratios else "")
                 + (" (a climb marked ≥ ran out of rates before a miss: its ratio is a bound)" if bounded else "")
                 + f" | {'yes' if m and m >= 3 else 'no'} |")


def pairs(a, b):
    """The alternating runs a-abN@max, b-abN@max: (a req/s, b req/s) for each N."""
    out, n = [], 1
    while f"{a}-ab{n}@max" in by and f"{b}-ab{n}@max" in by:
        out.append((by[f"{a}-ab{n}@max"]["rps"], by[f"{b}-ab{n}@max"]["rps"]))
        n += 1
    return out


ab = pairs("dashboard", "peer-dashboard")
if ab:
    ratios = [x / y for x, y in ab if y > 0]
    m = median(ratios)
    lines.append(f"| dashboard ≥ 3× PostGraphile's throughput, {len(ab)} alternating pairs at saturation (median) | "
                 + ", ".join(f"{x:.0f} vs {y:.0f}" for x, y in ab) + f" req/s: {m:.2f}× (from {min(ratios):.2f}× to "
                 f"{max(ratios):.2f}×) | {'yes' if m >= 3 else 'no'} |")
cached = by.get("apq-dashboard@max")
if cached and peer and peer["rps"] > 0:
    ratio = cached["rps"] / peer["rps"]
    lines.append(f"| the same, as shipped (response cache on; one query repeated, the cache's best case) | Passerelle "
                 f"{cached['rps']:.0f} req/s at p99 {cached['p99_ms']:.0f} ms (persisted dashboard), PostGraphile "
                 f"{peer['rps']:.0f} req/s: {ratio:.1f}× | {'yes, with the cache' if ratio >= 3 else 'no'} |")
apq = by.get("apq-dashboard@1000")
if apq:
    lines.append(f"| persisted dashboard p99 < 10 ms at 1,000 req/s | p99 {apq['p99_ms']:.2f} ms, {apq['errors']} errors "
                 f"(APQ by hash, GET, response cache as shipped) | {'yes' if apq['p99_ms'] < 10 and apq['errors'] == 0 else 'no'} |")
if pages:
    counts = {r["statements"] for r in pages}
    lines.append(f"| statements per request constant in page size | {sorted(counts)} for pages "
                 f"{', '.join(r['label'].split('page')[1] for r in pages)} | {'yes' if len(counts) == 1 else 'no'} |")
uncached_research = lambda r: r["label"].startswith("research") and not r["label"].startswith("research-cached")
is_peer = lambda r: "peer-" in r["label"]
ours_runs = [r for r in load if not is_peer(r) and not uncached_research(r)]
if ours_runs:
    worst = max(ours_runs, key=mib)
    lines.append(f"| RSS under 64 MiB at load (dashboards, floor, persisted queries) | peak {mib(worst):.1f} MiB ({worst['label']}) | {'yes' if mib(worst) < 64 else 'no'} |")
research_runs = [r for r in load if uncached_research(r)]
if research_runs:
    worst = max(research_runs, key=mib)
    lines.append(f"| RSS under 64 MiB at load (research aggregates, uncached) | peak {mib(worst):.1f} MiB ({worst['label']}) | {'yes' if mib(worst) < 64 else 'no'} |")
fa, aa = by.get("floor-get@max"), by.get("apq-dashboard@max")
if fa and aa:
    gap = 1 - aa["rps"] / fa["rps"]
    lines.append(f"| APQ-hit path within 10% of `{{__typename}}` (saturation, both GET by hash, one run each) | APQ dashboard {aa['rps']:.0f} req/s, "
                 f"floor {fa['rps']:.0f} req/s: {gap * 100:.1f}% slower | no verdict: one run each; the pairs decide |")
ab = pairs("apq-dashboard", "floor-get")
if ab:
    gaps = [1 - x / y for x, y in ab if y > 0]
    m = median(gaps)
    lines.append(f"| APQ-hit path within 10% of `{{__typename}}`, {len(ab)} alternating pairs at saturation (median) | "
                 + ", ".join(f"{x:.0f} vs {y:.0f}" for x, y in ab) + f" req/s: {m * 100:.1f}% slower (from "
                 f"{min(gaps) * 100:.1f}% to {max(gaps) * 100:.1f}%) | {'yes' if m <= 0.10 else 'no'} |")
STAGES = ["request", "admission", "database_slot", "blocking_thread", "database_work", "audit"]
timed = [r for r in load if r.get("stages") and "@max" not in r["label"] and "dashboard" in r["label"]]
if timed:
    lines += ["", "## Where the time went", "",
              "Passerelle's dashboard runs at fixed rates: per stage of a request, from its "
              "`passerelle_stage_seconds` histograms before and after the run, the mean and the bucket "
              "its p99 falls under (ms; `>2500` above the last). `request` is the whole of one in the "
              "server; the client's p99 adds the network stack and the generator.", "",
              "| run | client p99 | " + " | ".join(STAGES) + " |",
              "| --- | ---: | " + " | ".join("---:" for _ in STAGES) + " |"]
    def cell(st):
        if not st or not st.get("count"):
            return ""
        p99 = st.get("p99_under_ms")
        return f"{st['mean_ms']:.2f} / {'>2500' if p99 is None else f'≤{p99:g}'}"
    for r in timed:
        lines.append(f"| {r['label']} | {r['p99_ms']:.1f} | " + " | ".join(cell(r["stages"].get(k)) for k in STAGES) + " |")
stolen = [r["steal_pct"] for r in load if r.get("steal_pct") is not None]
if stolen:
    busy = [r["label"] for r in load if (r.get("steal_pct") or 0) > 10]
    lines += ["", "## The host", "",
              f"CPU time the host took from this virtual machine while the runs measured (`steal` in /proc/stat): "
              f"median {median(stolen):.0f}%, at most {max(stolen):.0f}%, over 10% in {len(busy)} of {len(stolen)} runs"
              + (f" ({', '.join(busy[:12])}{', ...' if len(busy) > 12 else ''})" if busy else "")
              + ". Latencies and throughput of runs with a high steal measure the host as much as the servers."]
(out / "report.md").write_text("\n".join(lines) + "\n")

# p99 latency per run, one bar each (log scale: from sub-millisecond to seconds).
import math
w, bar, gap, left, top = 980, 18, 6, 260, 30
h = top + len(load) * (bar + gap) + 40
lo, hi = math.log10(0.1), math.log10(max([r["p99_ms"] for r in load] + [10.0]))
span = (w - left - 170)
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
       f'<rect width="{w}" height="{h}" fill="white"/>',
       f'<text x="{left}" y="18" font-weight="bold">p99 latency per run (log scale); blue Passerelle, red PostGraphile</text>']
for i, r in enumerate(load):
    y = top + i * (bar + gap)
    bw = span * (math.log10(max(r["p99_ms"], 0.1)) - lo) / (hi - lo)
    color = "#c0504d" if is_peer(r) else "#4f81bd"
    svg.append(f'<text x="{left - 8}" y="{y + bar * 0.75}" text-anchor="end">{r["label"]}</text>')
    svg.append(f'<rect x="{left}" y="{y}" width="{max(bw, 1):.1f}" height="{bar}" fill="{color}"/>')
    svg.append(f'<text x="{left + max(bw, 1) + 6:.1f}" y="{y + bar * 0.75}">{r["p99_ms"]:.2f} ms, {r["rps"]:.0f} req/s, {mib(r):.0f} MiB</text>')
svg.append("</svg>")
(out / "latency.svg").write_text("\n".join(svg) + "\n")
print((out / "report.md").read_text())
