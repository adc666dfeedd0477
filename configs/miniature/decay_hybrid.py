# The miniature's 'hybrid' decay branch: from the stable stage's last checkpoint, the same token budget as every
# branch, the learning rate decayed (cosine) to a tenth; on short and long QA and a little instruction data, the
# paper's recommended mix.
#   python train.py configs/miniature/decay_hybrid.py
init_from = "out/miniature/stable"
mixture = {"web": ("out/miniature/world/data/web_hq", 0.3), "qa_short": ("out/miniature/world/data/qa_short", 0.275),
           "qa_long": ("out/miniature/world/data/qa_long", 0.275), "instruct": ("out/miniature/world/data/instruct", 0.15)}
seq_len = 256
batch_tokens = 8 * 256            # 128 steps of 8 rows, not 64 of 16: the steps keep the copying (measured)
micro_batch = 8
max_steps = 128
lr = 3e-3
min_lr = 3e-4
weight_decay = 0.0
warmup = 0
decay = 1.0
decay_shape = "cosine"
ckpt_every = 128
export_dtype = "float32"
seed = 1                         # a new data order: the web share must not replay the stable stage's
out_dir = "out/miniature/hybrid"
