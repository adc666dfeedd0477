# The miniature's GRPO: the same prompts, budget and settings from every decayed model (init_from and out_dir
# are set per branch and seed by miniature.sh). As configs/rl_tiny.py, with responses long enough for long CoT.
#   python rl.py configs/miniature/rl.py --init_from=out/miniature/hybrid/hf --out_dir=out/miniature/rl/hybrid/seed0
init_from = "out/miniature/hybrid/hf"
prompts = "out/miniature/world/rl.jsonl"
template = "qa"
prompts_per_step = 16
samples_per_prompt = 8
mini_batch_prompts = 16
temperature = 1.0
max_response_len = {0: 160}
gen_batch = 128
micro_batch = 32
reward_no_answer = -1.0
lr = 1e-4
max_steps = 14
eval_data = "out/miniature/world/benchmarks"
eval_benchmarks = "synth"
eval_every = 14
ckpt_every = 14
export_dtype = "float32"
log_samples = 2
