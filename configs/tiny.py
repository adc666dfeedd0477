# A ~1M-parameter Llama that mid-trains on CPU in under a minute: warmup, stable and decay in one run.
# Used by the tests and as a quick check that everything works. Its data (see README):
#   python world.py --out_dir=out/world
#   python data.py train_tokenizer --inputs=out/world/web_hq.jsonl --vocab_size=512 --out=out/world/tokenizer
#   python data.py prepare --inputs=out/world/web_hq.jsonl --tokenizer=out/world/tokenizer --out_dir=out/world/data/web_hq
model = "tiny"
model_args = {"dim": 128, "n_layers": 4, "n_heads": 4, "n_kv_heads": 2, "ffn_dim": 384, "vocab_size": 512,
              "max_seq_len": 1024, "rope_original_len": 128}
tokenizer = "out/world/tokenizer"
mixture = {"web_hq": ("out/world/data/web_hq", 1.0)}
seq_len = 128
batch_tokens = 16 * 128
micro_batch = 8
lr = 3e-3
min_lr = 3e-4
weight_decay = 0.0
max_steps = 150
warmup = 0.1
decay = 0.3
decay_shape = "cosine"
out_dir = "out/tiny"
ckpt_every = 50
export_dtype = "float32"
