# The stable stage on the low-quality web pages (the world's FineMath): the same model, steps and schedule as
# configs/miniature/stable.py, only the corpus differs.
#   python train.py configs/miniature/stable_lowq.py
model = "miniature"              # model.py's ~1M-parameter preset; the vocabulary is the tokenizer's
tokenizer = "out/miniature/world/tokenizer"
mixture = {"web": ("out/miniature/world/data/web_lq", 1.0)}
seq_len = 256
batch_tokens = 16 * 256
micro_batch = 16
lr = 3e-3
weight_decay = 0.0
max_steps = 300
warmup = 0.05
decay = 0
out_dir = "out/miniature/stable_lowq"
ckpt_every = 150
keep_checkpoints = 2
export_dtype = "float32"
