#!/usr/bin/env bash
# Renders faultline's pages in headless Chromium at 1280 px: report.html of
# a valid run, an invalid run and a 100,000-op run, and `faultline serve`'s
# index and comparison of them. Fails on a console error, on a page wider
# than the viewport (sideways scrolling), or on a page without what it must
# show; saves screenshots. The runs are synthetic (`faultline report
# --demo`: a generated history checked by the real checker); run folders
# given on the command line (copied first) are rendered as well, as
# ci/test.sh does with the stored invalid runs of every workload
# (harness/tests/data/violations/).
#
#   ci/render-report.sh [OUT_DIR] [RUN_DIR...]
#
# OUT_DIR defaults to target/report-render. Installs Debian's `chromium`
# package when it is missing (needs root and the package mirror). Runs
# FAULTLINE_BIN if set, else builds the dev profile (`cargo build -p faultline`).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/report-render}"
shift || true
mkdir -p "$out"
out="$(cd "$out" && pwd)"

if ! command -v chromium >/dev/null 2>&1; then
  echo "render-report: installing chromium"
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
if [[ -n "${FAULTLINE_BIN:-}" ]]; then
  bin="$FAULTLINE_BIN"   # ci/test.sh: the binary `cargo test` built
else
  cargo build -q -p faultline --bin faultline
  bin="${CARGO_TARGET_DIR:-$PWD/target}/debug/faultline"
fi

store="$out/store"
rm -rf "$store"
mkdir -p "$store/register"
valid="$store/register/20260101T000001.000Z"
invalid="$store/register/20260101T000002.000Z"
big="$store/register/20260101T000003.000Z"
"$bin" report --demo valid --demo-ops 3000 "$valid" >/dev/null
"$bin" report --demo invalid --demo-ops 2000 "$invalid" >/dev/null
"$bin" report --demo valid --demo-ops 100000 "$big" >/dev/null
# Run folders given are copied first (the report is written beside the
# history, and the originals may be test data under version control).
extra=()
for d in "$@"; do
  copy="$out/runs/$(basename "$d")"
  rm -rf "$copy"
  mkdir -p "$copy"
  cp -r "$d"/. "$copy"/
  "$bin" report "$copy" >/dev/null
  extra+=("$copy")
done

# serve's pages, saved as files (their styles are inline).
port=$(( 20000 + RANDOM % 20000 ))
"$bin" serve --store "$store" --port "$port" >"$out/serve.log" 2>&1 &
serve_pid=$!
trap 'kill $serve_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -sf -o "$out/serve-index.html" "http://127.0.0.1:$port/" && break
  sleep 0.1
done
curl -sf -o "$out/serve-compare.html" \
  "http://127.0.0.1:$port/compare?run=register/20260101T000001.000Z&run=register/20260101T000002.000Z"
kill "$serve_pid" 2>/dev/null || true

status=0
flags=(--headless --no-sandbox --disable-gpu --disable-background-networking
  --disable-component-update --disable-sync --no-first-run
  --allow-file-access-from-files --enable-logging=stderr --v=0)
render() { # name page.html must_contain...
  local name="$1" page="$2"
  shift 2
  local profile
  profile="$(mktemp -d)"
  # One launch per page: a wrapper loads it in a 1280 px frame and writes
  # the frame's document width beside its viewport width, and a copy of
  # the rendered page, into its own DOM (console errors of the frame are
  # logged too). Screenshots only for a few pages (RENDER_ALL=1: all).
  cat >"$out/$name.measure.html" <<WRAP
<!doctype html><html><body style="margin:0">
<iframe id=f src="file://$page" style="width:1280px;height:900px;border:0"></iframe>
<script>
const f = document.getElementById('f');
f.onload = () => {
  const e = f.contentDocument.documentElement;
  document.body.setAttribute('data-width', e.scrollWidth + ' ' + e.clientWidth);
  const copy = document.createElement('div');
  copy.id = 'rendered';
  copy.innerHTML = f.contentDocument.body.innerHTML;
  document.body.appendChild(copy);
};
</script></body></html>
WRAP
  : >"$out/$name.log"
  local shoot
  case "$name" in
    valid|invalid|serve-index) shoot=1 ;;
    *) shoot=${RENDER_ALL:-0} ;;
  esac
  if [[ $shoot == 1 ]]; then
    chromium "${flags[@]}" --user-data-dir="$profile" --hide-scrollbars --window-size=1280,2400 \
      --screenshot="$out/$name.png" "file://$page" >>"$out/$name.log" 2>&1 || true
    if [[ ! -s "$out/$name.png" ]]; then
      echo "render-report: $name: no screenshot"
      status=1
    fi
  fi
  chromium "${flags[@]}" --user-data-dir="$profile" --window-size=1280,900 \
    --virtual-time-budget=15000 --dump-dom "file://$out/$name.measure.html" \
    >"$out/$name.dom.html" 2>>"$out/$name.log" || true
  local width
  width=$(sed -n 's/.*data-width="\([0-9]*\) \([0-9]*\)".*/\1 \2/p' "$out/$name.dom.html")
  rm -rf "$profile"
  if grep -E ":CONSOLE|Uncaught|console\.error" "$out/$name.log" >/dev/null; then
    echo "render-report: $name: console errors:"
    grep -E ":CONSOLE|Uncaught" "$out/$name.log"
    status=1
  fi
  read -r doc view <<<"${width:-0 0}"
  if (( view == 0 )); then
    echo "render-report: $name: the page's width could not be measured"
    status=1
  elif (( doc > view )); then
    echo "render-report: $name: the page is $doc px wide in a $view px viewport (sideways scrolling)"
    status=1
  fi
  for needle in "$@"; do
    if ! grep -qF -- "$needle" "$out/$name.dom.html"; then
      echo "render-report: $name: the rendered page lacks \"$needle\""
      status=1
    fi
  done
  echo "render-report: $name: $(wc -c <"$page") bytes, $doc px wide in $view px"
}
# Reports must be self-contained: no scripts, no external resources.
self_contained() {
  if grep -Eiq '<script|<link |src="https?:|url\(https?:|@import' "$1"; then
    echo "render-report: $1 is not self-contained"
    status=1
  fi
}

render valid "$valid/report.html" "class=\"verdict valid\"" ">VALID<"
render invalid "$invalid/report.html" "class=\"verdict invalid\"" ">INVALID<" "Why it is invalid" "cannot be linearized" "Minimal op set"
render ops100k "$big/report.html" "class=\"verdict valid\""
for d in "${extra[@]}"; do
  render "$(basename "$d")" "$d/report.html" "class=\"verdict"
  self_contained "$d/report.html"
done
for d in "$valid" "$invalid" "$big"; do self_contained "$d/report.html"; done
render serve-index "$out/serve-index.html" "3 runs in the store"
render serve-compare "$out/serve-compare.html" "Two runs side by side"
exit $status
