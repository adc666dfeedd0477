#!/usr/bin/env bash
# The OctoThinker recipe in miniature, on a CPU: a synthetic math world, a stable stage on its web pages, decay
# branches on different QA mixes, GRPO from each, held-out evaluation before and after. Every line is an ordinary
# command; re-running skips what is finished and resumes what was interrupted. The report is out/miniature/report.md.
#   bash miniature.sh
#   TRAIN_ARGS="--max_steps=4" RL_ARGS="--max_steps=2" bash miniature.sh    # extra arguments for every run (a smoke test)
set -euo pipefail
W=out/miniature/world
M=out/miniature
TRAIN_ARGS=${TRAIN_ARGS:-}
RL_ARGS=${RL_ARGS:-}

# 1. the world (web pages clean and noisy, short and long chain-of-thought QA, instructions, RL prompts, a
#    held-out set), a BPE tokenizer trained on it, and each corpus prepared into token shards
python -m miniature.world --out_dir=$W
python data.py train_tokenizer --inputs=$W/qa_long.jsonl --fmt=qa_solution --vocab_size=1024 --out=$W/tokenizer
for corpus in web_hq web_lq; do
    python data.py prepare --inputs=$W/$corpus.jsonl --tokenizer=$W/tokenizer --out_dir=$W/data/$corpus
done
for corpus in qa_short qa_long instruct; do
    python data.py prepare --inputs=$W/$corpus.jsonl --fmt=qa_solution --tokenizer=$W/tokenizer --out_dir=$W/data/$corpus
done

# 2. the stable stage: constant learning rate on web pages, clean (and, for the data-quality finding, noisy)
python train.py configs/miniature/stable.py $TRAIN_ARGS
python train.py configs/miniature/stable_lowq.py $TRAIN_ARGS

# 3. decay branches, the same budget each: from the stable stage's end, from its midpoint (its first kept
#    checkpoint: less mid-training), and from the noisy-web stable stage (data quality)
for branch in short long hybrid web_only; do
    python train.py configs/miniature/decay_$branch.py $TRAIN_ARGS
done
midpoint=$(ls -d $M/stable/ckpt/step_* | head -n 1)
python train.py configs/miniature/decay_hybrid.py --init_from=$midpoint --out_dir=$M/hybrid_half_stable $TRAIN_ARGS
python train.py configs/miniature/decay_hybrid.py --init_from=$M/stable_lowq --out_dir=$M/hybrid_lowq_web $TRAIN_ARGS

# 4. GRPO from every decayed model, two seeds; 5. each run evaluates on the held-out set at its start and end
for branch in short long hybrid web_only hybrid_half_stable hybrid_lowq_web; do
    for seed in 0 1; do
        python rl.py configs/miniature/rl.py --init_from=$M/$branch/hf --seed=$seed --out_dir=$M/rl/$branch/seed$seed $RL_ARGS
    done
done

# 6. the report: a table per branch, the paper's findings with the numbers here, plots
python -m miniature.report --out_dir=$M --seconds=$SECONDS
