#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Turns the guest output of harness/guest/bench.sh into numbers.

bench.py RESULTS_LOG OUT_DIR [--machine TEXT] [--kernel TEXT]

Writes OUT_DIR/results.json (every measurement) and OUT_DIR/report.md
(a table with min/median/max, the ratios the targets are about, and
whether each target is met), and prints the report.
"""
import datetime
import json
import re
import statistics
import sys

MIB = 1024.0


def parse(path):
    """fio results per workload name (in order, and by round), and the
    BENCH key/value lines."""
    runs, rounds, extra = {}, {}, {"mem": {}}
    block, name, round_ = None, None, None
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\r\n")
            m = re.match(r"BENCH-FIO-BEGIN (\S+) (\d+)", line)
            if m:
                name, round_, block = m.group(1), int(m.group(2)), []
                continue
            if line.startswith("BENCH-FIO-END") and block is not None:
                text = "\n".join(block)
                start = text.find("{")
                try:
                    result = json.loads(text[start:])
                    runs.setdefault(name, []).append(result)
                    rounds.setdefault(name, {})[round_] = result
                except ValueError:
                    print(f"bench: unparsable fio output for {name}", file=sys.stderr)
                block = None
                continue
            if block is not None:
                block.append(line)
                continue
            m = re.match(r"BENCH mem (\S+) (.*)", line)
            if m:
                extra["mem"][m.group(1)] = {
                    k: int(v) for k, v in (kv.split("=") for kv in m.group(2).split())
                }
                continue
            m = re.match(r"BENCH (\S+) (.*)", line)
            if m:
                extra[m.group(1)] = m.group(2)
    return runs, rounds, extra


def job(result):
    return result["jobs"][0]


def write_mib_s(r):
    return job(r)["write"]["bw"] / MIB


def read_mib_s(r):
    return job(r)["read"]["bw"] / MIB


def write_iops(r):
    return job(r)["write"]["iops"]


def copy_ceiling_mib_s(r):
    """A third of what three concurrent streams moved: the rate of each
    if they moved equal amounts, as a first write's three transfers do."""
    return sum(j["read"]["bw"] + j["write"]["bw"] for j in r["jobs"]) / 3 / MIB


def max_write_lat_ms(r):
    return job(r)["write"]["lat_ns"]["max"] / 1e6


def spread(values):
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "n": len(values),
    }


METRICS = {
    "raw_write": (write_mib_s, "MiB/s", "sequential write, raw original"),
    "tracked_write": (write_mib_s, "MiB/s", "sequential write, change tracking only"),
    "copy_ceiling": (copy_ceiling_mib_s, "MiB/s",
                     "first-write ceiling: a third of read + store + write streams at once"),
    "cow_first_write": (write_mib_s, "MiB/s", "sequential first write, blksnap"),
    "cow_first_write_q64": (write_mib_s, "MiB/s",
                            "sequential first write, blksnap, chunk_maximum_in_queue=64"),
    "dm_first_write": (write_mib_s, "MiB/s", "sequential first write, dm-snapshot"),
    "cow_rewrite": (write_mib_s, "MiB/s", "rewrite of copied chunks, blksnap"),
    "dm_rewrite": (write_mib_s, "MiB/s", "rewrite of copied chunks, dm-snapshot"),
    "orig_read": (read_mib_s, "MiB/s", "sequential read, original, no filter"),
    "orig_read_snap": (read_mib_s, "MiB/s", "sequential read, original, snapshot taken"),
    "image_read": (read_mib_s, "MiB/s", "sequential read, blksnap image"),
    "dm_image_read": (read_mib_s, "MiB/s", "sequential read, dm-snapshot image"),
    "file_first_write": (write_mib_s, "MiB/s", "sequential first write, blksnap, file storage"),
    "file_written_first_write": (write_mib_s, "MiB/s",
                                 "sequential first write, blksnap, file written beforehand"),
    "file_rewrite": (write_mib_s, "MiB/s", "rewrite of copied chunks, blksnap, file storage"),
    "file_image_read": (read_mib_s, "MiB/s", "sequential read, blksnap image, file storage"),
    "raw_randwrite": (write_iops, "IOPS", "random 4K write, raw original"),
    "cow_randwrite": (write_iops, "IOPS", "random 4K write, blksnap"),
    "dm_randwrite": (write_iops, "IOPS", "random 4K write, dm-snapshot"),
    "lat_no_take": (max_write_lat_ms, "ms", "worst 4K write latency, no take"),
    "lat_take": (max_write_lat_ms, "ms", "worst 4K write latency across a take"),
}


def main():
    args = sys.argv[1:]
    opts = {}
    while len(args) > 2 and args[-2].startswith("--"):
        opts[args[-2][2:]] = args[-1]
        args = args[:-2]
    log, out = args[0], args[1]
    runs, rounds, extra = parse(log)

    table = {}
    for name, (fn, unit, what) in METRICS.items():
        if name in runs:
            table[name] = dict(spread([fn(r) for r in runs[name]]), unit=unit, what=what)

    def med(name):
        return table[name]["median"] if name in table else float("nan")

    def per_round(num, den):
        """The ratio within each round: both workloads ran minutes apart at
        most, so host drift between rounds cancels out."""
        top, bottom = METRICS[num][0], METRICS[den][0]
        both = sorted(set(rounds.get(num, {})) & set(rounds.get(den, {})))
        return [top(rounds[num][r]) / bottom(rounds[den][r]) for r in both]

    # The targets are judged on the ratio of the medians; the spread of the
    # per-round ratios shows how far one boot's verdict can be trusted.
    pairs = {
        "tracking / raw write": ("tracked_write", "raw_write", ">= 0.97"),
        "COW first write / raw write": ("cow_first_write", "raw_write", ">= 0.45"),
        "COW first write / dm-snapshot": ("cow_first_write", "dm_first_write", ">= 1.00"),
        "rewrite / raw write": ("cow_rewrite", "raw_write", ">= 0.95"),
        # The original read right after the image read, with the snapshot
        # in place: what a backup competes with, under the same host state.
        "image read / original read": ("image_read", "orig_read_snap", ">= 0.90"),
        "random 4K / dm-snapshot": ("cow_randwrite", "dm_randwrite", ">= 1.00"),
        # Storage in a file on ext4 against sector ranges of the same disk.
        "file / ranges: first write": ("file_first_write", "cow_first_write", ">= 0.90"),
        "file / ranges: rewrite": ("file_rewrite", "cow_rewrite", ">= 0.90"),
        "file / ranges: image read": ("file_image_read", "image_read", ">= 0.90"),
    }
    ratios = {label: (med(num) / med(den), rule) for label, (num, den, rule) in pairs.items()}
    round_ratios = {label: per_round(num, den) for label, (num, den, _) in pairs.items()}
    mem = extra.get("mem", {})
    memory = {}
    if "before" in mem and "taken" in mem:
        def total(stage):
            return mem[stage]["slab_kib"] + mem[stage]["vmalloc_kib"]
        memory["taken_nothing_written_kib"] = total("taken") - total("before")
        if "written_1g" in mem:
            memory["written_1g_kib"] = total("written_1g") - total("taken")
        if "small_chunks_written" in mem and "small_chunks" in extra:
            # 4 KiB chunks on the original: one chunk copied per 4 KiB.
            chunks = int(extra["small_chunks"])
            grown = total("small_chunks_written") - total("small_chunks_taken")
            memory["small_chunks_copied"] = chunks
            memory["bytes_per_changed_chunk"] = grown * 1024.0 / chunks
        if "released" in mem:
            memory["left_after_release_kib"] = total("released") - total("before")
    lat = med("lat_take")

    def round_spread(label):
        values = round_ratios.get(label)
        return f"{min(values):.2f}-{max(values):.2f}" if values else ""

    targets = []
    for label, (value, rule) in ratios.items():
        limit = float(rule.split()[1])
        targets.append((label, f"{value:.2f}", round_spread(label), rule, value >= limit))
    if memory:
        v = memory["taken_nothing_written_kib"]
        targets.append(("memory, 1 TiB, snapshot taken, nothing written",
                        f"{v / 1024:.1f} MiB", "", "<= 8 MiB", v <= 8 * 1024))
        if "bytes_per_changed_chunk" in memory:
            v = memory["bytes_per_changed_chunk"]
            targets.append(("memory per changed chunk", f"{v:.0f} B", "", "<= 64 B", v <= 64))
    targets.append(("writes blocked by a take (worst latency)", f"{lat:.1f} ms",
                    f"{table['lat_take']['min']:.1f}-{table['lat_take']['max']:.1f} ms"
                    if "lat_take" in table else "", "<= 100 ms", lat <= 100))

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    results = {
        "date": stamp,
        "kernel": opts.get("kernel", ""),
        "machine": opts.get("machine", ""),
        "measurements": table,
        "ratios": {k: v[0] for k, v in ratios.items()},
        "ratios_per_round": round_ratios,
        "memory": memory,
        "memory_raw": mem,
        "targets": [{"what": t[0], "value": t[1], "per_round": t[2], "target": t[3], "met": t[4]}
                    for t in targets],
    }
    lines = [
        "# blksnap benchmark",
        "",
        f"Measured {stamp} on {opts.get('machine', 'unknown machine')}; "
        f"kernel {opts.get('kernel', 'unknown')}. One QEMU/TCG boot of the product kernel "
        "(plus dm-snapshot); fio with O_DIRECT and libaio; two equal virtio disks "
        "(original, storage); every number is the median of the runs, with the spread.",
        "",
        "| workload | unit | min | median | max | runs |",
        "|---|---|---|---|---|---|",
    ]
    for name, t in table.items():
        lines.append(f"| {t['what']} | {t['unit']} | {t['min']:.1f} | {t['median']:.1f} | "
                     f"{t['max']:.1f} | {t['n']} |")
    lines += ["", "Targets are judged on medians; the per-round column is the spread of the "
              "same ratio taken within each round.", "",
              "| target | measured | per round | wanted | met |", "|---|---|---|---|---|"]
    for what, value, spread_, rule, ok in targets:
        lines.append(f"| {what} | {value} | {spread_} | {rule} | {'yes' if ok else 'NO'} |")
    if "orig_read_snap" in table and "orig_read" in table:
        results["ratios"]["original read, snapshot taken / no filter"] = (
            med("orig_read_snap") / med("orig_read"))
        lines += ["", "Image reads are compared with the original read right after them, "
                  "with the snapshot in place; the original read without any filter runs "
                  "earlier in each round. Image read / original read without filter: "
                  f"{med('image_read') / med('orig_read'):.2f}; original read, snapshot "
                  f"taken / no filter: {med('orig_read_snap') / med('orig_read'):.2f}."]
    if "copy_ceiling" in table:
        ceiling = med("copy_ceiling")
        results["ratios"]["copy ceiling / raw write"] = ceiling / med("raw_write")
        results["ratios"]["COW first write / copy ceiling"] = med("cow_first_write") / ceiling
        lines += ["", "Where the first-write limit sits on this machine: the transfers a "
                  "first write needs (read the old chunk, store it, write the new data) "
                  "run as three concurrent fio streams without any snapshot; a third of "
                  "their total is the most a first write can reach. "
                  f"Ceiling / raw write: {ceiling / med('raw_write'):.2f}; "
                  f"blksnap first write / ceiling: {med('cow_first_write') / ceiling:.2f}; "
                  f"dm-snapshot first write / ceiling: {med('dm_first_write') / ceiling:.2f}."]
        if "cow_first_write_q64" in table:
            deep = med("cow_first_write_q64")
            results["ratios"]["COW first write, 64 chunks in memory / copy ceiling"] = (
                deep / ceiling)
            lines[-1] += (" With chunk_maximum_in_queue=64 (four times the default bound "
                          "on loaded chunks in memory), blksnap first write / ceiling: "
                          f"{deep / ceiling:.2f}, / raw write: {deep / med('raw_write'):.2f}.")
    if "file_written_first_write" in table and "file_first_write" in table:
        written = med("file_written_first_write")
        results["ratios"]["file written beforehand / ranges: first write"] = (
            written / med("cow_first_write"))
        values = per_round("file_written_first_write", "cow_first_write")
        lines += ["", "File storage and first writes: the file the module grows gets "
                  "unwritten extents (fallocate; the storage disk has no write-zeroes that "
                  "unmaps, so FALLOC_FL_WRITE_ZEROES is refused), which the file system "
                  "converts once per write; chunks that follow one another in the file are "
                  "stored as one write of up to 4 MiB.  Into a named file written in full "
                  "beforehand (nothing to convert), file / ranges first write: "
                  f"{written / med('cow_first_write'):.2f}"
                  + (f" ({min(values):.2f}-{max(values):.2f} per round)" if values else "")
                  + f", against {med('file_first_write') / med('cow_first_write'):.2f} "
                  "with the file grown by the module."]
    if memory:
        lines += ["", "Memory (slab + vmalloc, KiB): " +
                  ", ".join(f"{k} {v:.0f}" for k, v in memory.items())]
    with open(f"{out}/results.json", "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    report = "\n".join(lines) + "\n"
    with open(f"{out}/report.md", "w") as f:
        f.write(report)
    print(report)


if __name__ == "__main__":
    main()
