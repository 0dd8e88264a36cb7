#!/usr/bin/env bash
# Measures the embedded engine against the disk's physical limits, in one run, on one disk:
#   1. fio: sequential O_DIRECT write bandwidth (io_uring, 1 MiB blocks, queue depth 8)
#   2. fio: 64 KiB write + fdatasync latency
#   3. rill-bench on the bundled 1-topic-16-partitions-1kb workload at its 50,000 msg/s and at
#      max rate (producerRate: 0), in buffer and sync modes
# and prints a markdown table with the ratios (also written to $OUT/summary.md).
#
# Usage: scripts/bench-embedded.sh            (DURATION=20 WARMUP=5 FIO_SECONDS=15 by default)
#        BENCH_DIR=/path/on/the/disk/to/test scripts/bench-embedded.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20}
WARMUP=${WARMUP:-5}
FIO_SECONDS=${FIO_SECONDS:-15}
BENCH_DIR=${BENCH_DIR:-$PWD/target/bench-embedded/data}
OUT=${OUT:-$PWD/target/bench-embedded}
mkdir -p "$BENCH_DIR" "$OUT"

if ! command -v fio >/dev/null 2>&1; then
  echo "fio is missing: installing it from the Debian packages" >&2
  if [ "$(id -u)" = 0 ]; then apt-get install -y fio >&2; else sudo apt-get install -y fio >&2; fi
fi
command -v python3 >/dev/null || { echo "python3 is needed to read the JSON results" >&2; exit 1; }

echo "== fio: sequential write, O_DIRECT, io_uring, 1 MiB, iodepth 8 ($FIO_SECONDS s)" >&2
fio --name=seqwrite --directory="$BENCH_DIR" --rw=write --bs=1M --iodepth=8 --ioengine=io_uring \
    --direct=1 --size=2G --runtime="$FIO_SECONDS" --time_based --output-format=json \
    --output="$OUT/fio-seqwrite.json" >/dev/null
rm -f "$BENCH_DIR"/seqwrite*

echo "== fio: 64 KiB write + fdatasync ($FIO_SECONDS s)" >&2
fio --name=fsync --directory="$BENCH_DIR" --rw=write --bs=64k --ioengine=sync --fdatasync=1 \
    --size=256M --runtime="$FIO_SECONDS" --time_based --output-format=json \
    --output="$OUT/fio-fsync.json" >/dev/null
rm -f "$BENCH_DIR"/fsync*

cargo build --release -p rill-bench >&2
BENCH=target/release/rill-bench
WORKLOADS=bench-harness/workloads
for durability in buffer sync; do
  echo "== rill-bench: 1-topic-16-partitions-1kb at 50,000 msg/s, $durability" >&2
  "$BENCH" run --workload "$WORKLOADS/1-topic-16-partitions-1kb.yaml" --durability "$durability" \
      --duration "$DURATION" --warmup "$WARMUP" --data-dir "$BENCH_DIR/rill-50k-$durability" \
      --json "$OUT/rill-50k-$durability.json" >&2
  rm -rf "$BENCH_DIR/rill-50k-$durability"
  echo "== rill-bench: max-rate-1-topic-16-partitions-1kb, $durability" >&2
  "$BENCH" run --workload "$WORKLOADS/max-rate-1-topic-16-partitions-1kb.yaml" --durability "$durability" \
      --duration "$DURATION" --warmup "$WARMUP" --data-dir "$BENCH_DIR/rill-max-$durability" \
      --json "$OUT/rill-max-$durability.json" >&2
  rm -rf "$BENCH_DIR/rill-max-$durability"
done

python3 - "$OUT" <<'PY' | tee "$OUT/summary.md"
import json, sys, os, platform, datetime
out = sys.argv[1]
load = lambda name: json.load(open(os.path.join(out, name)))
seq = load("fio-seqwrite.json")["jobs"][0]["write"]
fsync = load("fio-fsync.json")["jobs"][0]
fio_mb_s = seq["bw_bytes"] / 2**20  # MiB/s, the unit rill-bench reports as MB
sync_p = fsync["sync"]["lat_ns"]["percentile"]
write_p = fsync["write"]["clat_ns"]["percentile"]
def pct(p, key): return p.get(key, 0) / 1000.0
fsync_p50 = pct(sync_p, "50.000000") + pct(write_p, "50.000000")
fsync_p99 = pct(sync_p, "99.000000") + pct(write_p, "99.000000")
print(f"Measured {datetime.date.today()} on {platform.node()} ({os.cpu_count()} cores), data in {os.environ.get('BENCH_DIR', 'target/bench-embedded/data')}.\n")
print("| physical limit (fio, same run) | value |")
print("|---|---|")
print(f"| sequential write, O_DIRECT, io_uring, 1 MiB, QD 8 | {fio_mb_s:.0f} MiB/s |")
print(f"| 64 KiB write + fdatasync, p50 / p99 | {fsync_p50:.0f} / {fsync_p99:.0f} µs |")
print()
print("| run | publish msg/s | publish MiB/s | × fio bw | publish p50 / p99 / p99.9 / max (µs) | e2e p50 / p99 / p99.9 (µs) | publish p99 ÷ fio fsync p99 | consumed / expected | errors |")
print("|---|---|---|---|---|---|---|---|---|")
for name in ["rill-50k-buffer", "rill-50k-sync", "rill-max-buffer", "rill-max-sync"]:
    r = load(name + ".json")
    p, e = r["publish"]["latency_us"], r["end_to_end_latency_us"]
    mb = r["publish"]["mb_per_sec"]
    print(f"| {name} | {r['publish']['msgs_per_sec']:.0f} | {mb:.1f} | {mb / fio_mb_s:.2f} | "
          f"{p['p50']:.0f} / {p['p99']:.0f} / {p['p999']:.0f} / {p['max']:.0f} | "
          f"{e['p50']:.0f} / {e['p99']:.0f} / {e['p999']:.0f} | {p['p99'] / fsync_p99:.2f} | "
          f"{r['consume']['messages']} / {r.get('expected_consume_messages', '?')} | {r['errors']} |")
PY
