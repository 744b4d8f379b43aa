#!/usr/bin/env bash
# Requests per second on loopback, in one run: the example server's public /healthz and
# its signed-in /whoami (HcssAuth + HcssToken), and the same two routes hand-rolled with
# tower-sessions (tools/src/bin/tower_sessions_peer.rs), in alternating rounds, with wrk.
#
# Usage: bash scripts/load.sh [--redis URL] [--seconds N] [--rounds N]
#   --redis URL   the example built with --features redis and HCSS_REDIS_URL=URL
#                 (RedisStore and its near cache) instead of MemoryStore
#   --seconds N   each wrk run (default 5)
#   --rounds N    rounds of the four runs (default 3); the table gives the median
# Needs wrk, curl and python3. Prints each run, then the requests/s and the ratio of
# /whoami to /healthz for each server.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=5 rounds=3 redis=""
while [ $# -gt 0 ]; do
  case "$1" in
    --redis|--seconds|--rounds)
      [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; }
      case "$1" in --redis) redis="$2" ;; --seconds) secs="$2" ;; --rounds) rounds="$2" ;; esac
      shift 2 ;;
    [0-9]*) secs="$1"; shift ;; # the old form: bash scripts/load.sh SECONDS
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
for tool in wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "load.sh needs $tool" >&2; exit 2; }
done
addr=127.0.0.1:3055 peer=127.0.0.1:3056
target="${CARGO_TARGET_DIR:-target}"
features=() store=MemoryStore
if [ -n "$redis" ]; then features=(--features redis) store="RedisStore ($redis)"; fi
echo "building the example server and the tower-sessions peer (release)..."
cargo build -q --release "${features[@]}" --example server
cargo build -q --release -p hcss-auth-tools --bin tower_sessions_peer
log=$(mktemp -d)
jar="$log/jar" peer_jar="$log/peer-jar"
HCSS_EXAMPLE_ADDR=$addr HCSS_REDIS_URL="$redis" RUST_LOG=warn \
  "$target/release/examples/server" >"$log/server.log" 2>&1 &
server=$!
HCSS_EXAMPLE_ADDR=$peer "$target/release/tower_sessions_peer" >"$log/peer.log" 2>&1 &
peer_pid=$!
cookie=""
cleanup() {
  # Sign out (the session leaves Redis), stop both servers, and drop the logs.
  if [ -n "$cookie" ]; then
    curl -s -o /dev/null -X POST -H "Cookie: $cookie" "http://$addr/hcss/logout" || true
  fi
  kill $server $peer_pid 2>/dev/null || true
  rm -rf "$log"
}
trap cleanup EXIT
# Polls two processes starting; gives up as soon as one exits.
for url in "http://$addr/healthz" "http://$peer/healthz"; do
  for _ in $(seq 1 100); do
    curl -sf "$url" >/dev/null && break
    if ! kill -0 $server 2>/dev/null || ! kill -0 $peer_pid 2>/dev/null; then break; fi
    sleep 0.1
  done
  if ! curl -sf "$url" >/dev/null; then
    echo "no answer at $url:" >&2
    cat "$log/server.log" "$log/peer.log" >&2
    exit 1
  fi
done

# Sign in through the embedded mock identity service (its consent page: press Allow).
authorize=$(curl -s -c "$jar" -b "$jar" -o /dev/null -w '%{redirect_url}' "http://$addr/hcss/login")
consent=$(python3 -c 'import sys, urllib.parse as u
q = dict(u.parse_qsl(u.urlparse(sys.argv[1]).query)); q["decision"] = "allow"; print(u.urlencode(q))' "$authorize")
callback=$(curl -s -o /dev/null -w '%{redirect_url}' -d "$consent" "${authorize%%/connect/authorize*}/connect/authorize/consent")
curl -s -c "$jar" -b "$jar" -o /dev/null "$callback"
cookie=$(awk '$6 == "hcss-session" { print $6 "=" $7 }' "$jar")
test "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $cookie" "http://$addr/whoami")" = 200
curl -sf -c "$peer_jar" -o /dev/null "http://$peer/seed"
peer_cookie=$(awk '$6 == "id" { print $6 "=" $7 }' "$peer_jar")
test "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $peer_cookie" "http://$peer/whoami")" = 200

results="$log/results"
: >"$results"
run() { # name url cookie
  local out
  out=$(wrk -t2 -c32 -d"${secs}s" -H "Cookie: $3" "$2")
  if grep -q 'Non-2xx' <<<"$out"; then echo "$1: answers other than 2xx" >&2; echo "$out" >&2; exit 1; fi
  local rps
  rps=$(awk '/Requests\/sec/ { print $2 }' <<<"$out")
  printf '%-32s %12s requests/s\n' "$1" "$rps"
  echo "$1 $rps" >>"$results"
}
echo "example server with $store; tower-sessions peer with its MemoryStore; wrk -t2 -c32 -d${secs}s"
for round in $(seq 1 "$rounds"); do
  echo "== round $round"
  run hcss_auth:/healthz "http://$addr/healthz" "$cookie"
  run hcss_auth:/whoami "http://$addr/whoami" "$cookie"
  run tower_sessions:/healthz "http://$peer/healthz" "$peer_cookie"
  run tower_sessions:/whoami "http://$peer/whoami" "$peer_cookie"
done
python3 - "$results" "$store" <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, rps = line.split()
    runs.setdefault(name, []).append(float(rps))
med = {name: statistics.median(v) for name, v in runs.items()}
print(f"\nmedian of {len(runs['hcss_auth:/healthz'])} rounds")
print("| server | /healthz | /whoami | /whoami ÷ /healthz |")
print("|---|---|---|---|")
for server, label in (("hcss_auth", f"hcss-auth, {sys.argv[2]}"), ("tower_sessions", "tower-sessions peer, MemoryStore")):
    h, w = med[f"{server}:/healthz"], med[f"{server}:/whoami"]
    print(f"| {label} | {h:,.0f} | {w:,.0f} | {w / h:.2f} |")
EOF
