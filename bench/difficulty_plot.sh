#!/usr/bin/env bash
# Vardiff in a real run (SPEC §8; docs/difficulty.md, "A real run"): one kupool-server with
# -vardiff_target T and a job every I, one demo kupool-client hashing at a fixed -hashrate H for
# a few minutes. Every job's difficulty and every accepted share's interval come from the
# client's JSON log (the lines a user reads in text); gnuplot draws both over time, with the
# target, and the band SPEC §8 requires (D within 0.72..2.16 x H x T, i.e. a median share
# interval ln 2 x D / H within ±50% of T), into docs/difficulty.png. Prints what it saw.
#
#   bench/difficulty_plot.sh [MINUTES]                      (default 8)
#   TARGET=10s INTERVAL=10s HASHRATE=50000 START=1          the run (defaults shown)
#   OUT=docs/difficulty.png BUILD_DIR=build-bench KEEP=dir  where things go (KEEP: the logs)
#
# Cheap: at 50,000 hashes/s the client uses a few percent of a core. Installs gnuplot-nox
# through scripts/deps.sh --bench when it is missing (root needed only then).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-8}
target=${TARGET:-10s}
interval=${INTERVAL:-10s}
hashrate=${HASHRATE:-50000}
start_d=${START:-1}
out=${OUT:-docs/difficulty.png}
build=${BUILD_DIR:-build-bench}

scripts/deps.sh --bench
[[ -f $build/CMakeCache.txt ]] || cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DKP_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j2 --target kupool-server kupool-client >/dev/null

work=$(mktemp -d /tmp/kupool-plot.XXXXXX)
server_pid=
client_pid=
cleanup() {
  if [[ -n $client_pid ]]; then kill "$client_pid" 2>/dev/null || true; fi
  if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  if [[ -n ${KEEP:-} ]]; then mkdir -p "$KEEP" && cp "$work"/* "$KEEP"/; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$build/kupool-server" -addr 127.0.0.1:0 -interval "$interval" -vardiff_target "$target" \
  -difficulty "$start_d" >"$work/server.log" 2>&1 &
server_pid=$!
port=
for _ in $(seq 100); do
  port=$(sed -n 's/.*started listen="127.0.0.1:\([0-9]*\)".*module=tcp.server.*/\1/p' "$work/server.log" | head -1)
  [[ -n $port ]] && break
  sleep 0.1
done
[[ -n $port ]] || { echo "difficulty_plot: the server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }

echo "difficulty_plot: ${minutes} min, -vardiff_target $target, -interval $interval," \
  "-hashrate $hashrate, start at $start_d" >&2
KUP_LOG_FORMAT=json "$build/kupool-client" -addr "127.0.0.1:$port" -hashrate "$hashrate" \
  -duration "${minutes}m" 2>"$work/client.jsonl" &
client_pid=$!
wait "$client_pid"
client_pid=
kill "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=

# The client's log: jobs.tsv (t, difficulty), shares.tsv (t, difficulty, interval, hashes,
# running median of the last 9 intervals), and plot.env (the figures gnuplot and the text need).
python3 - "$work" "$target" <<'EOF'
import json, math, re, statistics, sys
from datetime import datetime

work, target_text = sys.argv[1], sys.argv[2]
m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", target_text)
target = float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[m.group(2)]

def ts(line):
    return datetime.strptime(line["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()

t0 = None
jobs, shares, hashrate, changes = [], [], None, []
for raw in open(f"{work}/client.jsonl"):
    line = json.loads(raw)
    if t0 is None:
        t0 = ts(line)
    t = ts(line) - t0
    msg = line["msg"]
    if msg == "job" and "difficulty" in line:
        jobs.append((t, line["difficulty"]))
    elif msg == "submit accepted" and "difficulty" in line:
        shares.append((t, line["difficulty"], line["interval_s"], line["hashes"]))
    elif msg.startswith("difficulty raised") or msg.startswith("difficulty lowered"):
        changes.append(t)
    elif msg == "stopped":
        hashrate = line.get("hashrate")
if not jobs or not shares or not hashrate:
    sys.exit("difficulty_plot: the client log has no jobs, shares or stopped line")

lo, hi = 0.72 * hashrate * target, 2.16 * hashrate * target
# Settled: the first job from which every later job's difficulty is in the band.
settled = None
for i in range(len(jobs)):
    if all(lo <= d <= hi for _, d in jobs[i:]):
        settled = jobs[i][0]
        break
with open(f"{work}/jobs.tsv", "w") as f:
    for t, d in jobs:
        f.write(f"{t:.3f}\t{d}\n")
with open(f"{work}/shares.tsv", "w") as f:
    window = []
    for t, d, gap, h in shares[1:]:  # the first share has no interval
        window = (window + [gap])[-9:]
        f.write(f"{t:.3f}\t{d}\t{gap}\t{h}\t{statistics.median(window)}\n")
after = [gap for t, d, gap, h in shares[1:] if settled is not None and t > settled]
end = jobs[-1][0]
with open(f"{work}/plot.env", "w") as f:
    f.write(f"hashrate={hashrate}\ntarget={target}\nlo={lo}\nhi={hi}\n")
    f.write(f"ideal={hashrate * target / math.log(2)}\nend={end}\n")
print(f"achieved hashrate {hashrate} H/s; band {lo:.0f}..{hi:.0f}; "
      f"{len(changes)} difficulty changes; {len(shares)} accepted shares")
if settled is None:
    print("never settled in the band")
else:
    med = statistics.median(after) if after else float("nan")
    print(f"in the band from {settled:.0f} s on (final difficulty {jobs[-1][1]}); "
          f"after that {len(after)} shares, median interval {med:.2f} s against {target:g} s")
EOF

asked=$hashrate
target_text=$target
# shellcheck disable=SC1091
. "$work/plot.env"
gnuplot <<EOF
set terminal pngcairo size 1000,720 font ",10"
set output "$out"
set multiplot layout 2,1 title 'vardiff, one session: -vardiff\_target $target_text, a job every $interval, the client at -hashrate $asked (achieved $hashrate hashes/s)'
set xrange [0:$end]
set grid
set key opaque box
set logscale y
set key right bottom
set ylabel "difficulty"
set format y "10^{%L}"
plot $lo with filledcurves y1=$hi fs transparent solid 0.15 noborder lc rgb "#2ca02c" title "SPEC §8 band: 0.72..2.16 × H × T", \
     "$work/jobs.tsv" using 1:2 with steps lw 2 lc rgb "#1f77b4" title "difficulty in force (each job)", \
     $ideal with lines dt 2 lc rgb "#2ca02c" title "H × T / ln 2 (median interval = T)"
set key right top
set xlabel "seconds since the client connected"
set ylabel "seconds between accepted shares"
set format y "%g"
plot $target * 0.5 with filledcurves y1=$target * 1.5 fs transparent solid 0.15 noborder lc rgb "#2ca02c" title "target ±50%", \
     "$work/shares.tsv" using 1:3 with points pt 7 ps 0.6 lc rgb "#ff7f0e" title "interval before each accepted share", \
     "$work/shares.tsv" using 1:5 with lines lw 2 lc rgb "#d62728" title "running median of 9", \
     $target with lines dt 2 lc rgb "#2ca02c" title '-vardiff\_target'
unset multiplot
EOF
echo "difficulty_plot: wrote $out" >&2
