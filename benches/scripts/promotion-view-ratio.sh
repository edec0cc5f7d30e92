#!/usr/bin/env bash
# The cost of pricing on a view: CART.GET of a 4-line cart with two promo codes applied
# (10% off, buy one sock get one at 50%) against the same cart with none, in one cartd, in
# alternating redis-benchmark runs (the ratio of each pair is the figure; absolute ops/s move
# with the machine). Usage: benches/scripts/promotion-view-ratio.sh [rounds] (default 5),
# after `cargo build --release --bin cartd`; needs redis-benchmark and redis-cli.
set -euo pipefail
ROUNDS=${1:-5}
BIN=${BIN:-$(dirname "$0")/../../target/release/cartd}
DIR=$(mktemp -d)
"$BIN" --bind 127.0.0.1 --port 0 --data-dir "$DIR/data" > "$DIR/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 50); do
  grep -q "cartd listening on" "$DIR/log" && break
  sleep 0.1
done
PORT=$(grep -o "cartd listening on [0-9.]*:[0-9]*" "$DIR/log" | sed 's/.*://')
R="redis-cli -p $PORT"
for key in cart:plain cart:promo; do
  for product in tv soundbar mug sock; do
    $R CART.ADD $key $product - 2 PRICE 1999 CURRENCY USD REPLY NONE > /dev/null
  done
done
$R PROMO.SET TEN '{"kind":"percent","percent":10}' > /dev/null
$R PROMO.SET SOCKS '{"kind":"buy_x_get_y","buy":{"products":["sock"],"qty":1},"get":{"products":["sock"],"qty":1,"percent":50},"stackable":true}' > /dev/null
$R CART.PROMO cart:promo ADD TEN REPLY NONE > /dev/null
$R CART.PROMO cart:promo ADD SOCKS REPLY NONE > /dev/null
rate() {
  timeout 300 redis-benchmark -p "$PORT" -c 50 -n 400000 -P 16 -q CART.GET "$1" \
    | tr '\r' '\n' | grep -o "[0-9.]* requests per second" | tail -1 | cut -d' ' -f1
}
printf "%-6s %14s %14s %7s\n" round "none ops/s" "2 promos ops/s" ratio
for round in $(seq "$ROUNDS"); do
  plain=$(rate cart:plain)
  promo=$(rate cart:promo)
  printf "%-6s %14s %14s %7.2f\n" "$round" "$plain" "$promo" "$(awk -v a="$promo" -v b="$plain" 'BEGIN { print a / b }')"
done
