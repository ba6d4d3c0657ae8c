"""Prints issue 10's ratios from the files of run.sh (OUT folder, default: this folder):
python summarize.py [OUT]. Medians of the pooled runs (pass A + pass B), min-max, and each
pass's own ratio, so drift between the passes shows."""
import json
import statistics as st
import sys
from pathlib import Path

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent


def load(name):
    p = out / name
    return json.loads(p.read_text()) if p.exists() else None


def runs(report, mode="resident"):
    if report is None:
        return []
    for r in report["results"]:
        if r["mode"] == mode:
            return r["runs"]
    return []


def med(xs):
    return (st.median(xs), min(xs), max(xs)) if xs else (float("nan"),) * 3


def fmt(t, d=2):
    return f"{t[0]:.{d}f} ({t[1]:.{d}f}-{t[2]:.{d}f})"


def stage(rs, key):
    return [r["stage_seconds"].get(key, 0.0) for r in rs]


rows = {}
for tag, fname, mode in [("PyTorch", "torch-{}.json", "torch-resident"), ("fp32", "bench-fp32-{}.json", "resident"),
                         ("swap", "bench-fp32-{}.json", "swap"), ("int8 T3 + int8 flow", "bench-q8-{}.json", "resident"),
                         ("int4 T3 + int8 flow", "bench-q4-{}.json", "resident")]:
    rows[tag] = {p: runs(load(fname.format(p)), mode) for p in "AB"}

print("| | RTF | T3 s | S3Gen flow s | HiFT s | peak RSS MiB | pass A RTF | pass B RTF |")
print("|---|---|---|---|---|---|---|---|")
for tag, per in rows.items():
    allr = per["A"] + per["B"]
    if not allr:
        continue
    rtf = med([r["rtf"] for r in allr])
    print(f"| {tag} | {fmt(rtf)} | {fmt(med(stage(allr, 't3')))} | {fmt(med(stage(allr, 's3gen')))} | "
          f"{fmt(med(stage(allr, 'vocoder')))} | {med([r['peak_rss_bytes'] / 2**20 for r in allr])[0]:.0f} | "
          f"{med([r['rtf'] for r in per['A']])[0]:.2f} | {med([r['rtf'] for r in per['B']])[0]:.2f} |")


def ratio(a, b, key):
    va = [key(r) for r in rows[a]["A"] + rows[a]["B"]]
    vb = [key(r) for r in rows[b]["A"] + rows[b]["B"]]
    per = []
    for p in "AB":
        x = [key(r) for r in rows[a][p]]
        y = [key(r) for r in rows[b][p]]
        if x and y:
            per.append(st.median(x) / st.median(y))
    return st.median(va) / st.median(vb), per


print()
for a, b, key, what in [("fp32", "PyTorch", lambda r: r["stage_seconds"]["s3gen"], "fp32 flow / reference flow (<= 0.80)"),
                        ("int8 T3 + int8 flow", "PyTorch", lambda r: r["stage_seconds"]["s3gen"], "int8 flow / reference flow (<= 0.50)"),
                        ("fp32", "PyTorch", lambda r: r["rtf"], "fp32 RTF / reference (<= 0.50)"),
                        ("int8 T3 + int8 flow", "PyTorch", lambda r: r["rtf"], "int8 T3 + int8 flow RTF / reference (<= 0.35)"),
                        ("int4 T3 + int8 flow", "PyTorch", lambda r: r["rtf"], "int4 T3 + int8 flow RTF / reference"),
                        ("swap", "fp32", lambda r: r["rtf"], "swap RTF / resident (<= 1.10)")]:
    try:
        r, per = ratio(a, b, key)
        print(f"{what}: pooled {r:.3f}; per pass {', '.join(f'{x:.3f}' for x in per)}")
    except (KeyError, st.StatisticsError, ZeroDivisionError) as e:
        print(f"{what}: missing ({e})")

for p in "AB":
    rep = load(f"bench-fp32-{p}.json")
    if rep:
        print(f"pass {p} acceptance:", "; ".join(rep["acceptance"].get("verdicts", [])))

for name in ("cost-orig-1.json", "cost-orig-2.json", "cost-turbo.json"):
    c = load(name)
    if not c:
        continue
    print(f"\n{name}: batch {c['batch']}, {c['frames']} frames, {c['rounds']} rounds x {c['calls']} calls")
    res = c["results"]
    torch = next((r for r in res if "torch" in str(r.get("precision"))), None)
    print(f"  agreement with the reference (relative L2): {c.get('torch_agreement_rel_l2')}")
    for r in res:
        ms = r["ms"]
        line = f"  {Path(str(r['bundle'])).name} {r.get('precision')}: {fmt(med(ms), 0)} ms"
        if torch and r is not torch:
            line += f" = {r['median_ms'] / torch['median_ms']:.3f} x PyTorch"
        print(line)

s = load("t3-step.json")
if s:
    print("\nT3 step (ms, median of round medians):")
    by = {}
    for r in s["runs"]:
        by.setdefault(Path(r["bundle"]).name, {}).setdefault(r["position"], []).append(r["median_ms"])
    fp = None
    for b, pos in by.items():
        p50, p1000 = st.median(pos[50]), st.median(pos[1000])
        rounds = [x / y for x, y in zip(pos[1000], pos[50])]
        fp = fp or (p50, p1000)
        print(f"  {b}: 50 {p50:.1f}, 1000 {p1000:.1f}, 1000/50 {p1000 / p50:.3f} (rounds {', '.join(f'{x:.2f}' for x in rounds)}),"
              f" x fp32 {p50 / fp[0]:.2f} / {p1000 / fp[1]:.2f}")

for tag in ("turbo", "turbo-flowint8"):
    rs = runs(load(f"bench-{tag}.json"))
    if rs:
        print(f"\nTurbo engine {tag}: RTF {fmt(med([r['rtf'] for r in rs]))}, flow {fmt(med(stage(rs, 's3gen')))} s, T3 {fmt(med(stage(rs, 't3')))} s")
tr = runs(load("torch-turbo.json"), "torch-resident")
if tr:
    print(f"Turbo PyTorch: RTF {fmt(med([r['rtf'] for r in tr]))}, s3gen {fmt(med(stage(tr, 's3gen')))} s, T3 {fmt(med(stage(tr, 't3')))} s")
