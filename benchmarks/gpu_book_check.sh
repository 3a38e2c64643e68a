#!/usr/bin/env bash
# A bounded check of the book's gpu profile, for a lent GPU machine (at most BUDGET seconds, 7.5 min):
# every training chapter executes with each training run capped at STEPS optimiser steps
# (SEGEDU_MAX_STEPS), GPU memory is sampled every second, and benchmarks/gpu_book_check.py then
# projects each chapter's full time from the measured seconds per step against the profile's
# book_budget_min. Exit status: the projection's (0 within budget; 1 over budget, a run failed or
# ran out of memory, or the time limit cut the book short), 2 when the book could not start.
#
# The book runs in a temporary copy of the checkout (segedu/, book/, _toc.yml, _config.yml) with
# its own empty runs/ and run log: the executed notebooks, book/run_log.json and the capped runs
# never land in this checkout, committed or not. Only data/ (the generated datasets) is shared.
#
#   bash benchmarks/gpu_book_check.sh                    on the GPU machine (files to $OUT)
#   PROFILE=smoke bash benchmarks/gpu_book_check.sh      to try it on a CPU ("no GPU")
#   CHAPTERS="06_fcn 07_decoder_models" bash ...         a subset (default: every chapter that trains)
# Also: STEPS (10), BUDGET (450 s for the whole script), LIMIT (s for the book; default what BUDGET
# leaves), PYTHON (.venv/bin/python where there is one, else python3), KEEP=1 keeps the copy.
#
# The device's python3 has torch but not the book's runner (papermill, jupytext, ipykernel) nor
# pydantic, pycocotools, albumentations, smp. Fetch their wheels here once with
#   bash benchmarks/gpu_book_check.sh --fetch-wheels     (into .whl/, versions from requirements.lock)
# and carry .whl on the device call; the script installs them into /tmp/site.
set -u
cd "$(dirname "$0")/.." || exit 2
here=$PWD

# what the device's image lacks (the closure of segedu's and the book runner's requirements)
WHEELS="albucore albumentations annotated-types asttokens comm debugpy entrypoints executing
fastjsonschema ipykernel ipython ipython-pygments-lexers jedi jsonschema jsonschema-specifications
jupyter-client jupyter-core jupytext matplotlib-inline mdit-py-plugins nbclient nbformat nest-asyncio2
papermill parso pexpect platformdirs prompt-toolkit ptyprocess pure-eval pycocotools pydantic
pydantic-core pyzmq referencing rpds-py segmentation-models-pytorch simsimd stack-data stringzilla
tenacity tornado traitlets typing-inspection wcwidth"

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=$here/.venv/bin/python; else PYTHON=python3; fi
fi
if [ "${1:-}" = "--fetch-wheels" ]; then
    pins=$(awk -F'==' -v names=" $(echo $WHEELS) " '/==/ { n = tolower($1); gsub(/[-_.]+/, "-", n)
           if (index(names, " " n " ")) print n "==" $2 }' requirements.lock)
    echo "$(echo "$pins" | wc -l) of $(echo $WHEELS | wc -w) wheels pinned by requirements.lock"
    # shellcheck disable=SC2086
    exec "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl $pins
fi

PROFILE=${PROFILE:-gpu}
STEPS=${STEPS:-10}
BUDGET=${BUDGET:-450}
CHAPTERS=${CHAPTERS:-$(grep -lE 'compare\.(train_plan|train_tricks)' book/[0-9]*.py | xargs -n1 basename | sed 's/\.py$//')}
CHAPTERS=$(echo $CHAPTERS)
out=${OUT:-/tmp/gpu_book_check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 LC_ALL=C

stamp() {  # each line after the unix time it was printed (the projection assigns runs to chapters by it)
    while IFS= read -r line; do printf '%s %s\n' "${EPOCHREALTIME:-$(date +%s.%N)}" "$line"; done
}

if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
    gpu=1
else
    echo "no GPU (nvidia-smi not found)" | tee "$out/gpu.txt"
    gpu=0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/segedu-book-check.XXXXXX") || exit 2
sampler=
cleanup() {
    [ -n "$sampler" ] && kill "$sampler" 2>/dev/null
    [ "${KEEP:-0}" = 1 ] && echo "the copy stays in $work" || rm -rf "$work"
}
trap cleanup EXIT
cp -r segedu book _toc.yml _config.yml "$work/"
rm -f "$work/book/run_log.json" "$work/book/run_log.md"  # the run log holds this execution only
data=${SEGEDU_DATA_ROOT:-$here/data}
mkdir -p "$data" && ln -s "$data" "$work/data"  # runs go to $work/runs: data_root().parent / "runs"
unset SEGEDU_DATA_ROOT SEGEDU_PROFILE SEGEDU_REUSE_SINCE
export PYTHONPATH=$work

imports='import pydantic, papermill, jupytext, ipykernel, pycocotools, albumentations, yaml, segedu.engine'
if ! "$PYTHON" -c "$imports" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 2
    export PYTHONPATH=$work:/tmp/site
fi
if ! "$PYTHON" -c "$imports" 2>"$out/imports.txt"; then
    echo "gpu_book_check: $PYTHON cannot run the book: $(tail -1 "$out/imports.txt");" \
         "carry the wheels (bash benchmarks/gpu_book_check.sh --fetch-wheels, then carry .whl)." >&2
    exit 2
fi
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' | tee -a "$out/gpu.txt"

cd "$work" || exit 2
echo "dataset of profile $PROFILE:"
if ! timeout $((BUDGET / 2)) "$PYTHON" -c "from segedu import profiles; from segedu.data import synth
print(synth.ensure_default_dataset(profiles.PROFILES['$PROFILE']))"; then
    echo "gpu_book_check: the $PROFILE dataset was not generated within $((BUDGET / 2)) s." >&2
    exit 2
fi
echo "dataset ready after $SECONDS s"

LIMIT=${LIMIT:-$((BUDGET - SECONDS - 40))}  # 40 s: 20 for the runner to stop after SIGINT, 20 for the projection
if [ "$LIMIT" -lt 30 ]; then
    echo "gpu_book_check: $LIMIT s left for the book (BUDGET=$BUDGET); raise BUDGET." >&2
    exit 2
fi
if [ "$gpu" = 1 ]; then  # GPU memory each second, for the projection's peak per chapter
    while sleep 1; do
        printf '%s %s\n' "$EPOCHREALTIME" "$(nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader,nounits)"
    done >"$out/gpu_memory.txt" &
    sampler=$!
fi
echo "book: profile $PROFILE, SEGEDU_MAX_STEPS=$STEPS, limit $LIMIT s: $CHAPTERS"
# SIGINT, not TERM: the runner stops its kernel and writes the run log of the finished chapters
# shellcheck disable=SC2086
SEGEDU_MAX_STEPS=$STEPS timeout -s INT -k 20 "$LIMIT" "$PYTHON" -m segedu book run --profile "$PROFILE" $CHAPTERS 2>&1 \
    | stamp | tee "$out/book_run.log"
status=${PIPESTATUS[0]}
[ -n "$sampler" ] && kill "$sampler" 2>/dev/null
sampler=
cp book/run_log.json "$out/run_log.json" 2>/dev/null

memory=()
[ "$gpu" = 1 ] && memory=(--memory "$out/gpu_memory.txt")
# shellcheck disable=SC2086
"$PYTHON" "$here/benchmarks/gpu_book_check.py" --log "$out/book_run.log" --runs runs --run-log book/run_log.json \
    --profile "$PROFILE" --cap "$STEPS" --status "$status" --csv "$out/runs.csv" "${memory[@]}" $CHAPTERS \
    | tee "$out/projection.txt"
rc=${PIPESTATUS[0]}
echo "script: $SECONDS s; files in $out"
exit "$rc"
