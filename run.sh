#!/usr/bin/env bash
# fer_fastai: set up (first time) and run.  Usage:
#   bash run.sh train [--quick] [options]   train + evaluate (fer_fastai train ...; FER2013 found at its default location)
#   bash run.sh test                        nbdev_test on every notebook + pytest
#   bash run.sh <any fer_fastai command>    e.g. bash run.sh evaluate --model runs/NAME --split PrivateTest
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=.venv
# reinstall when the requirements change
stamp_want=$(cat settings.ini setup.py | sha1sum | cut -c1-40)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.install-stamp" 2>/dev/null)" != "$stamp_want" ]; then
  echo "Setting up $VENV (first run: a few minutes) ..."
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  "$VENV/bin/pip" install -q -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' || true
  "$VENV/bin/python" -c "import fer_fastai, fastai, torch, nbdev" || { echo "setup failed" >&2; exit 1; }
  echo "$stamp_want" > "$VENV/.install-stamp"
fi
export PATH="$PWD/$VENV/bin:$PATH" MPLBACKEND=Agg PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::FutureWarning}"
cmd=${1:-help}; shift || true
case "$cmd" in
  test)
    before=$(find fer_fastai -name '*.py' | sort | xargs cat | sha1sum)
    nbdev_export
    [ "$before" = "$(find fer_fastai -name '*.py' | sort | xargs cat | sha1sum)" ] || { echo "fer_fastai/ was not what nbs/ exports (nbdev_export changed it): commit the exported modules" >&2; exit 1; }
    OMP_NUM_THREADS=1 nbdev_test --n_workers 2 --timing   # two notebooks at a time, one thread each: oversubscribed OpenMP threads crawl
    OMP_NUM_THREADS=1 pytest -q -n 2 --dist loadfile --durations=15 tests "$@"   # two test files at a time (pytest-xdist), one thread each
    ;;
  help|-h|--help) sed -n '2,6p' "$0" ;;
  *) fer_fastai "$cmd" "$@" ;;
esac
