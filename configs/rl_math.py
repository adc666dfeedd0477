# GRPO as in the paper (../shared/RECIPE.md): "zero" RL from a mid-trained base on MATH8K (MATH levels 3-5,
# ~8k problems with final answers), 128 prompts x 16 samples a step, PPO mini-batches of 64 prompts, sampling
# at temperature 1.0, lr 1e-6, no KL, responses up to 4096 tokens at first and more later (progressive).
# Values marked (?) are not confirmed by the paper's own text.
#   torchrun --nproc_per_node=8 rl.py configs/rl_math.py
init_from = "out/decay_hybrid/hf"        # or a released base, e.g. OctoThinker/OctoThinker-1B-Hybrid-Base
prompts = "out/data/math8k.jsonl"        # {"question", "answer"} per line; or hf:org/name/file.jsonl
template = "boxed"                       # "conversation" for long-CoT mid-trained models (see RECIPE.md)
prompts_per_step = 128
samples_per_prompt = 16
mini_batch_prompts = 64                  # two optimizer steps per rollout
temperature = 1.0
max_response_len = {0: 4096, 100: 8192}  # (?) when the limit grows
lr = 1e-6
kl_coef = 0.0
reward_wrong = 0.0                       # some released scripts use -1 for wrong or missing answers
reward_no_answer = 0.0
gen_batch = 256                          # each of 8 ranks generates its 16 prompts x 16 samples at once
micro_batch = 8
max_steps = 500                          # (?)
eval_data = "data/benchmarks"
eval_benchmarks = "math500,gsm8k,olympiadbench,amc23"
eval_every = 20
activation_checkpointing = True
out_dir = "out/rl_math"
ckpt_every = 20
