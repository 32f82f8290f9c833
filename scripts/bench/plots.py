"""PNG plots of a bench.py results dict (matplotlib, Agg backend)."""

from pathlib import Path

SYS_COLORS = {"hicached": "#1f77b4", "hicached-shm": "#2ca02c", "hicachefile": "#d62728",
              "hicached-nodc": "#7f7f7f"}


def make(data, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    rows, lim = data["rows"], data["limits"]
    for r in rows:  # the one-client hot run (older results named it "hot")
        if r["phase"] == "hot" and r["ranks"] == 1 and r["cfg"].startswith("mha"):
            r["phase"] = "hot-1"
    stores = sorted({r["store"] for r in rows}, key=lambda s: s != "local")
    systems = [s for s in SYS_COLORS if any(r["system"] == s for r in rows)]

    # 1. MHA 1 MiB, 4 ranks: GB/s per phase and system, one panel per store
    phases = ["backup", "cold", "hot", "hot-1"]
    fig, axes = plt.subplots(1, len(stores), figsize=(6 * len(stores), 4), squeeze=False)
    for ax, st in zip(axes[0], stores):
        w = 0.8 / max(1, len(systems))
        for i, sysn in enumerate(systems):
            ys = []
            for ph in phases:
                m = [r for r in rows if r["store"] == st and r["system"] == sysn and r["cfg"] == "mha-1M" and r["phase"] == ph]
                ys.append(m[0]["gbps"] if m else 0)
            ax.bar([x + i * w for x in range(len(phases))], ys, w, label=sysn, color=SYS_COLORS[sysn])
        f = lim.get("fio", {}).get(f"{st}-1M")
        if f:
            ax.axhline(f["read_gbps"], ls="--", color="green", label="fio seq read (cold)")
            ax.axhline(f["write_gbps"], ls=":", color="orange", label="fio seq write")
        if lim.get("memcpy_gbps"):
            ax.axhline(lim["memcpy_gbps"], ls="-.", color="black", label="memcpy, one core")
        ax.set_xticks([x + 0.4 - w / 2 for x in range(len(phases))])
        ax.set_xticklabels(["backup", "cold prefetch", "hot prefetch", "hot, 1 client"])
        ax.set_ylabel("GB/s (all ranks)")
        ax.set_title(f"{st}: MHA, 4 ranks, 1 MiB pages")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "throughput_1m.png", dpi=110)
    plt.close(fig)

    # 2. GB/s against page size (backup, cold), per store
    cfgs = [c for c in ("mha-256K", "mha-1M", "mha-4M") if any(r["cfg"] == c for r in rows)]
    if len(cfgs) > 1:
        fig, axes = plt.subplots(1, len(stores), figsize=(6 * len(stores), 4), squeeze=False)
        for ax, st in zip(axes[0], stores):
            for sysn in systems:
                for ph, ls in (("backup", "-"), ("cold", "--")):
                    ys = []
                    for c in cfgs:
                        m = [r for r in rows if r["store"] == st and r["system"] == sysn and r["cfg"] == c and r["phase"] == ph]
                        ys.append(m[0]["gbps"] if m else float("nan"))
                    ax.plot([c[4:] for c in cfgs], ys, ls, marker="o", color=SYS_COLORS[sysn], label=f"{sysn} {ph}")
            ax.set_yscale("log")
            ax.set_xlabel("page size (per rank)")
            ax.set_ylabel("GB/s (4 ranks)")
            ax.set_title(f"{st}: backup (solid) and cold prefetch (dashed)")
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "page_size.png", dpi=110)
        plt.close(fig)

    # 3. exists of 128 keys vs the socket round trip
    if "exists_1client" in lim:
        labels = ["C RTT\n(C echo)", "Python RTT\n(C echo)", "hicached ping\n(Python client)",
                  "batch_exists 128\n(HiCacheJuiceFS)"]
        vals = [lim["rtt_c"], lim["rtt_python"], lim["ping_python"], lim["exists_1client"]]
        fig, ax = plt.subplots(figsize=(7, 4))
        xs = range(len(labels))
        ax.bar([x - 0.2 for x in xs], [v["p50_us"] for v in vals], 0.4, label="p50")
        ax.bar([x + 0.2 for x in xs], [v["p99_us"] for v in vals], 0.4, label="p99")
        ax.axhline(2 * lim["rtt_python"]["p99_us"], ls="--", color="red", label="target: 2x Python RTT p99")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylabel("microseconds")
        ax.set_title("one client, 128-key exists vs a bare Unix-socket round trip")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "exists_latency.png", dpi=110)
        plt.close(fig)

    # 4. MLA, 8 ranks: storage bytes relative to the data
    mla = [r for r in rows if r["cfg"].startswith("mla")]
    if mla:
        fig, axes = plt.subplots(1, len(stores), figsize=(6 * len(stores), 4), squeeze=False)
        for ax, st in zip(axes[0], stores):
            xs, wr, rd, dv = [], [], [], []
            for sysn in systems:
                b = [r for r in mla if r["store"] == st and r["system"] == sysn and r["phase"] == "backup"]
                c = [r for r in mla if r["store"] == st and r["system"] == sysn and r["phase"] == "cold"]
                if not b or not c:
                    continue
                data_bytes = b[0]["bytes"] or 1
                xs.append(sysn)
                wr.append(b[0].get("hc_bytes_written", b[0].get("store_growth", 0)) / data_bytes)
                rd.append(c[0].get("hc_bytes_read_storage", 0) / data_bytes)
                dv.append(c[0]["dev_read"] / data_bytes)
            x = range(len(xs))
            ax.bar([i - 0.27 for i in x], wr, 0.27, label="written / data (daemon counter or files)")
            ax.bar(list(x), rd, 0.27, label="daemon storage reads / data (cold)")
            ax.bar([i + 0.27 for i in x], dv, 0.27, label="block-device reads / data (cold, whole machine)")
            ax.axhline(1, ls="--", color="green")
            ax.set_xticks(range(len(xs)))
            ax.set_xticklabels(xs)
            ax.set_title(f"{st}: MLA, 8 ranks (rank 0 writes, all read)")
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "mla_bytes.png", dpi=110)
        plt.close(fig)
