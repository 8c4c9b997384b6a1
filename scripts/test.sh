#!/usr/bin/env bash
# Install everything the test suite needs into ./.venv, then run the whole suite.
# Used by CI (.ci/run) and by developers: `bash scripts/test.sh [pytest args]`.
set -euo pipefail
cd "$(dirname "$0")/.."

# Native fixtures: gcc builds the tiny C programs the tests supervise; Debian's libomp5 gives a
# real LLVM OpenMP runtime to mix with Intel's; gdb gives native stacks of non-Python processes. Without root or apt those tests skip, saying why.
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  missing=()
  command -v gcc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
  ls /usr/lib/*/libomp.so.5 >/dev/null 2>&1 || missing+=(libomp5-14)
  command -v gdb >/dev/null 2>&1 || missing+=(gdb)
  if [ ${#missing[@]} -gt 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") \
      || echo "warning: could not apt-get install ${missing[*]}; dependent tests will skip" >&2
  fi
fi

# --- Real environments for tests/check (issue 15): the Debian/Ubuntu system Python with apt's
# NumPy and SciPy (OpenBLAS chosen through update-alternatives), python3-venv for a venv with
# --system-site-packages on it, python3-pip for `pip install --user`, and numdoctor's own
# dependencies for that interpreter. Without root or apt those tests skip, saying why.
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  system_python=(python3-numpy python3-scipy python3-venv python3-pip python3-threadpoolctl
                 python3-psutil python3-rich python3-packaging)
  missing=()
  for package in "${system_python[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$package")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") \
      || echo "warning: could not apt-get install ${missing[*]}; dependent tests will skip" >&2
  fi
fi
# --- end of the issue-15 block

python3 -m venv .venv
# torch is pinned to the CPU build inside the [test] extra; a range could pull a CUDA build.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
