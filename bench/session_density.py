"""Resident memory per idle session in one session-host process, for N = 100, 500 and 1,000 sessions.

Each (provider, N) runs in a fresh child process so figures don't mix:
- simulator: N SimulatorProvider clients started and waiting for a QR scan (their QR timers armed on the
  shared clock thread) — what a host holding N unlinked sessions carries;
- neonize: N neonize clients created (NewClient with its own per-session sqlite store) but not connected —
  connecting needs WhatsApp's servers, which this machine cannot reach.
The baseline is measured in the same child after imports (neonize's ~54 MiB import is a per-process cost, not
per session), so per-session = (RSS after N − baseline) / N. Last line: one JSON object with the figures.
"""
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COUNTS = (100, 500, 1000)


def rss_mib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def child(kind, count):
    sys.path.insert(0, str(ROOT))
    from whatsapp.providers.base import ProviderSettings

    events = []
    store_dir = tempfile.mkdtemp(prefix=f"density-{kind}-")
    settings = ProviderSettings()
    if kind == "simulator":
        from whatsapp.providers.simulator import SimulatorProvider, default_scheduler

        default_scheduler()
        gc.collect()
        baseline = rss_mib()
        clients = [SimulatorProvider(f"t_bench:{i}", emit=events.append, settings=settings, store_dir=store_dir)
                   for i in range(count)]
        for client in clients:
            client.start()
        time.sleep(1.0)  # every client has shown its first QR code
        assert sum(1 for e in events if e.kind == "qr") == count, "not every client reached its QR"
    else:
        from whatsapp.providers import neonize as adapter

        nz = adapter._nz()  # the import, its log thread and the Go library: per process, not per session
        gc.collect()
        baseline = rss_mib()
        client_class = adapter._make_client_class(nz)
        clients = [client_class(adapter.store_path(store_dir, f"t_bench:{i}"), f"t_bench:{i}", new_device=True)
                   for i in range(count)]
    gc.collect()
    after = rss_mib()
    print(json.dumps({"kind": kind, "count": count, "baseline_mib": round(baseline, 1),
                      "after_mib": round(after, 1), "per_session_mib": round((after - baseline) / count, 3)}))
    os._exit(0)  # don't wait for provider threads


def main():
    results = {}
    for kind in ("simulator", "neonize"):
        for count in COUNTS:
            out = subprocess.run([sys.executable, __file__, "--child", kind, str(count)], capture_output=True,
                                 text=True, timeout=600, cwd=ROOT)
            lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
            if out.returncode != 0 or not lines:
                print(f"{kind} x{count}: failed\n{out.stderr[-2000:]}")
                results[f"{kind}_{count}_per_session_mib"] = None
                continue
            figures = json.loads(lines[-1])
            print(f"{kind:9s} {count:5d} sessions: RSS {figures['baseline_mib']:.1f} → {figures['after_mib']:.1f} MiB, "
                  f"{figures['per_session_mib']:.3f} MiB per session")
            results[f"{kind}_{count}_per_session_mib"] = figures["per_session_mib"]
    print("target: <= 5 MB per session")
    print(json.dumps({"bench": "session_density", **results}))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
    else:
        main()
