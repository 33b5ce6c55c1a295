#!/usr/bin/env bash
# Regenerate docs/ablations.md: every setting of issue 13's ablations run with `vfr eval` into out/ablate/NAME/BENCH
# (each run logged to benchmarks/results/quality.jsonl), then the paired comparisons (eval/ablation.py),
# and docs/soups.md (model soups, benchmarks/soups.json), docs/hubness.md (query-bank hubness correction,
# benchmarks/hubness.json), docs/distillation.md (benchmarks/distillation.json), docs/batching.md
# (benchmarks/batching.json), docs/guide.md (benchmarks/guide.json), docs/recipe.md (benchmarks/recipe.json)
# docs/travel.md (benchmarks/travel.json) and docs/views.md (benchmarks/views.json)
# the same way.
# Needs the models (all CPU, seed 0; ~10-25 min each on 2 cores):
#   vfr calibrate --pairs coco-val --out out/models/minilm-cal --descriptions longest --max-seq-length 128 --seed 0
#   vfr calibrate --pairs coco-val --pairs flickr30k-val --pairs coco-5k-val --max-pairs 2500 --hard-negatives \
#       --hn-retriever hybrid --hn-skip 1 --max-seq-length 128 --seed 0 --out out/models/minilm-multi
#   python benchmarks/benchmark_images.py halc-xmodel opera-xmodel > out/unseen-images.txt
#   vfr calibrate --pairs coco-val --descriptions all --hard-negatives --hn-retriever hybrid --hn-skip 1 \
#       --max-seq-length 128 --seed 0 --out out/models/minilm-vlms
#   vfr calibrate (the same as minilm-multi) --exclude-groups out/unseen-images.txt --out out/models/minilm-travel
#   vfr models install mpnet && vfr tune coco-val --encoder mpnet      (calibrate tunes its own models' fusion)
#   vfr calibrate --pairs coco-val --base mpnet --out out/models/mpnet-cal --descriptions longest --max-seq-length 128 --seed 0
#   vfr calibrate (the same as minilm-travel) --max-pairs 6000 --out out/models/minilm-travel-6k
#   vfr calibrate --pairs coco-val --descriptions longest --max-seq-length 128 --seed 0 --hard-negatives \
#       --hn-retriever hybrid --hn-skip 1 --hn-count 2 --out out/models/minilm-hn2
#   vfr calibrate (the same as minilm-hn2) --teacher out/models/mpnet-cal --out out/models/minilm-distil
#   cross-fitted teachers: python benchmarks/crossfit_groups.py --out out/crossfit (each file: the other half of
#   minilm-hn2's 384 training images + its 43 held-out images); then for H in A B:
#   vfr calibrate --pairs coco-val --base mpnet --descriptions longest --max-seq-length 128 --seed 0 \
#       --exclude-groups out/crossfit/exclude-for-$H.txt --no-tune --out out/models/mpnet-cal-$H
#   vfr calibrate (the same as minilm-hn2) --teacher out/models/mpnet-cal-A --teacher out/models/mpnet-cal-B \
#       --out out/models/minilm-crossfit
#   vfr models soup out/models/minilm-{cal,multi,travel} --out out/models/minilm-soup3
#   vfr models soup out/models/minilm-{cal,vlms,multi,travel} --out out/models/minilm-soup4
#   vfr models soup all-MiniLM-L6-v2 out/models/minilm-hn2 --weights 0.5,0.5 --out out/models/minilm-wise   (WiSE-FT)
#   vfr calibrate (the same as minilm-hn2) --base out/models/minilm-hn2 --out out/models/minilm-hn2-r2   (second round)
#   vfr calibrate (the same as minilm-hn2) --seed S --out out/models/minilm-hn2-sS for S in 1 2, then
#   vfr models soup out/models/minilm-hn2 out/models/minilm-hn2-s1 out/models/minilm-hn2-s2 --out out/models/minilm-hn2-seeds
#   vfr calibrate (the same as minilm-hn2) --lexical-weight W --out out/models/minilm-hn2-lexN for W, N in 0.1 1, 0.3 3
#   python benchmarks/calibrate_old_batching.py calibrate (the same as minilm-hn2) --out out/models/minilm-hn2-imgbatch
#   vfr calibrate (the same as minilm-hn2) --out out/models/minilm-hn2-nofn
#   vfr calibrate (the same as minilm-hn2) --seed S --out out/models/minilm-hn2-fix-sS for S in 1 2, then
#   vfr models soup out/models/minilm-hn2-nofn out/models/minilm-hn2-fix-s1 out/models/minilm-hn2-fix-s2 \
#       --out out/models/minilm-hn2-fix-seeds
#   vfr calibrate (the same as minilm-hn2) --hn-guide mpnet --out out/models/minilm-hn2-guide
#   vfr calibrate (the same as minilm-hn2) --hn-count 4 --out out/models/minilm-hn4
#   vfr calibrate (the same as minilm-hn2) --epochs 2 --out out/models/minilm-hn2-2ep
#   vfr calibrate (the same as minilm-travel) --out out/models/minilm-travel-fix           (after the batching fix)
#   vfr calibrate (the same as minilm-travel) --hn-count 2 --out out/models/minilm-travel-hn2
#   vfr calibrate (the same as minilm-travel-fix) --seed S --out out/models/minilm-travel-fix-sS for S in 1 2, then
#   vfr models soup out/models/minilm-travel-fix out/models/minilm-travel-fix-s1 out/models/minilm-travel-fix-s2 \
#       --out out/models/minilm-travel-seeds
#   vfr calibrate (the same as minilm-travel-fix) --batch-size B --out out/models/minilm-travel-bB for B in 8 16 128
#   vfr calibrate (the same as minilm-travel-fix) --scale S --out out/models/minilm-travel-scS for S in 10 40
#   vfr calibrate (the same as minilm-travel-fix) --lr L --out out/models/minilm-travel-lrN for L, N in 1e-5 1e5,
#       5e-5 5e5, 1e-4 1e4, 2e-4 2e4
#   vfr calibrate (the same as minilm-travel-fix) --seed S --lr 5e-5 --out out/models/minilm-travel-lr5e5-sS for S in
#       1 2, then vfr models soup out/models/minilm-travel-lr5e5 out/models/minilm-travel-lr5e5-s1 \
#       out/models/minilm-travel-lr5e5-s2 --out out/models/minilm-travel-lr5e5-seeds
#   vfr models soup out/models/minilm-travel-{fix,fix-s1,fix-s2,lr5e5,lr5e5-s1,lr5e5-s2} --greedy coco-val \
#       --out out/models/minilm-travel-greedy                                      (a greedy soup of both rates' seeds)
#   vfr calibrate --pairs coco-val --descriptions joined --max-seq-length 256 --seed 0 --out out/models/minilm-cal-joined
#   python benchmarks/pseudo_pairs.py --group-prefix pseudo: > out/pseudo-pairs.jsonl, then vfr calibrate (the same as
#       minilm-travel-fix) --pairs out/pseudo-pairs.jsonl --out out/models/minilm-travel-pseudo  (pseudo-queries from
#       descriptions alone; no page: its runs are compared in docs/calibrate.md, and no page regenerates from it)
#   python benchmarks/negative_pool.py > out/negative-pool.txt, then vfr calibrate (the same as minilm-travel-fix)
#       --hn-pool out/negative-pool.txt --out out/models/minilm-travel-pool2  (unlabelled descriptions as negatives,
#       for the description pairs only; likewise compared in docs/calibrate.md only)
#   vfr calibrate (the same as minilm-travel-fix) --dev coco-val --eval-steps 30 --out out/models/minilm-travel-dev
#       (checkpoints chosen on clean coco-val; likewise compared in docs/calibrate.md only)
#   vfr calibrate (the same as minilm-travel-fix) --loss mnrl-sym --out out/models/minilm-travel-sym, and
#       --freeze-layers 2 --out out/models/minilm-travel-frz2 (likewise compared in docs/calibrate.md only)
# The models listed before minilm-hn2-nofn trained before the batching fix (docs/batching.md), batched by image only: the pages'
# figures come from those models; `vfr calibrate` now keeps mined negatives out of their images' batches.
# SKIP_RUNS=1 only rebuilds the pages from the runs already in out/ablate (a page whose runs are not all there
# stops the script rather than being written short; `python -m vfr.eval.ablation benchmarks/PAGE.json docs/PAGE.md`
# rebuilds one page). Then `bash scripts/regen_results.sh`
# embeds the pages in docs/results.md, or, without recomputing the benchmark tables (hours from a cold cache),
# `python -m vfr.eval.results_page --ablations-only docs/results.md` re-embeds only the ablation pages. On a shared machine: nice, one torch thread.
set -euo pipefail
if [ $# -gt 0 ]; then  # hours of runs: never start them on a stray argument
  case "$1" in
    -h|--help) sed -n '2,/^set -euo pipefail/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "regen_ablations.sh takes no arguments (got: $*); see --help. SKIP_RUNS=1 rebuilds the pages only." >&2; exit 2 ;;
  esac
fi
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ -z "${SKIP_RUNS:-}" ]; then
  R="$PY benchmarks/quality_runs.py"
  TEST=coco-test,coco-fg-test,halc-xmodel,opera-xmodel,docci-iiw,iiw-400
  $R base $TEST,sugarcrepe
  $PY benchmarks/retune_calibrated.py out/models/minilm-cal --no-distractors   # 43 held-out documents only
  $R cal-heldout-only coco-test -- --encoder out/models/minilm-cal --fusion auto
  $PY benchmarks/retune_calibrated.py out/models/minilm-cal                   # what vfr calibrate does
  $R cal-auto $TEST,sugarcrepe -- --encoder out/models/minilm-cal --fusion auto
  $R cal-fixed coco-test -- --encoder out/models/minilm-cal --fusion fixed
  $R multi $TEST,sugarcrepe -- --encoder out/models/minilm-multi --fusion auto
  $R multi-fixed coco-test -- --encoder out/models/minilm-multi --fusion fixed --retriever hybrid
  $R vlms $TEST,sugarcrepe -- --encoder out/models/minilm-vlms --fusion auto
  $R travel $TEST,sugarcrepe -- --encoder out/models/minilm-travel --fusion auto
  $R travel-6k $TEST,sugarcrepe -- --encoder out/models/minilm-travel-6k --fusion auto
  $R soup3 $TEST,sugarcrepe -- --encoder out/models/minilm-soup3 --fusion auto
  $R soup4 $TEST,sugarcrepe -- --encoder out/models/minilm-soup4 --fusion auto
  $R soup4-opts $TEST -- --encoder out/models/minilm-soup4 --fusion auto --parts sentences --parts-weight 0.5 \
      --bm25-fields caption=0.25
  $R mpnet-auto $TEST,sugarcrepe -- --encoder mpnet --fusion auto
  $R mpnet-fixed coco-test -- --encoder mpnet --fusion fixed --retriever hybrid
  $R mpnet-cal $TEST,sugarcrepe -- --encoder out/models/mpnet-cal --fusion auto
  $R mpnet-cal-fixed $TEST -- --encoder out/models/mpnet-cal --fusion fixed --retriever dense,hybrid
  $R fields $TEST -- --bm25-fields caption=0.25 --retriever bm25,hybrid
  $R parts $TEST -- --parts sentences --parts-weight 0.5 --retriever dense,hybrid
  for w in 0.25 0.5 1.0; do $R val-fields-caption$w coco-val -- --bm25-fields caption=$w --retriever bm25,hybrid; done
  for w in 0.25 0.5 0.75; do $R val-parts$w coco-val -- --parts sentences --parts-weight $w --retriever dense,hybrid; done
  # query-bank hubness correction (docs/hubness.md): λ chosen on coco-val, then the test benchmarks
  B="--query-bank coco-val-captions"
  $R val-base coco-val
  $R val-travel coco-val -- --encoder out/models/minilm-travel --fusion auto
  # --fusion fixed with a bank: the built-in fusion, as for travel-hub below (auto would pick the fusion tuned later)
  for w in 0.25 0.5 1.0; do
    $R val-hub$w coco-val -- $B --hubness $w
    $R val-travel-hub$w coco-val -- --encoder out/models/minilm-travel --fusion fixed $B --hubness $w
  done
  $R hub $TEST,sugarcrepe -- $B
  # the built-in fusion (what `auto` chose before the model had a fusion tuned for a bank: the tune below adds one)
  $R travel-hub $TEST,sugarcrepe -- --encoder out/models/minilm-travel --fusion fixed $B
  # then its fusion tuned for an index with the bank, on coco-val (nearly clean for this model), and run again
  $PY -m vfr tune coco-val --encoder out/models/minilm-travel $B --hubness 0.5 --cache-dir out/cache --no-progress
  $R travel-hub-tuned $TEST -- --encoder out/models/minilm-travel --fusion auto $B
  $R soup4-hub $TEST,sugarcrepe -- --encoder out/models/minilm-soup4 --fusion auto $B
  $R mpnet-cal-hub $TEST,sugarcrepe -- --encoder out/models/mpnet-cal --fusion fixed $B
  $R hn2 $TEST,sugarcrepe -- --encoder out/models/minilm-hn2 --fusion auto
  $R distil $TEST,sugarcrepe -- --encoder out/models/minilm-distil --fusion auto
  $R crossfit $TEST,sugarcrepe -- --encoder out/models/minilm-crossfit --fusion auto
  $R wise $TEST,sugarcrepe -- --encoder out/models/minilm-wise --fusion auto
  $R hn2-r2 $TEST,sugarcrepe -- --encoder out/models/minilm-hn2-r2 --fusion auto
  $R hn2-seeds $TEST,sugarcrepe -- --encoder out/models/minilm-hn2-seeds --fusion auto
  for n in 1 3; do $R hn2-lex$n $TEST,sugarcrepe -- --encoder out/models/minilm-hn2-lex$n --fusion auto; done
  for b in imgbatch nofn; do $R hn2-$b $TEST,sugarcrepe -- --encoder out/models/minilm-hn2-$b --fusion auto; done
  $R hn2-fix-seeds $TEST,sugarcrepe -- --encoder out/models/minilm-hn2-fix-seeds --fusion auto
  $R hn2-fix-seeds-hub $TEST,sugarcrepe -- --encoder out/models/minilm-hn2-fix-seeds --fusion auto $B
  $R hn2-guide $TEST,sugarcrepe -- --encoder out/models/minilm-hn2-guide --fusion auto
  for m in hn4 hn2-2ep; do $R $m $TEST,sugarcrepe -- --encoder out/models/minilm-$m --fusion auto; done
  # the unseen-images recipe retrained with the batching fix (docs/travel.md), then with its fusion tuned for the bank
  for m in travel-fix travel-hn2; do $R $m $TEST,sugarcrepe -- --encoder out/models/minilm-$m --fusion auto; done
  $PY -m vfr tune coco-val --encoder out/models/minilm-travel-fix $B --hubness 0.5 --cache-dir out/cache --no-progress
  $R travel-fix-hub $TEST,sugarcrepe -- --encoder out/models/minilm-travel-fix --fusion auto $B
  # a uniform soup of three seeds of that recipe (docs/travel.md): seeds 1 and 2 alone on coco-test, the soup on
  # coco-val (validation) and everywhere, then with the bank and its fusion tuned for it on coco-val
  for m in travel-fix-s1 travel-fix-s2; do $R $m coco-test -- --encoder out/models/minilm-$m --fusion auto; done
  for m in travel-fix travel-seeds; do $R val-$m coco-val -- --encoder out/models/minilm-$m --fusion auto; done
  $R travel-seeds $TEST,sugarcrepe -- --encoder out/models/minilm-travel-seeds --fusion auto
  $PY -m vfr tune coco-val --encoder out/models/minilm-travel-seeds $B --hubness 0.5 --cache-dir out/cache --no-progress
  $R travel-seeds-hub $TEST,sugarcrepe -- --encoder out/models/minilm-travel-seeds --fusion auto $B
  # the batch-size, scale and learning-rate sweeps (docs/sweeps.md): each on coco-val (validation; the page's seen /
  # unseen split is `python benchmarks/seen_split.py out/ablate/val-travel-fix out/ablate/val-travel-…`) and
  # coco-test; the validation's picks (batch 16, lr 5e-5) on every test benchmark, lr 5e-5 also with the bank
  SWEEP="travel-b8 travel-b16 travel-b128 travel-sc10 travel-sc40 travel-lr1e5 travel-lr5e5 travel-lr1e4 travel-lr2e4"
  for m in $SWEEP; do $R val-$m coco-val -- --encoder out/models/minilm-$m --fusion auto; done
  for m in $SWEEP; do $R $m coco-test -- --encoder out/models/minilm-$m --fusion auto; done
  for m in travel-b16 travel-lr5e5; do $R $m $TEST,sugarcrepe -- --encoder out/models/minilm-$m --fusion auto; done
  $PY -m vfr tune coco-val --encoder out/models/minilm-travel-lr5e5 $B --hubness 0.5 --cache-dir out/cache --no-progress
  $R travel-lr5e5-hub $TEST,sugarcrepe -- --encoder out/models/minilm-travel-lr5e5 --fusion auto $B
  # both learning rates' seeds 1 and 2 and the soups of seeds 0-2 (sweeps.md § Seeds and soups): coco-val (its unseen
  # queries by seen_split.py, per seed and per soup) and coco-test, then with the bank and the fusion tuned for it
  SEEDS="travel-fix-s1 travel-fix-s2 travel-lr5e5-s1 travel-lr5e5-s2 travel-lr5e5-seeds"
  for m in $SEEDS; do $R val-$m coco-val -- --encoder out/models/minilm-$m --fusion auto; done
  for m in travel-lr5e5-s1 travel-lr5e5-s2 travel-lr5e5-seeds; do
    $R $m coco-test -- --encoder out/models/minilm-$m --fusion auto
  done
  for m in $SEEDS; do
    $PY -m vfr tune coco-val --encoder out/models/minilm-$m $B --hubness 0.5 --cache-dir out/cache --no-progress
  done
  for m in travel-fix-s1 travel-fix-s2 travel-lr5e5-s1 travel-lr5e5-s2; do
    $R $m-hub coco-test -- --encoder out/models/minilm-$m --fusion auto $B
  done
  $R travel-lr5e5-seeds-hub $TEST,sugarcrepe -- --encoder out/models/minilm-travel-lr5e5-seeds --fusion auto $B
  # the greedy soup of both rates' seeds chosen on coco-val (sweeps.md § A greedy soup; it keeps lr 5e-5 seed 2 alone,
  # so coco-test only), plain, then with the bank and the fusion tuned for it
  $R val-travel-greedy coco-val -- --encoder out/models/minilm-travel-greedy --fusion auto
  $R travel-greedy coco-test -- --encoder out/models/minilm-travel-greedy --fusion auto
  $PY -m vfr tune coco-val --encoder out/models/minilm-travel-greedy $B --hubness 0.5 --cache-dir out/cache --no-progress
  $R travel-greedy-hub coco-test -- --encoder out/models/minilm-travel-greedy --fusion auto $B
  # several describers per image (docs/views.md): the longest vs every model's description joined vs each its own
  # document, packaged and calibrated (the seed soup), on coco-val first; then sentence vectors on joined documents
  # (λ chosen on coco-val) and SugarCrepe with joined descriptions as queries. The longest-description runs are
  # base, val-base, travel-seeds and val-travel-seeds above.
  $R val-views coco-val -- --description-source concat
  $R views coco-test,coco-fg-test -- --description-source concat
  $R val-views-hub coco-val -- --description-source concat $B             # with the query bank, validation first
  $R views-hub coco-test,coco-fg-test -- --description-source concat $B
  $R val-views-each coco-val -- --description-source each
  $R views-each coco-test,coco-fg-test -- --description-source each
  V="--encoder out/models/minilm-travel-seeds --fusion auto --description-source concat"
  $R val-travel-seeds-views coco-val -- $V
  $R travel-seeds-views coco-test,coco-fg-test -- $V
  # with the bank: the fusion `vfr tune` chose for this model with a bank (above; it kept the built-in, p 0.85)
  $R val-travel-seeds-views-hub coco-val -- $V $B
  $R travel-seeds-views-hub coco-test,coco-fg-test -- $V $B
  for w in 0.1 0.25 0.5; do
    $R val-views-parts$w coco-val -- --description-source concat --parts sentences --parts-weight $w --retriever dense,hybrid
  done
  P="--description-source concat --parts sentences --parts-weight 0.25"
  $R views-parts coco-test,coco-fg-test -- $P
  $R val-travel-seeds-views-parts coco-val -- --encoder out/models/minilm-travel-seeds --fusion auto $P
  $R travel-seeds-views-parts coco-test,coco-fg-test -- --encoder out/models/minilm-travel-seeds --fusion auto $P
  $R base-sc sugarcrepe
  $R views-sc sugarcrepe -- --description-source concat
  $R val-mpnet coco-val -- --encoder mpnet --fusion auto     # mpnet-auto (the longest) is above
  $R val-mpnet-views coco-val -- --encoder mpnet --fusion auto --description-source concat
  $R mpnet-views coco-test,coco-fg-test -- --encoder mpnet --fusion auto --description-source concat
  # calibrating on joined documents (views.md), the COCO val recipe: minilm-cal (above) vs minilm-cal-joined
  $R cal-longest coco-test,coco-fg-test -- --encoder out/models/minilm-cal --fusion auto
  $R cal-views coco-test,coco-fg-test -- --encoder out/models/minilm-cal --fusion auto --description-source concat
  $R cal-joined coco-test,coco-fg-test -- --encoder out/models/minilm-cal-joined --fusion auto
  $R cal-joined-views coco-test,coco-fg-test -- --encoder out/models/minilm-cal-joined --fusion auto --description-source concat
fi
# each page of results_page.ABLATION_PAGES (the list docs/results.md embeds) from its spec, benchmarks/PAGE.json
PAGES=$("$PY" -c 'from vfr.eval.results_page import ABLATION_PAGES; print(" ".join(p[:-3] for p, _, _ in ABLATION_PAGES))')
for page in $PAGES; do
  "$PY" -m vfr.eval.ablation "benchmarks/$page.json" "docs/$page.md"
done
