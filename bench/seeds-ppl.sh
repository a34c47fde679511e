#!/usr/bin/env bash
# Quantized perplexity over calibration seeds, backend against backend: quantizes MODEL with each backend of
# BACKENDS and each seed of SEEDS (NSAMPLES x SEQLEN tokens of CALIB), evaluates every result on EVAL_BACKEND
# (EVAL, 512-token windows, the first 40: the README's protocol) and prints one line per run, then each
# backend's perplexity against the first backend's, seed by seed.
#   bash bench/seeds-ppl.sh                                  # webgpu vs cpu, seeds 0 1 2, the quick start's 128 x 512
#   BACKENDS="webgpu cpu" SEEDS="0" NSAMPLES=32 SEQLEN=256 bash bench/seeds-ppl.sh
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${GPTQ_DATA:-../shared/data}
MODEL=${MODEL:-$DATA/gutenberg-llama-16m}
CALIB=${CALIB:-$DATA/wikitext-2-raw/wiki.valid.raw}
EVAL=${EVAL:-$DATA/gutenberg/eval.txt}
BACKENDS=${BACKENDS:-"cpu webgpu"}
SEEDS=${SEEDS:-"0 1 2"}
NSAMPLES=${NSAMPLES:-128}
SEQLEN=${SEQLEN:-512}
EVAL_BACKEND=${EVAL_BACKEND:-cpu}
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK"
BUN=${BUN:-$(command -v bun || echo node_modules/.bin/bun)}
RES=$WORK/results.txt
: > "$RES"
for s in $SEEDS; do
  for be in $BACKENDS; do
    o=$WORK/$be-$s
    t0=$(date +%s.%N)
    if ! GPTQ_QUIET=1 "$BUN" gptq.ts quantize "$MODEL" --out "$o" --dataset "$CALIB" --nsamples "$NSAMPLES" --seqlen "$SEQLEN" --seed "$s" --backend "$be" --overwrite > "$o.qlog" 2>&1; then
      echo "quantize $be seed $s failed:"; tail -5 "$o.qlog"; continue
    fi
    t1=$(date +%s.%N)
    p=$(GPTQ_QUIET=1 "$BUN" gptq.ts eval "$o" --dataset "$EVAL" --seqlen 512 --max-windows 40 --backend "$EVAL_BACKEND" --json 2> "$o.elog" | grep -o '"perplexity":[0-9.e+-]*' | cut -d: -f2)
    printf '%s %s %s %.1f\n' "$be" "$s" "${p:-failed}" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" | tee -a "$RES"
  done
done
echo "backend seed perplexity quantize-seconds: $RES ($NSAMPLES x $SEQLEN calibration tokens, eval on $EVAL_BACKEND)"
# each backend against the first one, seed by seed
first=${BACKENDS%% *}
awk -v first="$first" '{ p[$1" "$2] = $3; if (!($1 in seen)) { seen[$1] = 1; order[n++] = $1 } if (!($2 in sseen)) { sseen[$2] = 1; seeds[m++] = $2 } }
  END { for (i = 1; i < n; i++) for (j = 0; j < m; j++) { a = p[order[i]" "seeds[j]]; b = p[first" "seeds[j]];
        if (a > 0 && b > 0) printf "%s vs %s, seed %s: %.3f vs %.3f (%+.2f%%)\n", order[i], first, seeds[j], a, b, (a / b - 1) * 100 } }' "$RES"
