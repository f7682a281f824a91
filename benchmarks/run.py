"""``make bench``: launch latency, simultaneous launches, preload, memory and
simulated scale, against a bare JupyterHub, in one run on this machine.

    .venv/bin/python benchmarks/run.py [--launches 10] [--no-docker] [--no-scale]
                                       [--no-big] [--sessions 1000] [--keep]

Prints a table and writes benchmarks/results/<date>.json and .png. Everything
it starts it stops, on failure and Ctrl-C too. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import psutil  # noqa: E402
import requests  # noqa: E402

import launch_profile  # noqa: E402
import report  # noqa: E402
from launches import (CKANLauncher, bare_launch, new_bare_user, simultaneously,  # noqa: E402
                      summary, wait_pool)
from stacks import (BENCH_DIR, BRIDGE_TOKEN, CKAN, HUB_TOKEN, BareHub,  # noqa: E402
                    bridge_process, init_ckan, portal_stack, remove_network, scale_stack,
                    session_servers, tree_memory)
from dev.testing import Bridge  # noqa: E402

MiB = 1024**2
GiB = 1024**3


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


# -- helpers ----------------------------------------------------------------

def write_file(path: Path, size: int, csv: bool) -> Path:
    """A file of ``size`` bytes, written in 1 MiB blocks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if csv:
        rows = "".join(f"{i},{random.random():.6f},{uuid.uuid4().hex}\n" for i in range(20000))
        block = ("id,value,label\n" + rows).encode()
    else:
        block = os.urandom(MiB)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            f.write(block[:left])
            left -= min(left, len(block))
    return path


def fetch_hits(access_log: Path, offset: int) -> list[dict]:
    """CKAN's /jupyter/fetch responses logged after ``offset``: bytes sent
    and the time to stream them."""
    hits = []
    with open(access_log, "rb") as f:
        f.seek(offset)
        for line in f.read().decode(errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 6 and parts[5].startswith("/jupyter/fetch/"):
                hits.append({"target": parts[5], "status": int(parts[1]),
                             "bytes": int(parts[2]), "seconds": float(parts[3])})
    return hits


def size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def process_start(hub_pid: int, user: str, server: str) -> float | None:
    """When the server's process began, to the clock tick: psutil's
    create_time rests on a boot time rounded to the second."""
    proc = session_servers(hub_pid).get(f"{user}/{server}")
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return proc.create_time() - psutil.boot_time() + (time.time() - uptime) if proc else None
    except (psutil.Error, OSError):
        return None


def parallel(fn, items, workers=10):
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


class RSSSampler:
    """Peak RSS of some processes, sampled every 50 ms in a thread."""

    def __init__(self, procs: dict[str, psutil.Process]):
        self.procs = {k: p for k, p in procs.items() if p is not None}
        self.base = {k: self._rss(p) for k, p in self.procs.items()}
        self.peak = dict(self.base)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss(p):
        try:
            return p.memory_info().rss
        except psutil.Error:
            return 0

    def _run(self):
        while not self._stop.is_set():
            for k, p in self.procs.items():
                self.peak[k] = max(self.peak[k], self._rss(p))
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def growth(self) -> dict:
        return {k: {"base_mib": self.base[k] / MiB, "peak_mib": self.peak[k] / MiB,
                    "growth_mib": (self.peak[k] - self.base[k]) / MiB} for k in self.procs}


def memory_of(servers: dict) -> dict:
    rows = []
    for key, proc in servers.items():
        try:
            rss, pss = tree_memory(proc)
        except psutil.Error:
            continue
        rows.append({"server": key, "rss_mib": rss / MiB,
                     "pss_mib": None if pss is None else pss / MiB})
    return {"servers": rows, "rss": summary([r["rss_mib"] for r in rows]),
            "pss": summary([r["pss_mib"] for r in rows if r["pss_mib"] is not None])}


# -- the portal: CKAN + hub + bridge, local spawner -------------------------

class PortalBench:
    def __init__(self, args, results: dict, spawner: str = "local"):
        self.args = args
        self.results = results
        self.spawner = spawner
        self.stack = portal_stack(max_upload_mb=1200)
        self.bare: BareHub | None = None
        self.bridge: Bridge | None = None

    def start(self) -> None:
        st = self.stack
        st.stop()
        shutil.rmtree(st.directory, ignore_errors=True)
        st.prepare()
        log("starting the Solr stand-in and CKAN (database ckan_bench)")
        st.start_solr()
        token = init_ckan(st)
        st.start_hub(CKAN_SITE_URL=st.ckan_url, JUPYTERNOTEBOOK_REAPER_INTERVAL="5")
        st.start_ckan()
        self.bridge = Bridge(st.bridge_url, BRIDGE_TOKEN)
        self.bridge.put_settings(guest_rate_limit=0, max_guests=60, max_sessions=200,
                                 pool_size=0)
        self.ckan = CKAN(st.ckan_url, token)
        self.ckan.action("organization_create", name="bench-org", title="Benchmarks")
        files = BENCH_DIR / "files"
        small = write_file(files / "measurements.csv", 4 * MiB, csv=True)
        self.small = self.ckan.dataset_with_upload("bench-small", "bench-org", small)
        self.launcher = CKANLauncher(st.ckan_url)
        log("starting the bare hub")
        self.bare = BareHub()
        self.bare.start()

    def stop(self) -> None:
        if self.bare:
            self.bare.stop()
        self.stack.stop()

    @property
    def hub_pid(self) -> int:
        return self.stack.running("hub")

    def end(self, users: set[str] | None = None) -> None:
        sessions = [s for s in self.bridge.sessions() if users is None or s["hub_user"] in users]
        parallel(lambda s: self.bridge.call("DELETE", f"/api/sessions/{s['id']}"), sessions, 8)

    # 3a. bytes downloaded on the first and second launch of a dataset
    def second_launch_bytes(self) -> None:
        log("preload: first and second launch of bench-small (4 MiB CSV)")
        out = {}
        for which in ("first", "second"):
            offset = size_of(self.stack.access_log)
            launch = self.launcher.launch("bench-small", kind="ckan")
            time.sleep(0.5)  # the access log line is written after the response
            hits = fetch_hits(self.stack.access_log, offset)
            out[which] = {"ok": launch.ok, "error": launch.error, "total_s": launch.total,
                          "fetches": len(hits), "bytes": sum(h["bytes"] for h in hits)}
            self.end({launch.hub_user})
        self.results["preload_cache"] = out
        log(f"  first launch fetched {out['first']['bytes']} bytes, "
            f"second {out['second']['bytes']} bytes")

    # 1. cold launches, ours and the bare hub's, interleaved
    def cold(self, n: int | None = None, bare: BareHub | None = None, key: str = "cold",
             profile: bool = True) -> None:
        n = n or self.args.launches
        bare = bare or self.bare
        log(f"{key} launches: {n} through CKAN and {n} bare hub spawns, interleaved")
        user, options = new_bare_user(bare)  # warm-up, not counted
        bare_launch(bare, user, options)
        bare.remove(user)
        ours, bares, prof_ours, prof_bare = [], [], [], []
        for i in range(n):
            since = time.time()
            launch = self.launcher.launch("bench-small", kind=f"ckan-{key}")
            if launch.ok and profile:
                lines = launch_profile.read_log(self.stack.hub_log, since)
                m = launch_profile.marks(lines, launch.hub_user, launch.server, launch.started,
                                         process_start(self.hub_pid, launch.hub_user,
                                                       launch.server))
                launch.phases = launch_profile.ckan_phases(m, launch.ready, launch.lab,
                                                           launch.total)
                prof_ours.append(launch.phases)
            ours.append(launch)
            self.end({launch.hub_user})

            user, options = new_bare_user(bare)
            since = time.time()
            b = bare_launch(bare, user, options)
            if b.ok and profile:
                lines = launch_profile.read_log(bare.log_path, since)
                m = launch_profile.marks(lines, user, "s", b.started,
                                         process_start(bare.proc.pid, user, "s"))
                b.phases = launch_profile.bare_phases(m, b.ready, b.total)
                prof_bare.append(b.phases)
            bares.append(b)
            bare.remove(user)
            log(f"  {i + 1}/{n}: ours {_s(launch.total)} (303 at {_s(launch.ready)})"
                f"{' ' + launch.error if launch.error else ''}; bare {_s(b.total)}"
                f"{' ' + b.error if b.error else ''}")
        self.results[key] = {
            "ours": [x.as_dict() for x in ours], "bare": [x.as_dict() for x in bares],
            "ours_total": summary([x.total for x in ours if x.ok]),
            "ours_ready": summary([x.ready for x in ours if x.ok]),
            "bare_total": summary([x.total for x in bares if x.ok]),
            "bare_ready": summary([x.ready for x in bares if x.ok]),
            "failures": {"ours": sum(not x.ok for x in ours),
                         "bare": sum(not x.ok for x in bares)},
            "profile_ours": launch_profile.median_phases(prof_ours) if prof_ours else {},
            "profile_bare": launch_profile.median_phases(prof_bare) if prof_bare else {},
        }

    # 1. warm launches, when the bridge has a pool
    def warm(self, n: int | None = None, key: str = "warm") -> None:
        n = n or self.args.launches
        size = 3
        log(f"warm launches: pool_size {size}, {n} launches")
        self.bridge.put_settings(pool_size=size)
        cap = wait_pool(self.bridge, 1, timeout=90)
        if (cap.get("pool") or {}).get("ready", 0) < 1:
            self.results[key] = {"available": False,
                                    "note": "pool not available: no ready pool server within "
                                            f"90 s of pool_size={size} (capacity: {cap.get('pool')})"}
            log("  pool not available")
            self.bridge.put_settings(pool_size=0)
            return
        runs = []
        for i in range(n):
            wait_pool(self.bridge, size, timeout=90)
            launch = self.launcher.launch("bench-small", kind=f"ckan-{key}")
            runs.append(launch)
            self.end({launch.hub_user})
            log(f"  {i + 1}/{n}: {_s(launch.total)} (303 at {_s(launch.ready)})"
                f"{' ' + launch.error if launch.error else ''}")
        self.bridge.put_settings(pool_size=0)
        self.results[key] = {
            "available": True, "pool_size": size, "runs": [x.as_dict() for x in runs],
            "total": summary([x.total for x in runs if x.ok]),
            "ready": summary([x.ready for x in runs if x.ok]),
            "login": summary([x.lab - x.ready for x in runs if x.ok]),
            "failures": sum(not x.ok for x in runs),
        }

    # 2. + 4. twenty simultaneous launches; memory of the idle sessions
    def simultaneous(self) -> None:
        n = 20
        out = {}
        wait_pool_empty(self.bridge)
        log(f"{n} simultaneous launches through CKAN, no pool")
        runs, elapsed = simultaneously(
            n, lambda i: self.launcher.page("bench-small"),
            lambda bp: self.launcher.click(*bp, kind="ckan-20"))
        out["cold"] = _simultaneous_result(runs, elapsed)
        log(f"  all done in {elapsed:.1f} s, {out['cold']['failures']} failed")
        time.sleep(5)
        self.results["memory"] = {"ours": memory_of(session_servers(self.hub_pid))}
        self.end()

        log(f"{n} simultaneous bare hub spawns")
        runs, elapsed = simultaneously(n, lambda i: new_bare_user(self.bare),
                                       lambda uo: bare_launch(self.bare, *uo))
        out["bare"] = _simultaneous_result(runs, elapsed)
        log(f"  all done in {elapsed:.1f} s, {out['bare']['failures']} failed")
        time.sleep(5)
        self.results["memory"]["bare"] = memory_of(session_servers(self.bare.proc.pid))
        parallel(self.bare.remove, [r.hub_user for r in runs], 8)
        self.results.setdefault("simultaneous", {}).update(out)

    def simultaneous_pool(self) -> None:
        n = 20
        out = {}
        log(f"pool of {n}: filling")
        self.bridge.put_settings(pool_size=n)
        t0 = time.monotonic()
        cap = wait_pool(self.bridge, 1, timeout=90)
        if (cap.get("pool") or {}).get("ready", 0) >= 1:
            cap = wait_pool(self.bridge, n, timeout=300)
        ready = (cap.get("pool") or {}).get("ready", 0)
        if ready < 1:
            out["pool"] = {"available": False, "note": f"pool not available (capacity: {cap.get('pool')})"}
            log("  pool not available")
        else:
            out["pool_fill_s"] = time.monotonic() - t0
            log(f"  {ready} ready after {out['pool_fill_s']:.0f} s; {n} simultaneous launches")
            runs, elapsed = simultaneously(
                n, lambda i: self.launcher.page("bench-small"),
                lambda bp: self.launcher.click(*bp, kind="ckan-20-pool"))
            out["pool"] = {"available": True, "ready_before": ready,
                           **_simultaneous_result(runs, elapsed)}
            log(f"  all done in {elapsed:.1f} s, {out['pool']['failures']} failed")
        self.bridge.put_settings(pool_size=0)
        self.end()
        self.results.setdefault("simultaneous", {}).update(out)

    # the docker spawner: the same hub restarted with it, and a bare hub
    def docker(self) -> None:
        note = docker_unavailable()
        if note:
            self.results["docker"] = {"run": False, "note": note}
            return
        n = self.args.docker_launches
        log("docker spawner: restarting the hub with CKAN_JUPYTERHUB_SPAWNER=docker")
        bare = BareHub(spawner="docker", directory=BENCH_DIR / "bare-docker", port=8087,
                       api_port=8088, proxy_api_port=8089)
        bare.extra_env = {"CKAN_STORAGE_NOTEBOOK": str(bare.directory),
                          "CKAN_JUPYTERHUB_SPAWNER": "docker", "BENCH_BARE_HTTP_TIMEOUT": "120",
                          "JUPYTERNOTEBOOK_SESSIONS_NETWORK": BARE_NETWORK}
        try:
            bare.start()
            # one probe spawn first: when containers cannot start here, say so
            # and move on rather than wait out every launch's timeout
            user, options = new_bare_user(bare)
            probe = bare_launch(bare, user, options)
            bare.remove(user)
            if not probe.ok:
                self.results["docker"] = {
                    "run": False,
                    "note": f"docker spawns fail on this machine (bare hub probe: {probe.error[:160]}); "
                            f"see {bare.log_path} with --keep"}
                log(f"  {self.results['docker']['note']}")
                return
            st = self.stack
            st.stop_hub()
            st.start_hub(CKAN_SITE_URL=st.ckan_url, JUPYTERNOTEBOOK_REAPER_INTERVAL="5",
                         CKAN_JUPYTERHUB_SPAWNER="docker",
                         JUPYTERNOTEBOOK_SESSIONS_NETWORK=BENCH_NETWORK)
            self.bridge.put_settings(guest_rate_limit=0, max_guests=60, max_sessions=200,
                                     pool_size=0)
            self.cold(n=n, bare=bare, key="docker_cold", profile=False)
            self.warm(n=n, key="docker_warm")
            log("docker: memory of 3 idle sessions")
            runs = [self.launcher.launch("bench-small", kind="ckan-docker-mem") for _ in range(3)]
            time.sleep(5)
            self.results["docker_memory"] = container_memory({r.hub_user for r in runs if r.ok})
            self.end()
        finally:
            bare.stop()
            remove_containers("bare-")
            remove_network(BENCH_NETWORK)
            remove_network(BARE_NETWORK)
        self.results["docker"] = {"run": True, "launches": n}

    # 3b. a 1 GiB resource: preload throughput against curl, RSS growth
    def big_preload(self) -> None:
        log("1 GiB resource: writing and uploading it to CKAN")
        path = write_file(BENCH_DIR / "files" / "big.bin", GiB, csv=False)
        t0 = time.monotonic()
        ds = self.ckan.dataset_with_upload("bench-1gib", "bench-org", path, fmt="BIN")
        upload_s = time.monotonic() - t0
        path.unlink()
        wait_pool_empty(self.bridge)
        procs = {"bridge": bridge_process(self.stack),
                 "hub": psutil.Process(self.hub_pid),
                 "ckan": psutil.Process(self.stack.running("ckan"))}
        offset = size_of(self.stack.access_log)
        log("  launching it (preload through CKAN's fetch endpoint)")
        with RSSSampler(procs) as sampler:
            launch = self.launcher.launch(ds["name"], kind="ckan-1gib")
        time.sleep(0.5)
        hits = [h for h in fetch_hits(self.stack.access_log, offset) if h["bytes"] > GiB // 2]
        out = {"upload_s": upload_s, "launch": launch.as_dict(), "rss": sampler.growth()}
        if not hits:
            out["error"] = f"no 1 GiB fetch in CKAN's access log; launch: {launch.error or 'ok'}"
            self.results["big_preload"] = out
            self.end()
            return
        hit = hits[0]
        out["preload"] = {"bytes": hit["bytes"], "seconds": hit["seconds"],
                          "mib_s": hit["bytes"] / MiB / hit["seconds"]}
        self.end()
        log("  the same URL with curl")
        target = BENCH_DIR / "files" / "curl.out"
        best = None
        for _ in range(2):  # the better of two, in curl's favour
            offset = size_of(self.stack.access_log)
            res = subprocess.run(
                ["curl", "-sS", "--fail", "-o", str(target), "-w",
                 "%{size_download} %{time_total}", self.stack.ckan_url + hit["target"]],
                capture_output=True, text=True, timeout=600)
            target.unlink(missing_ok=True)
            time.sleep(0.5)
            curl_hits = fetch_hits(self.stack.access_log, offset)
            if res.returncode != 0 or not curl_hits:
                out["curl"] = {"error": res.stderr.strip() or "no fetch logged"}
                break
            size, total = res.stdout.split()
            c = curl_hits[0]
            run = {"bytes": int(size), "seconds": c["seconds"], "client_seconds": float(total),
                   "mib_s": c["bytes"] / MiB / c["seconds"]}
            if best is None or run["mib_s"] > best["mib_s"]:
                best = run
        if best:
            out["curl"] = best
            out["ratio"] = out["preload"]["mib_s"] / best["mib_s"]
        self.results["big_preload"] = out


# the docker phase's own sessions networks, removed at its end: one per hub,
# as each hub's egress rules let its network reach only that hub's API port
BENCH_NETWORK = "jn-bench-sessions"
BARE_NETWORK = "jn-bench-sessions-bare"


def docker_unavailable() -> str:
    """Why the docker spawner cannot be measured here ('' when it can)."""
    if not shutil.which("docker") or subprocess.run(
            ["docker", "info"], capture_output=True, timeout=60).returncode != 0:
        return "skipped: no Docker engine answers"
    if subprocess.run(["docker", "image", "inspect", "ckanext-jupyternotebook/singleuser:latest"],
                      capture_output=True, timeout=60).returncode != 0:
        return "skipped: image ckanext-jupyternotebook/singleuser:latest is missing (make images)"
    return ""


def container_memory(hub_users: set[str]) -> dict:
    """Memory of the session containers of these hub users (docker stats;
    the cgroup's usage, page cache excluded)."""
    rows = []
    for user in hub_users:
        ids = subprocess.run(["docker", "ps", "-q", "--filter",
                              f"label=org.ckan.jupyternotebook.hub-user={user}"],
                             capture_output=True, text=True, timeout=60).stdout.split()
        for cid in ids:
            out = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}",
                                  cid], capture_output=True, text=True, timeout=60).stdout
            m = re.match(r"\s*([\d.]+)\s*([KMG]i?B)", out)
            if m:
                unit = {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "kB": 1 / 1024, "MB": 1,
                        "GB": 1024}.get(m.group(2), 1)
                rows.append({"server": user, "mem_mib": float(m.group(1)) * unit})
    return {"containers": rows, "mem": summary([r["mem_mib"] for r in rows])}


def remove_containers(user_prefix: str) -> None:
    """Session containers left behind by a bare hub (labelled with their user)."""
    out = subprocess.run(["docker", "ps", "-a", "--format",
                          '{{.ID}} {{.Label "org.ckan.jupyternotebook.hub-user"}}'],
                         capture_output=True, text=True, timeout=60).stdout
    ids = [line.split()[0] for line in out.splitlines()
           if len(line.split()) == 2 and line.split()[1].startswith(user_prefix)]
    if ids:
        subprocess.run(["docker", "rm", "-f", "-v", *ids], capture_output=True, timeout=120)


def wait_pool_empty(bridge: Bridge, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pool = bridge.call("GET", "/api/capacity").json().get("pool") or {}
        if not pool.get("ready") and not pool.get("size"):
            return
        time.sleep(0.5)


def _simultaneous_result(runs, elapsed) -> dict:
    ok = [r for r in runs if r.ok]
    return {"n": len(runs), "all_ready_s": elapsed, "failures": len(runs) - len(ok),
            "errors": sorted({r.error for r in runs if not r.ok}),
            "each": summary([r.total for r in ok]), "runs": [r.as_dict() for r in runs]}


def _s(v) -> str:
    return "-" if v is None else f"{v:.2f} s"


# -- simulated scale: the no-op spawner -------------------------------------

def scale(args, results: dict, stacks: list) -> None:
    st = scale_stack()
    stacks.append(st)
    st.stop()
    shutil.rmtree(st.directory, ignore_errors=True)
    st.prepare()
    log("simulated scale: hub + bridge with the no-op spawner")
    st.start_hub(BENCH_NOOP_STATUS_PORT="8099", BENCH_HUB_TOKEN=HUB_TOKEN,
                 JUPYTERNOTEBOOK_REAPER_INTERVAL="30")
    bridge = Bridge(st.bridge_url, BRIDGE_TOKEN)
    bridge.put_settings(max_sessions=args.sessions + 500, max_guests=50, guest_rate_limit=0,
                        max_sessions_per_user=3)
    bproc = bridge_process(st)
    rss0 = bproc.memory_info().rss if bproc else 0

    hub = requests.Session()
    hub.headers["Authorization"] = f"token {HUB_TOKEN}"
    hub_api = f"{st.hub_url}/hub/api"

    def bare_noop(i):
        t0 = time.perf_counter()
        hub.post(f"{hub_api}/users/bare-{i}", timeout=60).raise_for_status()
        r = hub.post(f"{hub_api}/users/bare-{i}/servers/s", json={}, timeout=60)
        while r.status_code == 202:
            r = hub.get(f"{hub_api}/users/bare-{i}", timeout=60)
            if (r.json().get("servers") or {}).get("s", {}).get("ready"):
                break
            time.sleep(0.005)
        return time.perf_counter() - t0

    # Every 100 sessions, 20 launches one at a time are measured, with a bare
    # hub spawn after every second; the other 80 only fill, 8 at a time.
    log(f"  {args.sessions} sessions through the bridge; at every 100, 20 measured "
        "one at a time and 10 bare hub REST spawns of the same spawner")
    latencies, levels, bare, codes, measured = [], [], [], {}, []
    local = threading.local()
    scale_start = time.time()

    def fill(i):
        if not hasattr(local, "bridge"):
            local.bridge = Bridge(st.bridge_url, BRIDGE_TOKEN)
        return local.bridge.launch(f"dataset-{i % 50}", kind="user", user_id=f"user{i}").status_code

    deadline = time.monotonic() + args.scale_budget
    i = 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        while i < args.sessions:
            level = i
            for k in range(min(20, args.sessions - i)):
                started = time.time()
                t0 = time.perf_counter()
                r = bridge.launch(f"dataset-{i % 50}", kind="user", user_id=f"user{i}")
                latencies.append(time.perf_counter() - t0)
                levels.append(level)
                if r.status_code in (200, 201):
                    measured.append((started, r.json()["hub_user"], r.json()["server_name"]))
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
                if k % 2 == 0:
                    bare.append(bare_noop(i))
                i += 1
            upto = min(level + 100, args.sessions)
            for code in pool.map(fill, range(i, upto)):
                codes[code] = codes.get(code, 0) + 1
            i = upto
            log(f"    {i} sessions; measured at {level}: p50 "
                f"{summary(latencies[-20:])['p50'] * 1000:.0f} ms")
            if time.monotonic() > deadline:
                log(f"    stopping at {i} sessions: the time budget is spent")
                break
    live = len(bridge.sessions())
    rss1 = bproc.memory_info().rss if bproc else 0
    own = bridge_own_time(st.hub_log, scale_start, measured)

    n_cap, n_req = 50, 200
    log(f"  exact cap: max_guests={n_cap}, {n_req} concurrent guest launches")

    def guest(i):
        return (i, Bridge(st.bridge_url, BRIDGE_TOKEN))

    def fire(ib):
        i, b = ib
        return b.launch("cap-dataset", kind="guest", user_id=f"g-{i}",
                        client_ip=f"10.0.{i // 250}.{i % 250}").status_code

    statuses, cap_elapsed = simultaneously(n_req, guest, fire)
    counts = {str(k): statuses.count(k) for k in sorted(set(statuses))}
    cap = bridge.call("GET", "/api/capacity").json()
    guest_servers, offset = 0, 0
    while True:  # the hub pages its user list (at most 200 a page)
        page = hub.get(f"{hub_api}/users", params={"offset": offset, "limit": 200},
                       timeout=60).json()
        guest_servers += sum(len(u.get("servers") or {}) for u in page
                             if u["name"].startswith("guest-"))
        if len(page) < 200:
            break
        offset += len(page)
    results["scale"] = {
        "sessions_launched": i, "sessions_measured": len(latencies), "sessions_live": live,
        "status_codes": codes,
        "bridge_post": summary(latencies),
        "bridge_post_first_100": summary([x for x, lv in zip(latencies, levels) if lv < 100]),
        "bridge_post_last_100": summary([x for x, lv in zip(latencies, levels)
                                         if lv >= max(levels) - 99]),
        "levels": levels,
        "bare_hub_spawn": summary(bare),
        "overhead_p50": (summary(latencies)["p50"] or 0) - (summary(bare)["p50"] or 0),
        "bridge_own": summary(own),
        "bridge_rss_mib": {"before": rss0 / MiB, "after": rss1 / MiB},
        "latencies": latencies,
        "cap": {"max_guests": n_cap, "requests": n_req, "status_counts": counts,
                "seconds": cap_elapsed, "guests_active": cap["guests"]["active"],
                "hub_guest_servers": guest_servers,
                "exact": counts.get("201", 0) == n_cap and counts.get("429", 0) == n_req - n_cap
                and guest_servers == n_cap},
    }
    if set(counts) - {"201", "429"}:
        results["scale"]["cap"]["log_excerpt"] = _excerpt(st.hub_log, (" 500 ", "Traceback"))
    log(f"  cap: {counts}; hub guest servers {guest_servers}")
    st.stop()
    if not args.keep:
        shutil.rmtree(st.directory, ignore_errors=True)


def bridge_own_time(hub_log: Path, since: float, measured) -> list[float]:
    """For launches made one at a time: the bridge's time outside its calls
    to the hub (before it creates the hub user, and after the hub answered
    the spawn), from the timestamps in the hub's log."""
    lines = launch_profile.read_log(hub_log, since)
    out = []
    for started, user, server in measured:
        m = launch_profile.marks(lines, user, server, started, None)
        if all(k in m for k in ("bridge_in", "user_create", "spawn_answer", "bridge_out")):
            out.append((m["user_create"] - m["bridge_in"]) + (m["bridge_out"] - m["spawn_answer"]))
    return out


def _excerpt(path: Path, needles, context: int = 15, limit: int = 3) -> list[str]:
    lines = path.read_text(errors="replace").splitlines()
    out = []
    for i, line in enumerate(lines):
        if any(n in line for n in needles) and "KeyboardInterrupt" not in "".join(lines[i:i + 20]):
            out.append("\n".join(lines[max(0, i - 3):i + context]))
            if len(out) >= limit:
                break
    return out


# -- the machine ------------------------------------------------------------

def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import jupyterhub
    import jupyterlab

    return {
        "host": platform.node(), "cpu": cpu, "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / GiB, 1),
        "load_at_start": os.getloadavg(), "python": platform.python_version(),
        "jupyterhub": jupyterhub.__version__, "jupyterlab": jupyterlab.__version__,
        "kernel": platform.release(),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--launches", type=int, default=10, help="sequential launches per kind (10)")
    p.add_argument("--sessions", type=int, default=1000, help="simulated sessions (1000)")
    p.add_argument("--scale-budget", type=float, default=300,
                   help="seconds allowed for the simulated sessions (300)")
    p.add_argument("--no-scale", action="store_true", help="skip the simulated scale run")
    p.add_argument("--no-big", action="store_true", help="skip the 1 GiB preload")
    p.add_argument("--no-docker", action="store_true", help="skip the docker spawner")
    p.add_argument("--docker-launches", type=int, default=10,
                   help="sequential launches per kind with the docker spawner (10)")
    p.add_argument("--only", default="",
                   help="comma-separated: cold,warm,simultaneous,pool,big,docker,scale")
    p.add_argument("--keep", action="store_true", help="keep .bench-stack/ for inspection")
    args = p.parse_args(argv)
    only = set(filter(None, args.only.split(",")))

    def wanted(name):
        return not only or name in only

    signal.signal(signal.SIGTERM, _raise_interrupt)
    started = dt.datetime.now(dt.timezone.utc)
    results = {"started": started.isoformat(timespec="seconds"), "machine": machine(),
               "args": vars(args), "errors": []}
    stacks: list = []
    portal = None
    code = 0
    try:
        if any(wanted(x) for x in ("cold", "warm", "simultaneous", "pool", "big", "docker")):
            portal = PortalBench(args, results)
            stacks.append(portal)
            portal.start()
            steps = [("cold", portal.second_launch_bytes), ("cold", portal.cold),
                     ("warm", portal.warm), ("simultaneous", portal.simultaneous),
                     ("pool", portal.simultaneous_pool)]
            if not args.no_big:
                steps.append(("big", portal.big_preload))
            if not args.no_docker:
                steps.append(("docker", portal.docker))
            for name, step in steps:
                if wanted(name):
                    _guarded(step, results)
            portal.stop()
        if not args.no_scale and wanted("scale"):
            _guarded(lambda: scale(args, results, stacks), results)
        if args.no_docker:
            results["docker"] = {"run": False, "note": "skipped (--no-docker)"}
    except KeyboardInterrupt:
        log("interrupted; stopping everything")
        results["errors"].append("interrupted")
        code = 130
    except Exception as e:
        traceback.print_exc()
        results["errors"].append(f"{type(e).__name__}: {e}")
        code = 1
    finally:
        for st in stacks:
            try:
                st.stop()
            except Exception:
                traceback.print_exc()
        if not args.keep:
            shutil.rmtree(BENCH_DIR, ignore_errors=True)
    results["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    results["targets"] = report.targets(results)
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    stem = started.strftime("%Y-%m-%d-%H%M")
    (out_dir / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str))
    report.chart(results, out_dir / f"{stem}.png")
    print(report.table(results))
    print(f"\nresults: {out_dir / (stem + '.json')}\nchart:   {out_dir / (stem + '.png')}")
    return code


def _guarded(step, results) -> None:
    """A failing measurement is recorded, and the others still run."""
    try:
        step()
    except KeyboardInterrupt:
        raise
    except Exception as e:
        traceback.print_exc()
        results["errors"].append(f"{getattr(step, '__name__', 'step')}: {type(e).__name__}: {e}")


if __name__ == "__main__":
    sys.exit(main())
