# The paper's stable stage for Llama-3.2-1B (../shared/RECIPE.md): 200B tokens at a constant learning rate,
# mostly math web text, 4M-token batches of 8k-token sequences. Prepare each corpus with data.py first
# (README, "At scale"). Values marked (?) are not confirmed by the paper's own text: easy to change here.
#   torchrun --nproc_per_node=8 train.py configs/stable.py
init_from = "meta-llama/Llama-3.2-1B"
mixture = {  # name: (prepared folder, share of tokens)
    "megamath_web_pro_max": ("out/data/megamath_web_pro_max", 0.70),  # (?) the curated 70B-token corpus
    "megamath_web_pro": ("out/data/megamath_web_pro", 0.15),          # (?)
    "general": ("out/data/dclm", 0.08),                               # (?) general web text
    "code": ("out/data/megamath_code", 0.04),                         # (?)
    "qa": ("out/data/megamath_qa", 0.03),                             # (?)
}
seq_len = 8192
batch_tokens = 4 * 2**20           # 512 sequences of 8192
micro_batch = 2                    # per GPU: 32 accumulation steps on 8 GPUs
max_steps = 47_684                 # 200B tokens / 4M
lr = 3e-5                          # (?) the controlled experiments' peak
warmup = 0.005                     # (?)
decay = 0.0                        # stable: constant to the end; the decay branches start from here
activation_checkpointing = False   # 1B at 2 x 8192 fits an 80 GB GPU without (--plan: 30 of 80 GiB); 3B and 8B: True
compile = True
out_dir = "out/stable"
ckpt_every = 1000
