# The 'hybrid' decay branch (../shared/RECIPE.md): 20B tokens from the stable run's checkpoint, the learning rate
# decayed (cosine) over the whole branch to a small floor, on short and long chain-of-thought QA.
# Values marked (?) are not confirmed by the paper's own text.
#   torchrun --nproc_per_node=8 train.py configs/decay_hybrid.py
init_from = "out/stable"               # its newest checkpoint (model config included)
init_optimizer = False                 # fresh AdamW state (True: continue the stable run's)
tokenizer = "meta-llama/Llama-3.2-1B"
mixture = {
    "web": ("out/data/megamath_web_pro_max", 0.30),   # (?) a share of the stable data
    "short_qa": ("out/data/short_cot_qa", 0.345),     # (?)
    "long_qa": ("out/data/long_cot_qa", 0.345),       # (?)
    "instruct": ("out/data/instruct", 0.01),          # (?)
}
seq_len = 8192                         # as in the stable stage
batch_tokens = 4 * 2**20
micro_batch = 2
max_steps = 4_768                      # 20B tokens / 4M
lr = 3e-5                              # the stable stage's, decayed from
warmup = 0
decay = 1.0                            # the whole branch decays
decay_shape = "cosine"
min_lr = 3e-6                          # (?) "a small floor"
out_dir = "out/decay_hybrid"
activation_checkpointing = False   # 1B at 2 x 8192 fits an 80 GB GPU without (--plan: 30 of 80 GiB); 3B and 8B: True
compile = True
ckpt_every = 500
seed = 1                               # a new data order: the web share must not replay the stable run's
