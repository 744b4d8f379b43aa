#!/usr/bin/env bash
# Requests per second on loopback, side by side: the example server's public /healthz
# and its protected /whoami (HcssAuth + HcssToken from MemoryStore), with wrk.
# Usage: bash scripts/load.sh [seconds]   (needs wrk, curl and python3)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
addr=127.0.0.1:3055
cargo build -q --release --example server
HCSS_EXAMPLE_ADDR=$addr RUST_LOG=warn target/release/examples/server >/tmp/hcss-load-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null' EXIT
for _ in $(seq 1 100); do curl -sf "http://$addr/healthz" >/dev/null && break; sleep 0.1; done

# Sign in through the embedded mock identity service (its consent page: press Allow).
jar=$(mktemp)
authorize=$(curl -s -c "$jar" -b "$jar" -o /dev/null -w '%{redirect_url}' "http://$addr/hcss/login")
consent=$(python3 -c 'import sys, urllib.parse as u
q = dict(u.parse_qsl(u.urlparse(sys.argv[1]).query)); q["decision"] = "allow"; print(u.urlencode(q))' "$authorize")
callback=$(curl -s -o /dev/null -w '%{redirect_url}' -d "$consent" "${authorize%%/connect/authorize*}/connect/authorize/consent")
curl -s -c "$jar" -b "$jar" -o /dev/null "$callback"
cookie=$(awk '$6 == "hcss-session" { print $6 "=" $7 }' "$jar")
test "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $cookie" "http://$addr/whoami")" = 200

for path in /healthz /whoami; do
  printf '\n== GET %s\n' "$path"
  wrk -t2 -c32 -d"${secs}s" -H "Cookie: $cookie" "http://$addr$path" | grep -E 'Requests/sec|Latency|Non-2xx'
done
