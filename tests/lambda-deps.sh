#!/usr/bin/env bash
# A Lambda binary links only what it runs: none of them may depend on SQLite (rusqlite, the
# embedded store), the Shopify simulator or the local host. Reads `cargo tree` (normal
# dependencies, the features a Lambda build resolves) for each function under functions/
# except the local host, and checks the local host itself as the control: it must show the
# embedded store, or this check could not see one.
set -euo pipefail
cd "$(dirname "$0")/.."

FORBIDDEN='^(rusqlite|libsqlite3-sys|shopsync-store-sqlite|shopsync-shopify-sim|shopsync) '
status=0
for manifest in functions/*/Cargo.toml; do
  package=$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -1)
  [ "$package" = shopsync ] && continue
  linked=$(cargo tree --locked -p "$package" -e normal --prefix none --no-dedupe | sort -u)
  if bad=$(grep -E "$FORBIDDEN" <<<"$linked"); then
    echo "error: the Lambda function $package links what it does not run:" >&2
    sed 's/^/  /' <<<"$bad" >&2
    status=1
  else
    echo "$package: no SQLite, no simulator, no local host"
  fi
done
if ! cargo tree --locked -p shopsync -e normal --prefix none | grep -qE '^rusqlite '; then
  echo "error: the control failed: cargo tree does not show rusqlite under the local host" >&2
  status=1
fi
exit "$status"
