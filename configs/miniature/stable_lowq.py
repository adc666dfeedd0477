# The stable stage on the low-quality web pages (the world's FineMath): the same model, steps and schedule as
# configs/miniature/stable.py, only the corpus differs.
#   python train.py configs/miniature/stable_lowq.py
model = "miniature"              # model.py's ~1M-parameter preset; the vocabulary is the tokenizer's
model_args = {"n_heads": 2, "n_kv_heads": 2}  # heads of 64, not 4 of 32: the copy of each number from the question
                                              # forms by step 400-500 (with 4 heads of 32, not by step 900: measured)
tokenizer = "out/miniature/world/tokenizer"
mixture = {"web": ("out/miniature/world/data/web_lq", 1.0)}
seq_len = 256
batch_tokens = 16 * 256
micro_batch = 16
lr = 3e-3
weight_decay = 0.0
max_steps = 600
warmup = 0.05
decay = 0
out_dir = "out/miniature/stable_lowq"
ckpt_every = 300
keep_checkpoints = 2
export_dtype = "float32"
