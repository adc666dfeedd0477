#!/usr/bin/env bash
# The OctoThinker recipe in miniature, on a CPU: a synthetic math world, a stable stage on its web pages, decay
# branches on different QA mixes, GRPO from each on two seeds, held-out evaluation of every base and RL model, and
# a report that judges each of the paper's findings with its statistics. Every line is an ordinary command;
# re-running skips what is finished and resumes what was interrupted. The report is out/miniature/report.md.
#   bash miniature.sh
#   TRAIN_ARGS="--max_steps=4" RL_ARGS="--max_steps=2" bash miniature.sh    # extra arguments for every run (a smoke test)
#   SEEDS="2 3" bash miniature.sh                                           # other RL seeds (a second run)
set -euo pipefail
W=out/miniature/world
M=out/miniature
TRAIN_ARGS=${TRAIN_ARGS:-}
RL_ARGS=${RL_ARGS:-}
EVAL_ARGS=${EVAL_ARGS:-}
SEEDS=${SEEDS:-0 1}
LANES=${LANES:-2}  # runs at once, each on its share of the cores: two single-threaded runs beat one two-threaded
                   # run on 2 cores (1.22x, measured)
# glibc: keep freed memory for the next step instead of handing it back and faulting it in again (4x fewer page
# faults; two lanes of 40 stable steps 37.2 s -> 32-36 s on a 2-core Intel Xeon, measured); 32 MiB is the largest
# mmap threshold every glibc accepts (older ones drop a larger one silently); other libcs ignore these
export MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-33554432}
export MALLOC_TRIM_THRESHOLD_=${MALLOC_TRIM_THRESHOLD_:-4294967296}
export MALLOC_TOP_PAD_=${MALLOC_TOP_PAD_:-536870912}
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT INT TERM  # a lane never outlives the script
stage() { echo "[$((SECONDS / 60))m$(printf %02d $((SECONDS % 60)))s] $*"; }  # where the minutes go

lanes() {  # lanes COMMAND...: run the commands LANES at a time, the next as soon as any ends; fail if one does
    local running=0 cmd threads
    threads=$(( $(nproc) / LANES > 0 ? $(nproc) / LANES : 1 ))
    for cmd in "$@"; do
        OMP_NUM_THREADS=$threads bash +B -c "$cmd" &  # +B: a {0: 24, 8: 32} in RL_ARGS stays as written
        running=$((running + 1))
        if [ $running -ge "$LANES" ]; then wait -n; running=$((running - 1)); fi  # a failed run stops the script
    done
    while [ $running -gt 0 ]; do wait -n; running=$((running - 1)); done
}

stage "the world, its tokenizer and shards"
# 1. the world (chained word problems k = 1-4 steps; web pages clean and poorer in reasoning; short and long
#    chain-of-thought QA; instructions; RL prompts; 600 held-out problems), a BPE tokenizer, token shards
python -m miniature.world configs/miniature/world.py --out_dir=$W
python data.py train_tokenizer --inputs=$W/qa_long.jsonl --fmt=qa_solution --vocab_size=1024 --out=$W/tokenizer
for corpus in web_hq web_lq; do
    python data.py prepare --inputs=$W/$corpus.jsonl --tokenizer=$W/tokenizer --out_dir=$W/data/$corpus
done
for corpus in qa_short qa_long instruct; do
    python data.py prepare --inputs=$W/$corpus.jsonl --fmt=qa_solution --tokenizer=$W/tokenizer --out_dir=$W/data/$corpus
done

stage "the stable stages"
# 2. the stable stage: constant learning rate on web pages, clean (and, for the data-quality finding, poorer)
lanes "python train.py configs/miniature/stable.py $TRAIN_ARGS" "python train.py configs/miniature/stable_lowq.py $TRAIN_ARGS"

stage "the decay branches"
# 3. decay branches, the same budget each: from the stable stage's end, from its midpoint (its first kept
#    checkpoint: less mid-training), and the low-quality stable stage with low-quality web in its decay
midpoint=$(ls -d $M/stable/ckpt/step_* | head -n 1)
lanes "python train.py configs/miniature/decay_short.py $TRAIN_ARGS" \
      "python train.py configs/miniature/decay_short_no_instruct.py $TRAIN_ARGS" \
      "python train.py configs/miniature/decay_long.py $TRAIN_ARGS" \
      "python train.py configs/miniature/decay_hybrid.py $TRAIN_ARGS" \
      "python train.py configs/miniature/decay_web_only.py $TRAIN_ARGS" \
      "python train.py configs/miniature/decay_hybrid.py --init_from=$midpoint --out_dir=$M/hybrid_half_stable $TRAIN_ARGS" \
      "python train.py configs/miniature/decay_hybrid_lowq.py $TRAIN_ARGS"

stage "the base models' evaluations"
# 4. each base model evaluated once, greedy: in the RL template (its strict accuracy is what the reward checks),
#    and few-shot, as the paper evaluates base models (worked training problems, then "Problem: ... Solution:"),
#    on the first 100 problems (its prompts are five times as long)
BRANCHES="short short_no_instruct long hybrid web_only hybrid_half_stable hybrid_lowq_web"
evals=()
for branch in $BRANCHES; do
    for mode in zeroshot fewshot; do
        out=$M/base/$branch
        limit=0
        [ $mode = zeroshot ] || out=$M/base_fewshot/$branch limit=100
        [ $out/results.json -nt $M/$branch/hf/config.json ] || evals+=("python eval.py --model=$M/$branch/hf --benchmarks=synth \
            --data_dir=$W/benchmarks --mode=$mode --template=qa_boxed --max_new_tokens=144 --last_number=false \
            --batch_size=128 --limit=$limit --out_dir=$out $EVAL_ARGS")
    done
done
lanes "${evals[@]}"

stage "GRPO"
# 5. GRPO from every base model on each seed, and from `long` with the long-CoT remedies (long_fix); each run
#    evaluates on the held-out set at its end
runs=()
for arm in $BRANCHES long_fix; do
    branch=$arm configs="configs/miniature/rl.py"
    [ $arm = long_fix ] && branch=long configs="configs/miniature/rl.py configs/miniature/rl_long_fix.py"
    for seed in $SEEDS; do
        runs+=("python rl.py $configs --init_from=$M/$branch/hf --seed=$seed --out_dir=$M/rl/$arm/seed$seed $RL_ARGS")
    done
done
lanes "${runs[@]}"

stage "the report"
# 6. the report: a table per branch, each finding's difference, seed spread, bootstrap interval and verdict
python -m miniature.report --out_dir=$M --seconds=$SECONDS
