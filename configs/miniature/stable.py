# The miniature's stable stage: configs/tiny.py's ~1M-parameter model from scratch on the synthetic world's clean
# math web pages, at a constant learning rate after a short warmup (no decay: the branches decay).
#   python train.py configs/miniature/stable.py
model = "tiny"
model_args = {"dim": 128, "n_layers": 4, "n_heads": 4, "n_kv_heads": 2, "ffn_dim": 384, "max_seq_len": 1024,
              "rope_original_len": 256}
tokenizer = "out/miniature/world/tokenizer"
mixture = {"web": ("out/miniature/world/data/web_hq", 1.0)}
seq_len = 256
batch_tokens = 16 * 256
micro_batch = 16
lr = 3e-3
weight_decay = 0.0
max_steps = 200
warmup = 0.05
decay = 0
out_dir = "out/miniature/stable"
ckpt_every = 100                 # step 100 is the shorter stable stage that hybrid_half_stable decays from
keep_checkpoints = 2
export_dtype = "float32"
