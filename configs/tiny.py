# A ~1M-parameter Llama mid-trained on the synthetic math world in about a minute on a CPU: warmup, stable and
# decay in one run, on math web pages and short chain-of-thought QA. Used by the tests and by configs/rl_tiny.py
# (whose init_commands make its data: miniature/world.py, then data.py train_tokenizer and prepare).
model = "miniature"              # model.py's ~1M-parameter preset; the vocabulary is the tokenizer's
tokenizer = "out/world/tokenizer"
mixture = {
    "web_hq": ("out/world/data/web_hq", 0.5),
    "qa_short": ("out/world/data/qa_short", 0.5),
}
seq_len = 256
batch_tokens = 16 * 256
micro_batch = 16
lr = 3e-3
min_lr = 3e-4
weight_decay = 0.0
max_steps = 150
warmup = 0.1
decay = 0.3
out_dir = "out/tiny"
ckpt_every = 50
export_dtype = "float32"
