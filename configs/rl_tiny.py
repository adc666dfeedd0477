# GRPO on a CPU in a few minutes: configs/tiny.py's model, mid-trained on the synthetic math world, learns to end
# its answers to the world's word problems in a checkable \boxed{} (the world's QA data boxes only 40% of its
# answers, so the mid-trained model rarely does when greedy) and gets more of them right. On a fresh clone,
# init_commands make that model first (about two minutes).
#   python rl.py configs/rl_tiny.py
init_from = "out/tiny/hf"
init_commands = [
    "python -m miniature.world --out_dir=out/world",
    "python data.py train_tokenizer --inputs=out/world/qa_long.jsonl --fmt=qa_solution --vocab_size=1024 --out=out/world/tokenizer",
    "python data.py prepare --inputs=out/world/web_hq.jsonl --tokenizer=out/world/tokenizer --out_dir=out/world/data/web_hq",
    "python data.py prepare --inputs=out/world/qa_short.jsonl --fmt=qa_solution --tokenizer=out/world/tokenizer --out_dir=out/world/data/qa_short",
    "python train.py configs/tiny.py --max_steps=400",
]
prompts = "out/world/rl.jsonl"
template = "qa"                  # the format of the world's QA data: "Question: ...\nAnswer:"
prompts_per_step = 16
samples_per_prompt = 8
mini_batch_prompts = 16
temperature = 1.0
max_response_len = {0: 80}       # the longest short solution is 71 tokens
gen_batch = 128
micro_batch = 64
reward_no_answer = -1.0          # a response without a final answer is worse than a wrong one
lr = 1e-4
max_steps = 40
eval_data = "out/world/benchmarks"
eval_benchmarks = "synth"
eval_every = 20
out_dir = "out/rl_tiny"
ckpt_every = 20
export_dtype = "float32"
log_samples = 2
