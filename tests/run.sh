#!/usr/bin/env bash
# The one test command (README.md, .ci/run): installs what the tests need (on a fresh Debian
# machine with only rustup: python3-venv and a C compiler through apt-get when missing; moto's
# server, cfn-lint, aws-sam-translator and openapi-spec-validator into a virtualenv), starts
# moto's server on a free loopback port as the local DynamoDB, SQS and Secrets Manager, checks
# the infra template, that no Lambda binary links the local host's parts, formatting and
# lints, that the admin API's OpenAPI document is valid, and runs the whole workspace suite
# including the runs on moto; the server is stopped even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
VENV=.venv-aws
MOTO_VERSION=5.2.5
CFN_LINT_VERSION=1.58.0
SAM_TRANSLATOR_VERSION=1.115.0
OPENAPI_VALIDATOR_VERSION=0.9.0

# What a fresh machine may lack: a C compiler (crates that build C: SQLite, zstd, ring) and
# Python's venv module. Installed with apt-get when this runs as root (as CI does), named
# and stopped at once otherwise.
missing_packages=()
command -v cc >/dev/null 2>&1 || missing_packages+=(gcc libc6-dev)
command -v python3 >/dev/null 2>&1 || missing_packages+=(python3)
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  missing_packages+=(python3-venv)
fi
if [ "${#missing_packages[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing ${missing_packages[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_packages[@]}" >/dev/null
  else
    echo "error: missing ${missing_packages[*]}; install them (apt-get install ${missing_packages[*]}) and run again" >&2
    exit 1
  fi
fi

if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi

if ! "$VENV/bin/python" - "$MOTO_VERSION" "$CFN_LINT_VERSION" "$SAM_TRANSLATOR_VERSION" "$OPENAPI_VALIDATOR_VERSION" 2>/dev/null <<'PY'
import sys
from importlib.metadata import version
wanted = dict(zip(["moto", "cfn-lint", "aws-sam-translator", "openapi-spec-validator"], sys.argv[1:]))
sys.exit(any(version(name) != v for name, v in wanted.items()))
PY
then
  echo "==> installing moto[server]==$MOTO_VERSION, cfn-lint==$CFN_LINT_VERSION, aws-sam-translator==$SAM_TRANSLATOR_VERSION, openapi-spec-validator==$OPENAPI_VALIDATOR_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION" \
    "cfn-lint==$CFN_LINT_VERSION" "aws-sam-translator==$SAM_TRANSLATOR_VERSION" \
    "openapi-spec-validator==$OPENAPI_VALIDATOR_VERSION"
fi

echo "==> infra: cfn-lint on the template and its SAM expansion, IAM without wildcards"
"$VENV/bin/python" infra/check.py --self-test

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p target
"$VENV/bin/python" tests/moto_server.py 127.0.0.1 "$PORT" >target/moto.log 2>&1 &
MOTO_PID=$!
trap 'kill "$MOTO_PID" 2>/dev/null || true; wait "$MOTO_PID" 2>/dev/null || true' EXIT

python3 - "$PORT" <<'PY'
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/moto-api/"
for _ in range(120):
    try:
        urllib.request.urlopen(url, timeout=1)
        sys.exit(0)
    except Exception:
        time.sleep(0.25)
sys.exit(f"moto's server did not answer at {url} (see target/moto.log)")
PY
echo "==> moto's server (DynamoDB, SQS, Secrets Manager) on 127.0.0.1:$PORT"

export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true
export SHOPSYNC_TEST_DYNAMODB_ENDPOINT="http://127.0.0.1:$PORT"
export SHOPSYNC_TEST_AWS_ENDPOINT="http://127.0.0.1:$PORT"

echo "==> Lambda binaries link neither SQLite nor the simulator"
bash tests/lambda-deps.sh
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy -D warnings"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "==> the admin API's OpenAPI document validates (openapi-spec-validator)"
cargo run --locked -q -p shopsync -- openapi >target/openapi.json
"$VENV/bin/openapi-spec-validator" target/openapi.json
echo "==> cargo test (embedded and on moto)"
cargo test --locked --workspace -- --include-ignored
