"""The benchmark's table, its targets (issue 6) and its chart."""

from __future__ import annotations

from pathlib import Path

import launch_profile


def _g(d, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or d.get(k) is None:
            return default
        d = d[k]
    return d


def _ratio(a, b):
    return a / b if a is not None and b else None


def targets(r: dict) -> list[dict]:
    """Each target of issue 6 with the measured value and whether it is met
    (None: not measured)."""
    out = []

    def add(name, value, limit, ok, unit=""):
        out.append({"target": name, "value": value, "limit": limit, "unit": unit,
                    "met": None if value is None else ok})

    warm = _g(r, "warm", "total") or {}
    add("warm launch p50", warm.get("p50"), 1.0, (warm.get("p50") or 99) <= 1.0, "s")
    add("warm launch p95", warm.get("p95"), 2.0, (warm.get("p95") or 99) <= 2.0, "s")
    ratio = _ratio(_g(r, "cold", "ours_total", "p50"), _g(r, "cold", "bare_total", "p50"))
    add("cold p50 / bare hub p50", ratio, 1.1, (ratio or 99) <= 1.1, "×")
    pool = _g(r, "simultaneous", "pool") or {}
    add("20 simultaneous, pool of 20: all ready", pool.get("all_ready_s"), 5.0,
        (pool.get("all_ready_s") or 99) <= 5.0 and pool.get("failures") == 0, "s")
    add("20 simultaneous, pool of 20: failures", pool.get("failures"), 0,
        pool.get("failures") == 0)
    second = _g(r, "preload_cache", "second", "bytes")
    first = _g(r, "preload_cache", "first", "bytes")
    # the count only means something when the first launch's fetch was seen
    add("bytes downloaded on the second launch", second, 0, second == 0 and bool(first), "B")
    rss = _g(r, "big_preload", "rss") or {}
    for proc in ("bridge", "hub"):
        g = _g(rss, proc, "growth_mib")
        add(f"1 GiB preload: {proc} RSS growth", g, 50, (g if g is not None else 99) < 50, "MiB")
    tr = _g(r, "big_preload", "ratio")
    add("1 GiB preload throughput / curl", tr, 0.8, (tr or 0) >= 0.8, "×")
    # the bridge's overhead: its time outside the hub calls it makes
    p95 = _g(r, "scale", "bridge_own", "p95")
    add("simulated: bridge overhead per launch p95", None if p95 is None else p95 * 1000, 100,
        (p95 or 99) * 1000 < 100, "ms")
    exact = _g(r, "scale", "cap", "exact")
    add("simulated: exact cap under 200 concurrent", exact, True, exact is True)
    return out


def _fmt(v, unit="s", digits=2):
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if unit == "ms":
        return f"{v * 1000:.0f} ms"
    if unit == "s":
        return f"{v:.{digits}f} s"
    if unit == "×":
        return f"{v:.2f}×"
    if unit == "MiB":
        return f"{v:.1f} MiB"
    if unit == "MiB/s":
        return f"{v:.0f} MiB/s"
    return str(v)


def table(r: dict) -> str:
    rows = [("measure", "ours", "bare JupyterHub", "ratio")]

    def row(name, ours=None, bare=None, unit="s", ratio=None):
        if ratio is None and isinstance(ours, (int, float)) and isinstance(bare, (int, float)) \
                and not isinstance(ours, bool) and bare:
            ratio = ours / bare
        rows.append((name, _fmt(ours, unit), _fmt(bare, unit),
                     "" if ratio is None else f"{ratio:.2f}×"))

    c = r.get("cold") or {}
    if c:
        n = _g(c, "ours_total", "n")
        row(f"cold launch to /api/status, p50 (n={n})", _g(c, "ours_total", "p50"),
            _g(c, "bare_total", "p50"))
        row("cold launch to /api/status, p95", _g(c, "ours_total", "p95"),
            _g(c, "bare_total", "p95"))
        row("cold: server ready (CKAN's 303 / hub ready), p50", _g(c, "ours_ready", "p50"),
            _g(c, "bare_ready", "p50"))
        row("cold: failures", c["failures"]["ours"], c["failures"]["bare"], unit="")
    w = r.get("warm") or {}
    if w.get("available"):
        row(f"warm launch to /api/status, p50 (pool {w['pool_size']})", _g(w, "total", "p50"))
        row("warm launch to /api/status, p95", _g(w, "total", "p95"))
        row("warm: CKAN's 303, p50", _g(w, "ready", "p50"))
    elif w:
        rows.append(("warm launch", w.get("note", "pool not available"), "", ""))
    s = r.get("simultaneous") or {}
    if s:
        row("20 simultaneous, no pool: all ready", _g(s, "cold", "all_ready_s"),
            _g(s, "bare", "all_ready_s"))
        row("20 simultaneous, no pool: failures", _g(s, "cold", "failures"),
            _g(s, "bare", "failures"), unit="")
        if _g(s, "pool", "available"):
            row("20 simultaneous, pool of 20: all ready", _g(s, "pool", "all_ready_s"))
            row("20 simultaneous, pool of 20: failures", _g(s, "pool", "failures"), unit="")
        else:
            rows.append(("20 simultaneous, pool of 20", _g(s, "pool", "note", default="—"), "", ""))
    pc = r.get("preload_cache") or {}
    if pc:
        row("preload: bytes fetched, first launch", _g(pc, "first", "bytes"), unit="")
        row("preload: bytes fetched, second launch", _g(pc, "second", "bytes"), unit="")
    b = r.get("big_preload") or {}
    if b:
        if b.get("error"):
            rows.append(("1 GiB preload", b["error"], "", ""))
        rows.append(("1 GiB: preload vs curl (CKAN-side time)",
                     _fmt(_g(b, "preload", "mib_s"), "MiB/s"), "curl " + _fmt(_g(b, "curl", "mib_s"), "MiB/s"),
                     "" if b.get("ratio") is None else f"{b['ratio']:.2f}×"))
        for proc in ("bridge", "hub", "ckan"):
            row(f"1 GiB: {proc} peak RSS growth", _g(b, "rss", proc, "growth_mib"), unit="MiB")
    m = r.get("memory") or {}
    if m:
        row("idle session RSS, median", _g(m, "ours", "rss", "p50"), _g(m, "bare", "rss", "p50"),
            unit="MiB")
        row("idle session PSS, median", _g(m, "ours", "pss", "p50"), _g(m, "bare", "pss", "p50"),
            unit="MiB")
    sc = r.get("scale") or {}
    if sc:
        n = sc.get("sessions_measured", sc["sessions_launched"])
        row(f"simulated: launch POST p50, {n} measured up to {sc['sessions_live']} sessions "
            "(bridge / hub alone)",
            _g(sc, "bridge_post", "p50"), _g(sc, "bare_hub_spawn", "p50"), unit="ms")
        row("simulated: launch POST p95", _g(sc, "bridge_post", "p95"),
            _g(sc, "bare_hub_spawn", "p95"), unit="ms")
        row("simulated: bridge overhead per launch, p50 (difference)", sc.get("overhead_p50"),
            unit="ms")
        row("simulated: bridge's own time per launch (outside hub calls), p50",
            _g(sc, "bridge_own", "p50"), unit="ms")
        row("simulated: bridge's own time per launch (outside hub calls), p95",
            _g(sc, "bridge_own", "p95"), unit="ms")
        rows.append(("simulated: bridge p50, at 0 → at the last 100 sessions",
                     _fmt(_g(sc, "bridge_post_first_100", "p50"), "ms") + " → "
                     + _fmt(_g(sc, "bridge_post_last_100", "p50"), "ms"), "", ""))
        cap = sc.get("cap") or {}
        counts = " ".join(f"{k}×{v}" for k, v in (cap.get("status_counts") or {}).items())
        rows.append((f"simulated: cap {cap.get('max_guests')} under {cap.get('requests')} concurrent",
                     counts, f"hub guest servers {cap.get('hub_guest_servers')}",
                     "exact" if cap.get("exact") else "NOT EXACT"))
    d = r.get("docker") or {}
    if d and not d.get("run"):
        rows.append(("docker spawner", d.get("note", ""), "", ""))
    dc = r.get("docker_cold") or {}
    if dc:
        n = _g(dc, "ours_total", "n")
        row(f"docker: cold launch to /api/status, p50 (n={n})", _g(dc, "ours_total", "p50"),
            _g(dc, "bare_total", "p50"))
        row("docker: cold launch to /api/status, p95", _g(dc, "ours_total", "p95"),
            _g(dc, "bare_total", "p95"))
        row("docker: cold failures", dc["failures"]["ours"], dc["failures"]["bare"], unit="")
    dw = r.get("docker_warm") or {}
    if dw.get("available"):
        row("docker: warm launch to /api/status, p50", _g(dw, "total", "p50"))
        row("docker: warm launch to /api/status, p95", _g(dw, "total", "p95"))
    elif dw:
        rows.append(("docker: warm launch", dw.get("note", ""), "", ""))
    dm = r.get("docker_memory") or {}
    if dm:
        row("docker: idle session container memory, median", _g(dm, "mem", "p50"), unit="MiB")

    # long notes go under the table, not into a column
    notes = [f"{name}: {ours} {bare}".rstrip() for name, ours, bare, _ in rows[1:] if len(str(ours)) > 40]
    rows = [rw for rw in rows if rw is rows[0] or len(str(rw[1])) <= 40]
    widths = [max(len(str(x[i])) for x in rows) for i in range(4)]
    lines = []
    for i, rw in enumerate(rows):
        lines.append("  ".join(str(v).ljust(widths[j]) for j, v in enumerate(rw)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    out = ["", "Machine: {cpu}, {cores} cores, {memory_gib} GiB; load at start {load}".format(
        load=", ".join(f"{x:.2f}" for x in r["machine"]["load_at_start"]), **r["machine"]), ""]
    out += lines
    if notes:
        out += [""] + notes
    prof = _g(r, "cold", "profile_ours") or {}
    if prof:
        out += ["", "Where a cold launch's time goes (median seconds):"]
        bare = _g(r, "cold", "profile_bare") or {}
        for key, label in launch_profile.CKAN_PHASES:
            if key in prof:
                extra = f"   (bare hub {bare[key]:.3f})" if key in bare and key != "status" else ""
                out.append(f"  {prof[key]:7.3f}  {label}{extra}")
    out += ["", "Targets (issue 6):"]
    for t in r.get("targets", []):
        mark = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        v = t["value"]
        v = "—" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
        out.append(f"  {mark:13} {t['target']}: {v} {t['unit']} (target {t['limit']} {t['unit']})")
    if r.get("errors"):
        out += ["", "Errors:"] + [f"  {e}" for e in r["errors"]]
    return "\n".join(out)


def chart(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def totals(runs):
        return [x["total"] for x in runs or [] if x.get("ok")]

    series = [
        ("cold, ours", totals(_g(r, "cold", "ours"))),
        ("cold, bare hub", totals(_g(r, "cold", "bare"))),
        ("warm, ours", totals(_g(r, "warm", "runs"))),
        ("20 at once, ours", totals(_g(r, "simultaneous", "cold", "runs"))),
        ("20 at once, bare", totals(_g(r, "simultaneous", "bare", "runs"))),
        ("20 at once, pool", totals(_g(r, "simultaneous", "pool", "runs"))),
        ("docker cold, ours", totals(_g(r, "docker_cold", "ours"))),
        ("docker cold, bare", totals(_g(r, "docker_cold", "bare"))),
        ("docker warm, ours", totals(_g(r, "docker_warm", "runs"))),
    ]
    series = [(n, v) for n, v in series if v]
    fig, axes = plt.subplots(1, 2, figsize=(15, 5), gridspec_kw={"width_ratios": [3, 1]})
    ax = axes[0]
    if series:
        ax.boxplot([v for _, v in series], showfliers=True)
        ax.set_xticks(range(1, len(series) + 1), [n for n, _ in series], rotation=20)
        for i, (_, v) in enumerate(series, 1):
            ax.scatter([i] * len(v), v, s=10, alpha=0.5)
    ax.set_yscale("log")
    ax.set_ylabel("seconds, launch POST → /api/status 200 (log scale)")
    ax.set_title("Launch latency (local spawner; docker spawner where an engine answers)")
    ax.grid(axis="y", alpha=0.3)
    ax = axes[1]
    lat = [x * 1000 for x in _g(r, "scale", "latencies", default=[])]
    levels = _g(r, "scale", "levels", default=[])
    if lat:
        ax.plot(levels if len(levels) == len(lat) else range(len(lat)), lat, ".", markersize=3)
        ax.set_xlabel("live sessions when measured")
        ax.set_ylabel("ms, bridge POST /api/sessions")
        ax.set_title("Simulated scale (no-op spawner)")
        ax.grid(alpha=0.3)
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, "simulated scale not run", ha="center", va="center")
    fig.suptitle(f"ckanext-jupyternotebook benchmarks, {r['started']}, "
                 f"{r['machine']['cores']} cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
