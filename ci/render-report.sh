#!/usr/bin/env bash
# Renders report.html of a valid and an invalid run in headless Chromium,
# fails on any console error or on a page without its verdict/witness, and
# saves screenshots. The runs are synthetic (`faultline report --demo`, a
# generated history checked by the real checker) unless run folders are given.
#
#   ci/render-report.sh [OUT_DIR] [VALID_RUN_DIR INVALID_RUN_DIR]
#
# OUT_DIR defaults to target/report-render. Installs Debian's `chromium`
# package when it is missing (needs root and the package mirror).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/report-render}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

if ! command -v chromium >/dev/null 2>&1; then
  echo "render-report: installing chromium"
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi

if [[ $# -ge 3 ]]; then
  valid="$(cd "$2" && pwd)"
  invalid="$(cd "$3" && pwd)"
  cargo run -q -p faultline -- report "$valid" >/dev/null
  cargo run -q -p faultline -- report "$invalid" >/dev/null
else
  valid="$out/valid-run"
  invalid="$out/invalid-run"
  rm -rf "$valid" "$invalid"
  cargo run -q -p faultline -- report --demo valid --demo-ops 3000 "$valid" >/dev/null
  cargo run -q -p faultline -- report --demo invalid --demo-ops 2000 "$invalid" >/dev/null
fi

status=0
render() { # name run_dir must_contain...
  local name="$1" dir="$2"
  shift 2
  local profile
  profile="$(mktemp -d)"
  local flags=(--headless --no-sandbox --disable-gpu --disable-background-networking
    --disable-component-update --disable-sync --no-first-run --hide-scrollbars
    --user-data-dir="$profile" --enable-logging=stderr --v=0)
  chromium "${flags[@]}" --window-size=1400,2400 --screenshot="$out/$name.png" \
    "file://$dir/report.html" >"$out/$name.log" 2>&1 || true
  chromium "${flags[@]}" --dump-dom "file://$dir/report.html" >"$out/$name.dom.html" 2>>"$out/$name.log" || true
  rm -rf "$profile"
  if grep -E "CONSOLE|Uncaught|console\.error|:ERROR:CONSOLE" "$out/$name.log" >/dev/null; then
    echo "render-report: $name: console errors:"
    grep -E "CONSOLE|Uncaught" "$out/$name.log"
    status=1
  fi
  if [[ ! -s "$out/$name.png" ]]; then
    echo "render-report: $name: no screenshot"
    status=1
  fi
  for needle in "$@"; do
    if ! grep -qF -- "$needle" "$out/$name.dom.html"; then
      echo "render-report: $name: the rendered page lacks \"$needle\""
      status=1
    fi
  done
  # The page must be self-contained: no scripts, no external resources.
  if grep -Eiq '<script|<link |src="https?:|url\(https?:|@import' "$dir/report.html"; then
    echo "render-report: $name: report.html is not self-contained"
    status=1
  fi
  echo "render-report: $name: $(wc -c <"$dir/report.html") bytes → $out/$name.png"
}

render valid "$valid" "class=\"verdict valid\"" ">VALID<"
render invalid "$invalid" "class=\"verdict invalid\"" ">INVALID<" "Why it is invalid" "cannot be linearized" "Minimal op set"
exit $status
