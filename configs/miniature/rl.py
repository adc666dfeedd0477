# The miniature's GRPO: the same prompts, budget and settings from every decayed model (init_from and out_dir
# are set per branch and seed by miniature.sh). The paper's reward (1 right, else 0: no reward for a format
# alone), the qa_boxed template (the QA data's frame, asking for \boxed{} as the paper's template does), and a
# response limit that binds for long chain-of-thought (its solutions of 3-4 steps run 150-190 tokens).
#   python rl.py configs/miniature/rl.py --init_from=out/miniature/hybrid/hf --out_dir=out/miniature/rl/hybrid/seed0
init_from = "out/miniature/hybrid/hf"
prompts = "out/miniature/world/rl.jsonl"
template = "qa_boxed"
prompts_per_step = 16
samples_per_prompt = 8
mini_batch_prompts = 16
temperature = 1.0
max_response_len = {0: 144}
gen_batch = 128
micro_batch = 32
reward_no_answer = 0.0
lr = 1e-4
max_steps = 10
eval_data = "out/miniature/world/benchmarks"
eval_benchmarks = "synth"
eval_every = 10
eval_at_start = False            # miniature.sh evaluates each base model once (out/miniature/base/), not per seed
ckpt_every = 10
export_dtype = "float32"
log_samples = 2
