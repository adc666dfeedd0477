# The miniature's stable stage: configs/tiny.py's ~1M-parameter model from scratch on the synthetic world's clean
# math web pages, at a constant learning rate after a short warmup (no decay: the branches decay).
#   python train.py configs/miniature/stable.py
model = "miniature"              # model.py's ~1M-parameter preset; the vocabulary is the tokenizer's
tokenizer = "out/miniature/world/tokenizer"
mixture = {"web": ("out/miniature/world/data/web_hq", 1.0)}
seq_len = 256
batch_tokens = 16 * 256
micro_batch = 16
lr = 3e-3
weight_decay = 0.0
max_steps = 300
warmup = 0.05
decay = 0
out_dir = "out/miniature/stable"
ckpt_every = 150                 # step 150 is the shorter stable stage that hybrid_half_stable decays from
keep_checkpoints = 2
export_dtype = "float32"
