"""
Data for mid-training: `prepare` (jsonl / jsonl.gz / parquet records -> uint32 token shards, with
tokenizer.py's Tokenizer) and MixtureLoader, which streams packed windows from several prepared sources
in exact weighted proportions, deterministically, resumably and sliced across ranks. The command line also
trains the small BPE tokenizer of the CPU miniature.

    python data.py train_tokenizer --inputs=../shared/data/gsm8k/train.jsonl --fmt=qa --out=out/tok
    python data.py prepare --inputs=../shared/data/gsm8k/train.jsonl --fmt=qa --tokenizer=out/tok --out_dir=out/gsm8k

A prepared folder holds
    index.json          tokenizer identity, settings, input files and sizes, shard counts, "complete"
    shard_000000.bin    whole documents as uint32 tokens, each [BOS] text [EOS] (BOS unless bos=False)
    shard_000000.idx    .npy int64 array: the end offset of each document within its shard
Shard k holds records [k*docs_per_shard, (k+1)*docs_per_shard) of the inputs in order. Each file
is written under a temporary name and renamed, the .idx last, so a shard is done exactly when its
.idx exists, and re-running an interrupted prepare with the same arguments redoes only the rest.

Batches: x, y, doc_ids, int64 of shape (rows, seq_len). A row is a window of seq_len+1 tokens of
one source; x = window[:-1], y = window[1:] (a plain shift: no -100 anywhere). doc_ids count
document starts from the row's first token (0,0,0,1,1,2,...): the EOS that ends a document has
that document's id, the next document's BOS a new one. The only target that crosses a boundary is
EOS -> next BOS, which is always right, so nothing needs masking; a model attending within
doc_ids runs never sees across documents.
"""
import glob
import gzip
import hashlib
import itertools
import json
import os
import resource
import string
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common import hub_download, write_atomic
from configurator import configure
from tokenizer import Tokenizer

# -----------------------------------------------------------------------------
# prepare: records -> token shards

FORMATS = {  # fmt names one of these, or is itself a template over the record's fields
    "text": "{text}",
    "qa": "Question: {question}\nAnswer: {answer}",
    "qa_solution": "Question: {question}\nAnswer: {solution}",  # QA with a worked solution beside its bare answer
    "problem_solution": "Problem:\n{problem}\n\nSolution:\n{solution}",
}
EXTENSIONS = (".jsonl", ".jsonl.gz", ".parquet")


def resolve_inputs(inputs):
    """Files, folders, globs and hub datasets ("hf:org/name" or "hf:org/name/<glob>") -> paths."""
    files = []
    for item in [inputs] if isinstance(inputs, (str, Path)) else inputs:
        item = str(item)
        if item.startswith("hf:"):
            parts = item[3:].split("/")
            pattern = "/".join(parts[2:])
            item = hub_download("/".join(parts[:2]), "inputs", "A hub dataset is written hf:org/name[@revision][/glob]",
                                repo_type="dataset",
                                allow_patterns=[pattern, pattern + "/*"] if pattern else [f"*{e}" for e in EXTENSIONS])
            if pattern:  # the snapshot may hold other files fetched before: only those the glob names
                item = os.path.join(item, pattern)
        if os.path.isdir(item):
            found = sorted(str(p) for p in Path(item).rglob("*") if p.name.endswith(EXTENSIONS))
        elif glob.has_magic(item) or os.path.isfile(item):
            found = sorted(glob.glob(item)) if glob.has_magic(item) else [item]
        else:
            raise FileNotFoundError(f"input {item!r}: no such file or folder (a hub dataset is written hf:org/name)")
        if not found or not all(f.endswith(EXTENSIONS) for f in found):
            raise ValueError(f"input {item!r} gave {found[:5]}; prepare reads {', '.join(EXTENSIONS)} files")
        files += [os.path.abspath(f) for f in found]
    return files


def read_records(path, fields):
    """(where, raw jsonl line or parquet row) for each record of a file, where = "file, line N"."""
    if path.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ImportError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from None
        table = pq.ParquetFile(path)
        missing = sorted(set(fields) - set(table.schema_arrow.names))
        if missing:
            raise ValueError(f"{path}: no column {missing} for fmt; it has {table.schema_arrow.names}")
        rows = (row for batch in table.iter_batches(4096, columns=fields) for row in batch.to_pylist())
        yield from ((f"{path}, row {i}", row) for i, row in enumerate(rows, 1))
        return
    with (gzip.open if path.endswith(".gz") else open)(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                yield f"{path}, line {lineno}", line  # parsed by a worker: a resumed run skips done shards


def template_fields(template):
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def format_record(template, fields, where, record):
    if isinstance(record, str):
        try:
            record = json.loads(record)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not valid JSON ({e.msg}, column {e.colno}); fix or delete that line") from None
    if not isinstance(record, dict):
        raise ValueError(f"{where}: a record must be a JSON object, not {type(record).__name__}")
    for f in fields:
        if record.get(f) is None:
            raise ValueError(f"{where}: field {f!r} is missing or null; the record has fields {sorted(record)}. "
                             "Pick fmt= to match them, e.g. fmt='Problem: {problem}\\nSolution: {solution}'")
    return template.format_map(record)


def read_chunks(files, fields, size):
    """The records of all files in order, in lists of `size`: list k is shard k, run after run."""
    records = itertools.chain.from_iterable(read_records(path, fields) for path in files)
    while chunk := list(itertools.islice(records, size)):
        yield chunk


def write_shard(out_dir, k, records, template, fields, bos, tokenizer):
    """Format, tokenize and write shard k; returns (k, n_tokens, n_docs)."""
    pieces, ends, n = [], [], 0
    head = np.array([tokenizer.bos_id] if bos else [], np.uint32)
    tail = np.array([tokenizer.eos_id], np.uint32)
    for where, record in records:
        ids = np.array(tokenizer.encode(format_record(template, fields, where, record)), np.uint32)
        pieces += [head, ids, tail]
        n += len(head) + len(ids) + 1
        ends.append(n)
    tokens = np.concatenate(pieces)
    name = Path(out_dir) / f"shard_{k:06d}"
    write_atomic(f"{name}.bin", tokens.tofile)
    write_atomic(f"{name}.idx", lambda f: np.save(f, np.array(ends, np.int64)))  # last: marks it done
    return k, len(tokens), len(ends)


def shard_done(out_dir, k):
    """(n_tokens, n_docs) of a complete shard k, or None."""
    name = Path(out_dir) / f"shard_{k:06d}"
    if not (os.path.exists(f"{name}.idx") and os.path.exists(f"{name}.bin")):
        return None
    ends = np.load(f"{name}.idx", mmap_mode="r")
    n_tokens = int(ends[-1])  # a shard always holds a document
    return (n_tokens, len(ends)) if os.path.getsize(f"{name}.bin") == 4 * n_tokens else None


def prepare(inputs, out_dir, tokenizer, fmt="text", bos=True, docs_per_shard=50_000, workers=None):
    """Tokenize the records of `inputs` into shards in out_dir (see the top of this file); returns
    the index. tokenizer: a Tokenizer or what from_pretrained takes; fmt: a name in FORMATS or
    a template such as "Q: {question}\\nA: {answer}"."""
    if isinstance(tokenizer, (str, Path)):
        tokenizer = Tokenizer.from_pretrained(tokenizer)
    files, template = resolve_inputs(inputs), FORMATS.get(fmt, fmt)
    fields = template_fields(template)
    if not files or not fields:
        raise ValueError(f"inputs={inputs!r} gave no files, or fmt={fmt!r} names no {{field}}: "
                         f"fmt is one of {sorted(FORMATS)} or a template over the records' fields")
    workers = workers or len(os.sched_getaffinity(0))  # the CPUs this process may use, not the node's
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    index_path = out_dir / "index.json"
    settings = {"fmt": template, "bos": bos, "docs_per_shard": docs_per_shard,
                "inputs": [[f, os.path.getsize(f)] for f in files]}  # a grown or swapped file must not resume
    index = {"format": "octothinker-shards-v1", "complete": False, "tokenizer": {
        "id": tokenizer.identity, "name": tokenizer.name, "n_vocab": tokenizer.n_vocab,
        "bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id}, **settings}
    if index_path.exists():
        old = json.loads(index_path.read_text())
        if old["tokenizer"]["id"] != tokenizer.identity:
            raise ValueError(f"{out_dir} holds shards of tokenizer {old['tokenizer']['id']} "
                             f"({old['tokenizer']['name']}), not {tokenizer.identity} ({tokenizer.name}); "
                             "prepare into a new out_dir, or delete this one")
        changed = [key for key in settings if old.get(key) != settings[key]]
        if changed:
            raise ValueError(f"{out_dir} was prepared with other {changed}; resuming would mix the two. "
                             "Re-run with the same arguments, or prepare into a new out_dir")
        if old["complete"]:
            print(f"{out_dir}: already prepared ({old['n_tokens']:,} tokens)")
            return old
    write_atomic(index_path, json.dumps(index, indent=1))
    for leftover in out_dir.glob("*.tmp*"):  # from writers that died mid-file
        leftover.unlink()

    counts, pending = {}, set()
    bar = tqdm(desc=f"prepare {out_dir.name}", unit="doc", unit_scale=True)
    pool = ProcessPoolExecutor(workers) if workers > 1 else None

    def finish(k, n_tokens, n_docs):
        counts[k] = (n_tokens, n_docs)
        bar.update(n_docs)
        bar.set_postfix(tokens=f"{sum(c[0] for c in counts.values()):,}")

    try:
        for k, chunk in enumerate(read_chunks(files, fields, docs_per_shard)):
            if done := shard_done(out_dir, k):
                finish(k, *done)
            elif pool is None:
                finish(*write_shard(out_dir, k, chunk, template, fields, bos, tokenizer))
            else:
                pending.add(pool.submit(write_shard, out_dir, k, chunk, template, fields, bos, tokenizer))
                # in memory at most workers + 2 chunks: one per worker, one queued, one being read (not 2 per
                # worker: on a 128-core node that was 256 chunks of records)
                if len(pending) > workers:
                    finished = wait(pending, return_when=FIRST_COMPLETED)[0]
                    pending.difference_update(finished)
                    for future in finished:
                        finish(*future.result())
        for future in wait(pending)[0]:
            finish(*future.result())
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    shards = [{"name": f"shard_{k:06d}", "n_tokens": n, "n_docs": d} for k, (n, d) in sorted(counts.items())]
    index.update(complete=True, shards=shards, n_tokens=sum(s["n_tokens"] for s in shards),
                 n_docs=sum(s["n_docs"] for s in shards))
    write_atomic(index_path, json.dumps(index, indent=1))
    return index

# -----------------------------------------------------------------------------
# MixtureLoader


def open_source(name, folder, tokenizer_id):
    folder = Path(folder)
    if not (folder / "index.json").exists():
        raise FileNotFoundError(f"source {name!r}: {folder}/index.json not found; "
                                f"run `python data.py prepare ... --out_dir={folder}` first")
    index = json.loads((folder / "index.json").read_text())
    if not index["complete"]:
        raise ValueError(f"source {name!r}: prepare of {folder} did not finish; re-run the same prepare command")
    if tokenizer_id is not None and index["tokenizer"]["id"] != tokenizer_id:
        raise ValueError(f"source {name!r} ({folder}) was prepared with tokenizer {index['tokenizer']['id']} "
                         f"({index['tokenizer']['name']}), but this run's tokenizer is {tokenizer_id}: "
                         "re-run `python data.py prepare` on its inputs with the run's tokenizer (new out_dir)")
    shards, starts = [], [0]
    for s in index["shards"]:
        tokens = np.memmap(folder / f"{s['name']}.bin", dtype=np.uint32, mode="r")
        ends = np.load(folder / f"{s['name']}.idx", mmap_mode="r")
        if len(tokens) != s["n_tokens"] or len(ends) != s["n_docs"]:
            raise ValueError(f"source {name!r}: {folder}/{s['name']} does not match index.json; prepare it again")
        shards.append((tokens, ends))
        starts.append(starts[-1] + len(tokens))
    return {"name": name, "shards": shards, "starts": np.array(starts), "n_tokens": starts[-1],
            "tokenizer": index["tokenizer"]["id"]}


def permute(i, n, key):
    """The i-th element of a seeded permutation of range(n): a 4-round Feistel network with cycle
    walking. A bijection computed per index, so a billion-window source needs no index list."""
    half = max(1, ((n - 1).bit_length() + 1) // 2)
    mask = (1 << half) - 1
    while True:
        left, right = i >> half, i & mask
        for k in key:
            f = ((right ^ k) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
            f = ((f ^ (f >> 29)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
            left, right = right, left ^ ((f ^ (f >> 32)) & mask)
        i = (left << half) | right
        if i < n:
            return i


class MixtureLoader:
    """Endless (x, y, doc_ids) batches from prepared sources {name: (folder, weight)}.

    batch_size is the global number of rows per step; rank r gets rows [r*B/W, (r+1)*B/W). Every
    rank plans the whole global batch (cheap) and reads only its rows, so the ranks' rows
    concatenate to the world_size=1 batch and the state is the same on every rank. Row g of the
    run goes to the source furthest below its share (weight * g - rows taken), so each source's
    token count stays within two rows (in practice one) of its share at every step. A source walks
    its windows (seq_len+1 tokens at stride seq_len, from an offset drawn per epoch) in an order
    permuted by (seed, name, epoch), and starts a new epoch when done. The state is counters.
    """

    def __init__(self, sources, seq_len, batch_size, rank=0, world_size=1, seed=0, tokenizer=None):
        if batch_size % world_size or not 0 <= rank < world_size:
            raise ValueError(f"batch_size={batch_size} (the global batch) must be divisible by "
                             f"world_size={world_size}, and 0 <= rank={rank} < world_size")
        self.names = sorted(sources)  # the order of a config dict must not change the stream
        weights = [float(sources[n][1]) for n in self.names]
        if not self.names or min(weights) <= 0:
            raise ValueError(f"sources need positive weights, got {dict(zip(self.names, weights))}")
        self.weights = [w / sum(weights) for w in weights]
        tokenizer_id = getattr(tokenizer, "identity", tokenizer)
        self.sources = [open_source(n, sources[n][0], tokenizer_id) for n in self.names]
        if len({s["tokenizer"] for s in self.sources}) > 1:
            raise ValueError("sources were prepared with different tokenizers: "
                             f"{ {s['name']: s['tokenizer'] for s in self.sources} }; prepare them all with one")
        for s in self.sources:
            if s["n_tokens"] < seq_len + 1:
                raise ValueError(f"source {s['name']!r} has {s['n_tokens']} tokens, fewer than seq_len+1={seq_len + 1}")
        self.seq_len, self.batch_size, self.seed = seq_len, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.rows = 0  # global rows planned so far
        self.taken, self.epoch, self.pos = [0] * len(self.names), [0] * len(self.names), [0] * len(self.names)
        self.plans = {}
        want = 2 * sum(len(s["shards"]) for s in self.sources) + 256  # each memmap holds a file descriptor
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < want and soft != resource.RLIM_INFINITY:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard != resource.RLIM_INFINITY else want, hard))

    def __iter__(self):
        return self

    def epoch_plan(self, s):
        """(Feistel keys, token offset, number of windows) of source s's current epoch."""
        if self.plans.get(s, (None,))[0] != self.epoch[s]:
            digest = hashlib.blake2b(f"{self.seed}/{self.names[s]}/{self.epoch[s]}".encode(), digest_size=40).digest()
            key = [int.from_bytes(digest[i:i + 8], "little") for i in range(0, 32, 8)]
            n_tokens, T = self.sources[s]["n_tokens"], self.seq_len
            offset = int.from_bytes(digest[32:], "little") % min(T, n_tokens - T)  # cuts move each epoch
            self.plans[s] = (self.epoch[s], key, offset, (n_tokens - 1 - offset) // T)
        return self.plans[s][1:]

    def next_window(self):
        """Plan the next global row: (source, first token of its window)."""
        self.rows += 1
        s = max(range(len(self.names)), key=lambda i: self.weights[i] * self.rows - self.taken[i])
        self.taken[s] += 1
        key, offset, n = self.epoch_plan(s)
        start = offset + permute(self.pos[s], n, key) * self.seq_len
        self.pos[s] += 1
        if self.pos[s] == n:
            if self.rank == 0:
                print(f"data: source {self.names[s]!r} finished epoch {self.epoch[s]} ({n:,} windows); "
                      f"epoch {self.epoch[s] + 1} starts with a new permutation")
            self.epoch[s], self.pos[s] = self.epoch[s] + 1, 0
        return s, start

    def read(self, source, start, tokens, doc_ids):
        """Copy tokens [start, start+seq_len+1) of a source (across shard ends) and number its docs."""
        end, starts = start + self.seq_len + 1, source["starts"]
        marks = np.zeros(self.seq_len + 1, np.int64)
        i, pos = int(np.searchsorted(starts, start, side="right")) - 1, start
        while pos < end:
            shard, ends = source["shards"][i]
            a, b = pos - starts[i], min(end, starts[i + 1]) - starts[i]
            tokens[pos - start:pos - start + b - a] = shard[a:b]
            lo, hi = np.searchsorted(ends, [a, b - 1], side="right")
            marks[ends[lo:hi] - a + (pos - start)] = 1  # a document starts right after each end
            marks[pos - start] = pos > start  # and a shard starts with a new document
            pos, i = pos + b - a, i + 1
        np.cumsum(marks[:self.seq_len], out=doc_ids)

    def __next__(self):
        n_rows = self.batch_size // self.world_size
        first = self.rank * n_rows
        tokens = np.empty((n_rows, self.seq_len + 1), np.int64)
        doc_ids = np.empty((n_rows, self.seq_len), np.int64)
        for row in range(self.batch_size):
            s, start = self.next_window()
            if first <= row < first + n_rows:
                self.read(self.sources[s], start, tokens[row - first], doc_ids[row - first])
        tokens = torch.from_numpy(tokens)
        return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous(), torch.from_numpy(doc_ids)

    def state_dict(self):
        return {"seed": self.seed, "seq_len": self.seq_len, "rows": self.rows,
                "weights": dict(zip(self.names, self.weights)),
                "sources": {n: {"taken": self.taken[s], "epoch": self.epoch[s], "pos": self.pos[s]}
                            for s, n in enumerate(self.names)}}

    def load_state_dict(self, state):
        mine = self.state_dict()
        for key in ["seed", "seq_len", "weights"]:
            if state[key] != mine[key]:
                raise ValueError(f"loader state has {key}={state[key]}, this loader {mine[key]}: its counters mean "
                                 "this stream only; to change seed, seq_len or mixture, start fresh with a new seed")
        self.rows = state["rows"]
        for s, n in enumerate(self.names):
            self.taken[s], self.epoch[s], self.pos[s] = (state["sources"][n][k] for k in ["taken", "epoch", "pos"])

# -----------------------------------------------------------------------------
# command line: python data.py {prepare,train_tokenizer} [config.py] [--key=value ...]

@dataclass
class PrepareConfig:
    inputs: list = field(default_factory=list)  # files, folders, globs or hf:org/name datasets
    out_dir: str = ""
    tokenizer: str = ""                # a tokenizer folder, a model folder, a hub id, or "llama3" (offline)
    fmt: str = "text"                  # a FORMATS name, or a template like "{question} {answer}"
    bos: bool = True
    docs_per_shard: int = 50_000
    workers: int = os.cpu_count() or 1


@dataclass
class TrainTokenizerConfig:
    inputs: list = field(default_factory=list)
    out: str = ""
    fmt: str = "text"
    vocab_size: int = 8192
    max_docs: int = 100_000            # it trains on the first max_docs records


def main(argv):
    commands = {"prepare": PrepareConfig, "train_tokenizer": TrainTokenizerConfig}
    if not argv or argv[0] not in commands:
        sys.exit(f"usage: python data.py {{{','.join(commands)}}} [config.py] [--key=value ...]")
    config = asdict(configure(commands[argv[0]](), argv[1:]))
    print(json.dumps(config, indent=1))
    missing = [key for key in ["inputs", "out_dir", "out", "tokenizer"] if key in config and not config[key]]
    if missing:
        sys.exit(f"data.py {argv[0]}: set {', '.join('--' + key for key in missing)}")
    if argv[0] == "prepare":
        return prepare(**config)
    template = FORMATS.get(config["fmt"], config["fmt"])
    fields = template_fields(template)
    records = next(read_chunks(resolve_inputs(config["inputs"]), fields, config["max_docs"]))
    texts = (format_record(template, fields, *r) for r in records)
    tokenizer = Tokenizer.train(texts, config["vocab_size"])
    tokenizer.save(config["out"])
    print(f"saved a {tokenizer.n_vocab}-token tokenizer ({tokenizer.identity}) to {config['out']}")


if __name__ == "__main__":
    main(sys.argv[1:])
