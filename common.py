"""
The run scaffold train.py and rl.py share (and eval.py, where it applies), written once: a run's start
(distributed setup, seeds, the resolved config printed and saved, resume detection), its logs, checkpoints and
hf/ export, the collectives over ranks, and the one atomic write for every file that must never be half-written.

A run folder, out_dir, holds
    config.json          the resolved config
    metrics.jsonl        a JSON object per step, "step" first; on resume cut back to the checkpoint's step
    samples.jsonl        (rl.py) a few whole samples per step, cut back the same way
    ckpt/step_NNNNNN/    model and optimizer (torch.distributed.checkpoint, any sharding), rng_<rank>.pt and
                         meta.json; written as ckpt/.tmp_step_NNNNNN and renamed when complete, so every step_*
                         is whole and the newest is where a re-run resumes
    hf/                  at the end: a Hugging Face model folder for eval.py, rl.py, transformers and vLLM
"""
import datetime
import json
import os
import random
import shutil
import signal
import sys
import uuid
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.checkpoint import checkpoint as checkpointed
from tqdm import tqdm

from configurator import config_json, configure

warnings.filterwarnings("ignore", message="torch.distributed is disabled")  # DCP in a single process: intended

# -----------------------------------------------------------------------------
# files and names


def write_atomic(path, data):
    """Write data (str, bytes, or a function that writes the open binary file f, or the file at f.name) to path
    through a temporary file and a rename: a crash leaves the old file or the new one, never half of one."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):  # a write that failed leaves no temporary file behind (weights: gigabytes)
            os.remove(tmp)


def is_hub_id(name):
    """Whether a name that is not a local path reads as a hub repo id, org/name (or org/name@revision: a branch,
    tag or commit): out/stable is local once out/ exists."""
    name = str(name)
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not os.path.exists(name) \
        and not os.path.isdir(name.split("/")[0])


def hub_download(repo_id, what, hint, **kwargs):
    """huggingface_hub's snapshot_download (cached) of repo_id, "org/name" or "org/name@revision". Under torchrun
    local rank 0 of each node downloads while the node's other ranks wait, then read its cache (every rank must
    call it, as every rank loads the same things; the node's ranks share HF_HOME). A failure (no such repo or
    revision, offline, gated) says which setting named it, what the hub answered, and `hint`: how to make or get
    the thing instead; on the other ranks, that local rank 0 failed."""
    from huggingface_hub import snapshot_download
    repo_id, _, revision = str(repo_id).partition("@")
    first = not dist.is_initialized() or int(os.environ.get("LOCAL_RANK", 0)) == 0
    folder = error = None
    if first:
        try:
            folder = snapshot_download(repo_id, revision=revision or None, **kwargs)
        except Exception as e:  # kept until the node's other ranks have stopped waiting
            error = e
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if dist.is_initialized() and all_max(error is not None, device):  # a barrier that also says who failed
        if error is None:
            raise FileNotFoundError(f"{what}={repo_id}: a node's local rank 0 could not download it (its error says "
                                    "why)") from None
    if not first and error is None:
        try:
            folder = snapshot_download(repo_id, revision=revision or None, local_files_only=True, **kwargs)
        except Exception as e:
            error = e
    if error is not None:
        answer = hub_answer(error)
        login = "" if "login" in answer else " (a gated repo needs `huggingface-cli login`)"
        raise FileNotFoundError(f"{what}={repo_id}{'@' + revision if revision else ''}: no such local path, and the "
                                f"hub answered: {answer}. {hint}{login}") from None
    return folder


def hub_answer(error):
    """The hub's answer in a line: a gated or private repo (401/403) says how to get access; other errors (the hub's
    are many classes) say what went wrong in their first line (their first two after "404 Client Error.").
    snapshot_download wraps the answer it got in an error about the cache, so the first error in the chain with
    an HTTP status is the one that says."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError
    e = error
    while e is not None and not isinstance(e, HfHubHTTPError):
        e = e.__cause__ or e.__context__
    status = getattr(getattr(e, "response", None), "status_code", None)
    if isinstance(e, GatedRepoError) or status in (401, 403):
        return (f"{status} (a gated or private repo, or one that does not exist): accept its license on the Hub, "
                "then log in with `huggingface-cli login` (or `hf auth login`, or set HF_TOKEN)")
    lines = [line.strip() for line in str(error if e is None else e).splitlines() if line.strip()]
    return " ".join(lines[:2] if lines and lines[0].endswith("Client Error.") else lines[:1]).rstrip(".") \
        or type(error).__name__  # "404 Client Error." alone does not say that it was the revision


def local_or_hub(name, what, hint, **kwargs):
    """A local path as it is; else, when it reads as org/name, its hub snapshot's folder; else a clear error."""
    if os.path.exists(name):
        return str(name)
    if not is_hub_id(name):
        raise FileNotFoundError(f"{what}={name} is neither a local file or folder nor a hub id like "
                                f"'meta-llama/Llama-3.2-1B'. {hint}")
    return hub_download(name, what, hint, **kwargs)

# -----------------------------------------------------------------------------
# distributed: one code path for 1 process and N (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK)


def setup_distributed(timeout_min=120):
    """(rank, world_size, device) from torchrun's environment; without it one process, nothing initialised.
    timeout_min: how long a rank may wait for the others in one collective before the run fails (NCCL's default
    is 10 minutes; a checkpoint or an eval's slowest rank can take longer)."""
    cuda = torch.cuda.is_available()
    if "RANK" not in os.environ:
        return 0, 1, torch.device("cuda" if cuda else "cpu")
    rank, world_size, local_rank = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=timeout_min))
    return rank, world_size, device


def all_sum(x, device):
    t = torch.tensor(x, dtype=torch.float64, device=device)
    if dist.is_initialized():
        dist.all_reduce(t)
    return t.item()


def all_max(x, device):
    t = torch.tensor(float(x), dtype=torch.float64, device=device)
    if dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.item()


def all_gather(values):
    """Every rank's list of values, joined in rank order (python objects, not tensors)."""
    if not dist.is_initialized():
        return list(values)
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, list(values))
    return [v for part in parts for v in part]


def barrier():
    if dist.is_initialized():
        dist.barrier()


def mixed_precision(device):
    """FSDP2's policy: on GPUs parameters gathered in bf16 and gradients reduced in fp32. A block's inputs are not
    cast (cast_forward_inputs=False): its activations arrive in bf16 anyway, and RoPE's cos/sin tables must stay
    fp32: in bf16 they keep 8 bits, an error of up to 2^-9 in every rotation, on every query and key."""
    from torch.distributed.fsdp import MixedPrecisionPolicy
    if device.type != "cuda":
        return MixedPrecisionPolicy()
    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32, cast_forward_inputs=False)


def parallelize(model, cfg, world_size, device):
    """Activation checkpointing, then torch.compile, then FSDP2, per block; then the root. On GPUs the
    parameters are sharded in fp32 and gathered in bf16, gradients reduced in fp32."""
    from torch.distributed.fsdp import fully_shard
    mp = mixed_precision(device)
    for block in model.layers:
        if cfg.activation_checkpointing:
            # wrap forward, not the module, so parameter names (and so checkpoints and exports) don't change
            block.forward = (lambda fwd: lambda *a: checkpointed(fwd, *a, use_reentrant=False))(block.forward)
        if cfg.compile:
            block.compile()
        if world_size > 1:
            fully_shard(block, mp_policy=mp)
    if world_size > 1:
        fully_shard(model, mp_policy=mp)
    return model

# -----------------------------------------------------------------------------
# checkpoints


def latest_checkpoint(out_dir):
    folder = os.path.join(out_dir, "ckpt")
    steps = sorted(d for d in os.listdir(folder) if d.startswith("step_")) if os.path.isdir(folder) else []
    return os.path.join(folder, steps[-1]) if steps else None


def rng_state():
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None}


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(out_dir, step, model, optimizer, meta, rank, keep):
    """model and optimizer (sharded, with torch.distributed.checkpoint), each rank's RNG, and meta.json, as
    ckpt/step_NNNNNN once all of it is written; then only the newest `keep` complete checkpoints stay."""
    import torch.distributed.checkpoint as dcp  # 0.4 s to import: only the scripts that checkpoint pay it
    from torch.distributed.checkpoint.state_dict import get_state_dict
    folder = os.path.join(out_dir, "ckpt")
    tmp, final = os.path.join(folder, f".tmp_step_{step:06d}"), os.path.join(folder, f"step_{step:06d}")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
    barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=tmp)
    torch.save(rng_state(), os.path.join(tmp, f"rng_{rank}.pt"))
    if rank == 0:
        write_atomic(os.path.join(tmp, "meta.json"), json.dumps(meta, indent=1))
    barrier()
    if rank == 0:
        shutil.rmtree(final, ignore_errors=True)  # a re-run that saves the same step again
        os.rename(tmp, final)
        for old in sorted(d for d in os.listdir(folder) if d.startswith("step_"))[:-keep]:
            shutil.rmtree(os.path.join(folder, old))
    barrier()


def load_checkpoint(path, model, optimizer=None, rank=None):
    """Load a checkpoint into a model (and optimizer) of any sharding, and with rank, that rank's RNG state;
    returns its meta.json."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (get_model_state_dict, get_state_dict, set_model_state_dict,
                                                         set_state_dict)
    if optimizer is None:
        state = {"model": get_model_state_dict(model)}
        dcp.load(state, checkpoint_id=path)
        set_model_state_dict(model, state["model"])
    else:
        model_state, optim_state = get_state_dict(model, optimizer)
        state = {"model": model_state, "optim": optim_state}
        dcp.load(state, checkpoint_id=path)
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    if rank is not None and os.path.exists(os.path.join(path, f"rng_{rank}.pt")):
        set_rng_state(torch.load(os.path.join(path, f"rng_{rank}.pt"), weights_only=False))
    with open(os.path.join(path, "meta.json")) as f:
        return json.load(f)


def export_hf(model, tokenizer, out_dir, dtype, rank):
    """out_dir/hf: the gathered weights in Hugging Face format plus the tokenizer, renamed in when complete."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        tmp, final = os.path.join(out_dir, ".tmp_hf"), os.path.join(out_dir, "hf")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, state_dict={k: v.to(getattr(torch, dtype)) for k, v in state.items()},
                              tokenizer=tokenizer)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
    barrier()


def open_log(out_dir, name, resume_step):
    """out_dir/name.jsonl for appending, cut back to the rows of steps <= resume_step (None: a fresh start, no
    rows), and to before a line a kill tore."""
    path = os.path.join(out_dir, f"{name}.jsonl")
    kept, lines = [], []
    if os.path.exists(path) and resume_step is not None:
        with open(path) as f:
            lines = f.read().splitlines()
    for line in lines:
        try:
            step = json.loads(line)["step"]
        except (ValueError, KeyError):
            break
        if step <= resume_step:
            kept.append(line)
    write_atomic(path, "".join(line + "\n" for line in kept))
    return open(path, "a")

# -----------------------------------------------------------------------------
# tracking: metrics.jsonl is the source of truth; wandb mirrors it when a config names a project


def open_wandb(cfg, out_dir, job_type, name, resume_step=None):
    """A wandb run mirroring this one when cfg.wandb_project is set (call it on rank 0 only), else None. wandb is
    imported only then. The resolved config goes with it. A resumed run (resume_step: its checkpoint's step) is
    a new wandb run, "name@step", in the group kept in out_dir/wandb_id: wandb's steps only go forward, and a
    crash may have logged steps past the checkpoint that the resumed run logs again. WANDB_MODE=offline works
    without network (`wandb sync` uploads later)."""
    if not getattr(cfg, "wandb_project", ""):
        return None
    check_wandb(cfg)
    import wandb
    path = os.path.join(out_dir, "wandb_id")
    group = open(path).read().strip() if resume_step is not None and os.path.exists(path) else uuid.uuid4().hex[:12]
    write_atomic(path, group)
    return wandb.init(project=cfg.wandb_project, name=name if resume_step is None else f"{name}@{resume_step}",
                      group=group, job_type=job_type, dir=out_dir, config=json.loads(config_json(cfg)))


def script_name(cfg):
    """"train" or "rl": the script whose Config cfg is (its job type in wandb)."""
    module = sys.modules.get(type(cfg).__module__)
    return os.path.basename(getattr(module, "__file__", "") or "run").removesuffix(".py")


def check_wandb(cfg):
    """A run that asks for wandb fails at its start when wandb is missing, not after its first steps."""
    import importlib.util
    if getattr(cfg, "wandb_project", "") and importlib.util.find_spec("wandb") is None:
        raise ImportError(f"wandb_project={cfg.wandb_project!r} needs wandb: `pip install wandb`, or leave "
                          "wandb_project empty (metrics.jsonl is written either way)")


def wandb_table(rows):
    """A list of dicts (the same keys) as a wandb.Table."""
    import wandb
    columns = list(rows[0])
    return wandb.Table(columns=columns, data=[[row[c] for c in columns] for row in rows])

# -----------------------------------------------------------------------------
# a run


@dataclass
class Run:
    """A run of train.py or rl.py: where it is (rank, world size, device), its folder, what it resumes from, and
    its logs. Only rank 0 writes logs and shows progress; every rank calls every method."""
    cfg: object                        # the script's resolved Config
    rank: int
    world_size: int
    device: torch.device
    resume: str = None                 # the newest complete checkpoint of out_dir: a re-run goes on from it
    done: bool = False                 # finished earlier (its last checkpoint and hf/ are there): nothing to do
    logs: dict = field(default_factory=dict)
    bar: tqdm = None
    wandb: object = None               # a wandb run mirroring the logs (cfg.wandb_project), on rank 0
    tables: dict = field(default_factory=dict)  # rows of the non-metrics logs not yet sent to wandb

    def open_logs(self, step, names=("metrics",)):
        """Open out_dir/<name>.jsonl for each name: cut back to the resumed checkpoint's step, or emptied; and the
        wandb run, when asked."""
        if self.rank == 0:
            self.logs = {name: open_log(self.cfg.out_dir, name, step if self.resume else None) for name in names}
            self.wandb = open_wandb(self.cfg, self.cfg.out_dir, script_name(self.cfg),
                                    os.path.basename(os.path.normpath(self.cfg.out_dir)),
                                    step if self.resume else None)

    def log(self, row, name="metrics"):
        """One row ({"step": ..., ...}) of a jsonl log, flushed at once so a kill loses nothing logged. wandb gets
        each metrics row at its step, and the other logs' rows (rl.py's samples) as one table per step."""
        if self.rank == 0:
            self.logs[name].write(json.dumps(row) + "\n")
            self.logs[name].flush()
            if self.wandb is not None:
                if name == "metrics":
                    self.send_tables()
                    self.wandb.log({k: v for k, v in row.items() if k != "step"}, step=row["step"])
                else:
                    self.tables.setdefault(name, []).append(row)

    def send_tables(self):
        """The table rows gathered since the last metrics row, at their step (wandb's steps only go forward)."""
        for name, rows in self.tables.items():
            self.wandb.log({name: wandb_table(rows)}, step=rows[0]["step"])
        self.tables = {}

    def progress(self, step):
        """The run's progress bar over steps (rank 0's; closed by finish)."""
        self.bar = tqdm(total=self.cfg.max_steps, initial=step, disable=self.rank != 0,
                        desc=os.path.basename(os.path.normpath(self.cfg.out_dir)))
        return self.bar

    def restore(self, model, optimizer):
        """Load the checkpoint a re-run resumes from, this rank's RNG included; returns its meta.json."""
        meta = load_checkpoint(self.resume, model, optimizer, self.rank)
        if self.rank == 0:
            print(f"resuming from {self.resume} (step {meta['step']})")
        return meta

    def checkpoint(self, step, model, optimizer, force=False, **extra):
        """At every ckpt_every steps and the last (or when forced): save model, optimizer and meta.json (the step,
        the model's and the run's config, the world size, and `extra`, e.g. the data loader's state)."""
        if force or self.checkpoint_due(step):
            meta = {"step": step, **extra, "model_config": asdict(model.config), "config": asdict(self.cfg),
                    "world_size": self.world_size}
            save_checkpoint(self.cfg.out_dir, step, model, optimizer, meta, self.rank, self.cfg.keep_checkpoints)

    def checkpoint_due(self, step):
        return step % self.cfg.ckpt_every == 0 or step == self.cfg.max_steps

    def preempted(self, step, model, optimizer, **extra):
        """After a step: whether SIGTERM or SIGUSR1 (SLURM's warning before the end of a job's time) reached any
        rank since the run started; if so the step's checkpoint is written (if ckpt_every did not just write it)
        and the run should return, exiting 0: re-running resumes from here. Every rank calls it each step (a
        one-number all-reduce), so all agree on where to stop."""
        if not all_max(PREEMPTED["signal"] or 0, self.device):
            return False
        if not self.checkpoint_due(step):  # else checkpoint() just wrote it
            self.checkpoint(step, model, optimizer, force=True, **extra)
        self.close()
        if self.rank == 0:
            name = signal.Signals(PREEMPTED["signal"]).name if PREEMPTED["signal"] else "a signal on another rank"
            print(f"{name}: stopped after step {step}, checkpoint written; re-run the same command to resume")
        return True

    def close(self):
        """The progress bar, the logs and the wandb run (its last tables sent)."""
        if self.bar is not None:
            self.bar.close()
        for f in self.logs.values():
            f.close()
        if self.wandb is not None:
            self.send_tables()
            self.wandb.finish()

    def finish(self, model, tokenizer):
        """Export out_dir/hf in cfg.export_dtype and close the progress bar and the logs."""
        export_hf(model, tokenizer, self.cfg.out_dir, self.cfg.export_dtype, self.rank)
        self.close()
        if self.rank == 0:
            print(f"done: {self.cfg.out_dir}/hf")


def autocast(device, world_size):
    """bf16 autocast for one GPU; FSDP2 casts itself (MixedPrecisionPolicy), and a CPU runs in fp32."""
    return torch.autocast("cuda", torch.bfloat16) if device.type == "cuda" and world_size == 1 else nullcontext()


def clip_gradients(model, max_norm):
    """Clip the gradients' global norm (over every rank's shards) to max_norm; returns the norm before, a float."""
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    return (norm.full_tensor() if hasattr(norm, "full_tensor") else norm).item()


def launch(main, defaults, preemptible=False):
    """A script's command line: main(the config of `defaults` with argv's config files and --key=value applied),
    (preemptible) SIGTERM and SIGUSR1 noted for Run.preempted, then the process group closed, whatever happened."""
    if preemptible:  # train.py and rl.py check after each step (Run.preempted); others keep the default, to die
        watch_preemption()
    try:
        main(configure(defaults))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


PREEMPTED = {"signal": None}  # the preemption signal this process received, if any


def watch_preemption():
    """SIGTERM and SIGUSR1 no longer kill the run at once: they are noted, and the training loop stops after its
    current step with a checkpoint (Run.preempted)."""
    def note(signum, frame):
        PREEMPTED["signal"] = signum
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, note)


def broadcast_object(obj):
    """Rank 0's obj on every rank (itself in one process)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def start_run(cfg, check=None):
    """Start a run of cfg (a Config with out_dir, seed, max_steps, ckpt_every, keep_checkpoints, export_dtype and
    dist_timeout_min): set up the ranks, seed every RNG, call check(cfg, world_size) (it raises on a config that
    cannot run, before anything is written), print the resolved config and save it as out_dir/config.json, and
    find the checkpoint to resume from. A run whose last checkpoint and hf/ are there is done: it says so and
    does nothing more."""
    rank, world_size, device = setup_distributed(cfg.dist_timeout_min)
    seed_everything(cfg.seed)
    if check:
        check(cfg, world_size)
    check_wandb(cfg)
    os.makedirs(cfg.out_dir, exist_ok=True)
    if rank == 0:
        print(config_json(cfg))
        write_atomic(os.path.join(cfg.out_dir, "config.json"), config_json(cfg) + "\n")
    # where to resume is rank 0's decision: a node-local out_dir would have the ranks disagree
    resume = broadcast_object(latest_checkpoint(cfg.out_dir) if rank == 0 else None)
    if world_size > 1 and resume and not os.path.isdir(resume):
        raise FileNotFoundError(f"rank {rank} does not see {resume}, rank 0's newest checkpoint: out_dir="
                                f"{cfg.out_dir} must be on a filesystem every node shares")
    done = bool(resume) and resume.endswith(f"step_{cfg.max_steps:06d}") and \
        os.path.isdir(os.path.join(cfg.out_dir, "hf"))
    if done and rank == 0:
        print(f"{cfg.out_dir} is complete ({resume}, hf/): nothing to do")
    return Run(cfg, rank, world_size, device, resume, done)
