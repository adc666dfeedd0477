"""tokenizer.py and data.py: tokenizer round trips and layout, prepare (formats, errors, resume), MixtureLoader."""
import base64
import functools
import gzip
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tiktoken
import tiktoken.load
import torch

import data
from configurator import configure
from data import MixtureLoader, prepare
from tokenizer import LLAMA3_SPECIALS, Tokenizer

ROOT = Path(__file__).resolve().parents[1]
PATTERN = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
HOSTILE = [
    "", " ", "\x00", "\x00\x01\x7f", "\r\n\r\n", "\n\n\n  \t\t \n", " " * 100, "a" + " " * 33 + "b",
    "👩‍👩‍👧‍👦 🇺🇳 🏳️‍🌈", "e\u0301\u0302\u0303", "مرحبا بالعالم", "שָׁלוֹם", "日本語のテキスト", "한국어",
    "\u200b\u200c\u200d\ufeff", "\u2028\u2029\x85", "\U0010ffff\ue000\uffff", "ǅ ß ẞ ﬁ",
    "I'M WE'LL it'S", "1234567890123", "<|end_of_text|>", "<|begin_of_text|>x<|eot_id|>",
    "\\boxed{\\frac{1}{2}}", "x" * 5000, "é" * 2000,
]


def qa_text(record):
    return f"Question: {record['question']}\nAnswer: {record['answer']}"


@functools.lru_cache
def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@functools.lru_cache
def train_small(path):
    return Tokenizer.train((qa_text(r) for r in read_jsonl(path)[:2000]), 1024)


@pytest.fixture
def gsm8k(shared_data):
    return read_jsonl(shared_data / "gsm8k" / "train.jsonl")


@pytest.fixture
def tok(shared_data):
    """A 1024-token BPE trained on GSM8K (once per session)."""
    return train_small(shared_data / "gsm8k" / "train.jsonl")


def byte_tokenizer():
    specials = {s: 256 + i for i, s in enumerate(LLAMA3_SPECIALS[:16])}
    return Tokenizer({bytes([b]): b for b in range(256)}, specials)


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def read_docs(folder):
    """Every document of a prepared folder, in order, as lists of token ids."""
    index = json.loads((Path(folder) / "index.json").read_text())
    docs = []
    for s in index["shards"]:
        tokens = np.fromfile(Path(folder) / f"{s['name']}.bin", dtype=np.uint32)
        ends = np.load(Path(folder) / f"{s['name']}.idx")
        docs += [tokens[a:b].tolist() for a, b in zip([0, *ends[:-1]], ends)]
    return docs

# -----------------------------------------------------------------------------
# tokenizer


def test_from_pretrained_ranks_file_matches_tiktoken(tmp_path, tok, gsm8k):
    (tmp_path / "original").mkdir()
    with open(tmp_path / "original" / "tokenizer.model", "wb") as f:
        for token, rank in tok.ranks.items():
            f.write(base64.b64encode(token) + b" " + str(rank).encode() + b"\n")
    llama = Tokenizer.from_pretrained(tmp_path)
    n = len(tok.ranks)
    ref = tiktoken.Encoding("ref", pat_str=PATTERN, special_tokens={},
                            mergeable_ranks=tiktoken.load.load_tiktoken_bpe(str(tmp_path / "original" / "tokenizer.model")))
    for text in [qa_text(r) for r in gsm8k[-200:]] + HOSTILE:
        assert llama.encode(text) == ref.encode_ordinary(text)
    # Llama-3's layout: 256 special tokens right after the ranks (128000 for the real model)
    assert (llama.bos_id, llama.eos_id, llama.eot_id, llama.n_vocab) == (n, n + 1, n + 9, n + 256)
    assert llama.special_tokens["<|start_header_id|>"] == n + 6
    assert llama.special_tokens["<|end_header_id|>"] == n + 7
    assert llama.special_tokens["<|reserved_special_token_247|>"] == n + 255
    header = "<|start_header_id|>user<|end_header_id|>"
    assert llama.encode(header, allow_special=True)[0] == n + 6
    assert n + 6 not in llama.encode(header)


def gpt2_byte_chars():
    printable = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255]
    others = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(others)}}


def test_from_pretrained_tokenizer_json_matches_ranks_file(tmp_path, tok, gsm8k):
    chars = gpt2_byte_chars()
    n = len(tok.ranks)
    names = {n: "<|begin_of_text|>", n + 1: "<|end_of_text|>", n + 5: "<|reserved_special_token_2|>",
             n + 9: "<|eot_id|>"}  # the Llama-3.1 spelling of slot 5
    (tmp_path / "tokenizer.json").write_text(json.dumps({
        "model": {"vocab": {**{"".join(chars[b] for b in token): r for token, r in tok.ranks.items()},
                            "<|begin_of_text|>": n}},  # some files list special tokens here too
        "added_tokens": [{"id": i, "content": s} for i, s in names.items()]}))
    converted = Tokenizer.from_pretrained(tmp_path)
    assert converted.ranks == tok.ranks
    assert converted.special_tokens == {s: i for i, s in names.items()}
    for text in [qa_text(r) for r in gsm8k[:100]] + HOSTILE:
        assert converted.encode(text) == tok.encode(text)


def test_train_hand_computed_merges():
    # "abababab": ab x4 beats ba x3; then (ab,ab) x3; then (abab,abab) x1
    t = Tokenizer.train(["abababab"], 256 + 3 + 16)
    assert [t.ranks[b] for b in [b"ab", b"abab", b"abababab"]] == [256, 257, 258]
    assert t.encode("abababab") == [258]
    assert (t.n_vocab, t.bos_id, t.eos_id, t.eot_id) == (275, 259, 260, 268)
    # the split pattern keeps " ab" a separate chunk: (a,b) x2 first, then (' ', ab)
    t = Tokenizer.train(["ab ab"], 256 + 2 + 16)
    assert t.ranks[b"ab"] == 256 and t.ranks[b" ab"] == 257
    assert t.encode("ab ab") == [256, 257]


def test_train_speed_and_round_trip_on_gsm8k(gsm8k):
    texts = [qa_text(r) for r in gsm8k]  # ~4 MB
    t0 = time.perf_counter()
    t = Tokenizer.train(texts, 4096)
    seconds = time.perf_counter() - t0
    assert seconds < 30, f"BPE training on 4 MB took {seconds:.1f}s"
    assert t.n_vocab == 4096
    n_tokens = 0
    for text in texts:
        ids = t.encode(text)
        assert t.decode(ids) == text
        n_tokens += len(ids)
    assert sum(len(x.encode()) for x in texts) / n_tokens > 2.8  # it learned real merges


@pytest.mark.parametrize("which", ["trained", "bytes"])
def test_round_trip_hostile_unicode(tok, which):
    t = tok if which == "trained" else byte_tokenizer()
    rng = random.Random(0)
    planes = [(0x20, 0x7f), (0x80, 0x800), (0x800, 0xd800), (0xe000, 0x10000), (0x10000, 0x110000)]
    randoms = ["".join(chr(rng.randrange(*rng.choice(planes))) for _ in range(rng.randrange(1, 60)))
               for _ in range(300)]
    for text in HOSTILE + randoms:
        assert t.decode(t.encode(text)) == text, repr(text)
    assert t.eos_id not in t.encode("<|end_of_text|>")  # data text never turns into control tokens
    assert t.encode("<|end_of_text|>", allow_special=True) == [t.eos_id]


def test_save_load(tmp_path, tok):
    tok.save(tmp_path)
    back = Tokenizer.load(tmp_path)
    assert back.identity == tok.identity and back.special_tokens == tok.special_tokens
    assert tiktoken.load.load_tiktoken_bpe(str(tmp_path / "tokenizer.model")) == tok.ranks
    assert Tokenizer.from_pretrained(tmp_path).identity == tok.identity
    assert byte_tokenizer().identity != tok.identity

# -----------------------------------------------------------------------------
# prepare


def test_prepare_writes_each_record_as_bos_text_eos(tmp_path, tok, gsm8k):
    records = gsm8k[:300]
    index = prepare(write_jsonl(tmp_path / "a.jsonl", records), tmp_path / "out", tok, fmt="qa",
                    docs_per_shard=64, workers=1)
    expected = [[tok.bos_id] + tok.encode(qa_text(r)) + [tok.eos_id] for r in records]
    assert read_docs(tmp_path / "out") == expected
    assert index["complete"] and index["tokenizer"]["id"] == tok.identity
    assert [s["n_docs"] for s in index["shards"]] == [64, 64, 64, 64, 44]
    assert index["n_tokens"] == sum(map(len, expected))
    prepare(tmp_path / "a.jsonl", tmp_path / "nobos", tok, fmt="Q: {question}", bos=False, workers=1)
    assert read_docs(tmp_path / "nobos")[7] == tok.encode("Q: " + records[7]["question"]) + [tok.eos_id]


def test_prepare_gz_and_parallel_agree(tmp_path, tok, gsm8k):
    records = gsm8k[:250]
    write_jsonl(tmp_path / "a.jsonl", records)
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as f:
        f.write((tmp_path / "a.jsonl").read_text())
    reference = None
    for name, path, workers in [("jsonl", "a.jsonl", 1), ("gz", "b.jsonl.gz", 1), ("parallel", "a.jsonl", 2)]:
        prepare(tmp_path / path, tmp_path / name, tok, fmt="qa", docs_per_shard=40, workers=workers)
        reference = reference or read_docs(tmp_path / name)
        assert read_docs(tmp_path / name) == reference, name


def test_prepare_parquet(tmp_path, tok, gsm8k):
    pq = pytest.importorskip("pyarrow.parquet", reason="parquet input needs pyarrow")
    import pyarrow
    records = gsm8k[:250]
    pq.write_table(pyarrow.Table.from_pylist(records), tmp_path / "c.parquet", row_group_size=33)
    prepare(tmp_path / "c.parquet", tmp_path / "out", tok, fmt="qa", docs_per_shard=40, workers=1)
    assert read_docs(tmp_path / "out") == [[tok.bos_id] + tok.encode(qa_text(r)) + [tok.eos_id] for r in records]
    with pytest.raises(ValueError, match=r"c.parquet: no column \['text'\]"):
        prepare(tmp_path / "c.parquet", tmp_path / "out2", tok, workers=1)


def test_prepare_errors_say_where(tmp_path, tok):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "a"}\n\n{"question": "q"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl, line 3: field 'answer'"):
        prepare(bad, tmp_path / "o1", tok, fmt="qa", workers=1)
    bad.write_text('{"text": "ok"}\n{"text": oops}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl, line 2: not valid JSON"):
        prepare(bad, tmp_path / "o2", tok, workers=1)
    with pytest.raises(FileNotFoundError, match="no such file"):
        prepare(tmp_path / "missing.jsonl", tmp_path / "o3", tok)


def test_prepare_refuses_another_tokenizer(tmp_path, tok, gsm8k):
    src = write_jsonl(tmp_path / "a.jsonl", gsm8k[:50])
    prepare(src, tmp_path / "out", tok, fmt="qa", workers=1)
    with pytest.raises(ValueError, match="tokenizer .* prepare into a new out_dir"):
        prepare(src, tmp_path / "out", byte_tokenizer(), fmt="qa", workers=1)
    with pytest.raises(ValueError, match="other \\['docs_per_shard'\\]"):
        prepare(src, tmp_path / "out", tok, fmt="qa", docs_per_shard=7, workers=1)
    with open(src, "a") as f:  # a grown input is not silently ignored
        f.write(json.dumps(gsm8k[50]) + "\n")
    with pytest.raises(ValueError, match="other \\['inputs'\\]"):
        prepare(src, tmp_path / "out", tok, fmt="qa", workers=1)


def test_interrupted_prepare_resumes_without_duplicates_or_gaps(tmp_path, tok, gsm8k, monkeypatch):
    records = gsm8k[:300]
    src = write_jsonl(tmp_path / "a.jsonl", records)
    out = tmp_path / "out"
    real = data.write_shard

    def crash_on_shard_3(out_dir, k, *args):
        if k == 3:  # die between renaming the .bin and the .idx, leaving a shard that looks half done
            (Path(out_dir) / "shard_000003.bin").write_bytes(b"\0" * 12)
            (Path(out_dir) / "shard_000003.idx.tmp999").write_bytes(b"junk")
            raise KeyboardInterrupt
        return real(out_dir, k, *args)
    monkeypatch.setattr(data, "write_shard", crash_on_shard_3)
    with pytest.raises(KeyboardInterrupt):
        prepare(src, out, tok, fmt="qa", docs_per_shard=50, workers=1)
    assert not json.loads((out / "index.json").read_text())["complete"]
    with pytest.raises(ValueError, match="did not finish; re-run the same prepare"):
        MixtureLoader({"a": (out, 1.0)}, 16, 2)

    redone = []

    def count(out_dir, k, *args):
        redone.append(k)
        return real(out_dir, k, *args)
    monkeypatch.setattr(data, "write_shard", count)
    index = prepare(src, out, tok, fmt="qa", docs_per_shard=50, workers=1)
    assert redone == [3, 4, 5]  # shards 0-2 were kept, not re-tokenized
    assert read_docs(out) == [[tok.bos_id] + tok.encode(qa_text(r)) + [tok.eos_id] for r in records]
    assert index["n_docs"] == 300 and not list(out.glob("*.tmp*"))


def test_cli_prepare_and_config_errors(tmp_path, tok, gsm8k):
    tok.save(tmp_path / "tok")
    src = write_jsonl(tmp_path / "a.jsonl", gsm8k[:20])
    run = [sys.executable, str(ROOT / "data.py"), "prepare"]
    ok = subprocess.run(run + [f"--inputs={src}", f"--tokenizer={tmp_path / 'tok'}", "--fmt=qa",
                               f"--out_dir={tmp_path / 'out'}", "--workers=1"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert read_docs(tmp_path / "out")[0] == [tok.bos_id] + tok.encode(qa_text(gsm8k[0])) + [tok.eos_id]
    bad = subprocess.run(run + ["--out_dri=x"], capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown config key 'out_dri'" in bad.stderr and "out_dir" in bad.stderr
    # the configurator every script shares: a list setting takes a Python list, or one bare path
    assert configure(data.PrepareConfig(), [f"--inputs={src}", "--bos=false"]).inputs == [str(src)]
    assert configure(data.PrepareConfig(), [f"--inputs=['{src}', 'b.jsonl']"]).inputs == [str(src), "b.jsonl"]
    with pytest.raises(ValueError, match="expected a list"):
        configure(data.PrepareConfig(), ["--inputs=7"])

# -----------------------------------------------------------------------------
# MixtureLoader


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Three sources over disjoint alphabets (byte tokens), so a token tells its source."""
    root, rng, t = tmp_path_factory.mktemp("sources"), random.Random(0), byte_tokenizer()
    out = {}
    for name, letters, n_docs in [("a", "abcdefgh", 400), ("b", "ijklmnop", 300), ("c", "qrstuvwx", 30)]:
        docs = [{"text": "".join(rng.choice(letters) for _ in range(rng.randrange(1, 300)))} for _ in range(n_docs)]
        prepare(write_jsonl(root / f"{name}.jsonl", docs), root / name, t, docs_per_shard=37, workers=1)
        out[name] = root / name
    return out


def source_of(row):
    letters = "".join(sorted({chr(int(i)) for i in row if i < 256}))
    for name, alphabet in [("a", "abcdefgh"), ("b", "ijklmnop"), ("c", "qrstuvwx")]:
        if set(letters) <= set(alphabet):
            return name
    raise AssertionError(f"a row mixes sources: {letters}")


def test_batches_are_shifted_windows_with_doc_ids_after_each_eos(sources):
    t = byte_tokenizer()
    loader = MixtureLoader({n: (p, 1.0) for n, p in sources.items()}, 128, 8, tokenizer=t)
    streams = {n: np.concatenate([np.array(d) for d in read_docs(p)]) for n, p in sources.items()}
    for _ in range(20):
        x, y, doc_ids = next(loader)
        assert x.shape == y.shape == doc_ids.shape == (8, 128)
        assert x.dtype == y.dtype == doc_ids.dtype == torch.int64
        assert torch.equal(x[:, 1:], y[:, :-1])
        assert (doc_ids[:, 0] == 0).all()
        # a new document id starts exactly after each EOS, and nowhere else
        assert torch.equal(doc_ids.diff(dim=1), (x[:, :-1] == t.eos_id).long())
        for row_x, row_y in zip(x.numpy(), y.numpy()):
            stream = streams[source_of(row_x)]
            window = np.append(row_x, row_y[-1])
            hits = [s for s in np.flatnonzero(stream[:len(stream) - 128] == window[0])
                    if np.array_equal(stream[s:s + 129], window)]
            assert hits, "a row is not a contiguous window of its source"


def test_token_shares_match_weights(sources):
    weights = {"a": 0.5, "b": 0.3, "c": 0.2}
    loader = MixtureLoader({n: (sources[n], w) for n, w in weights.items()}, 64, 16, seed=3)
    count = dict.fromkeys(weights, 0)
    for step in range(1, 301):
        x, _, _ = next(loader)
        for row in x:
            count[source_of(row.numpy())] += 64
        for n, w in weights.items():  # never two rows off its share
            assert abs(count[n] - w * step * 16 * 64) < 2 * 64
    total = sum(count.values())
    for n, w in weights.items():
        assert abs(count[n] / total - w) < 0.01


def test_deterministic_given_seed(sources):
    def batches(seed):
        loader = MixtureLoader({n: (p, 1.0) for n, p in sources.items()}, 64, 4, seed=seed)
        return [torch.cat(next(loader)) for _ in range(10)]
    first, again, other = batches(0), batches(0), batches(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_resume_exactly_across_epochs(sources, capsys):
    config = ({n: (p, w) for (n, p), w in zip(sources.items(), [1, 1, 2])}, 64, 8)
    loader = MixtureLoader(*config, seed=5)
    for _ in range(40):  # source c (~4.5k tokens) wraps several times
        next(loader)
    state = json.loads(json.dumps(loader.state_dict()))
    assert len(json.dumps(state)) < 1000
    assert state["sources"]["c"]["epoch"] >= 2
    assert "source 'c' finished epoch 0" in capsys.readouterr().out
    expected = [torch.cat(next(loader)) for _ in range(30)]
    resumed = MixtureLoader(*config, seed=5)
    resumed.load_state_dict(state)
    assert all(torch.equal(a, torch.cat(next(resumed))) for a in expected)
    with pytest.raises(ValueError, match="seed"):
        MixtureLoader(*config, seed=6).load_state_dict(state)


def test_each_epoch_visits_every_window_once_in_a_new_order(sources):
    loader = MixtureLoader({"c": (sources["c"], 1.0)}, 64, 1, seed=0)
    orders, offsets = [], []
    for epoch in range(3):
        _, offset, n = loader.epoch_plan(0)
        starts = [loader.next_window()[1] for _ in range(n)]
        assert sorted(starts) == [offset + 64 * i for i in range(n)]
        orders.append([(s - offset) // 64 for s in starts])
        offsets.append(offset)
    assert orders[0] != orders[1] != orders[2] and len(set(offsets)) > 1  # new order, new cut points
    for n in [1, 2, 3, 7, 1000, 4097]:
        assert sorted(data.permute(i, n, [1, 2, 3, 4]) for i in range(n)) == list(range(n))


@pytest.mark.parametrize("world_size", [2, 4])
def test_rank_slices_concatenate_to_the_global_batch(sources, world_size):
    spec = {n: (p, w) for (n, p), w in zip(sources.items(), [3, 2, 1])}
    single = MixtureLoader(spec, 64, 8, seed=7)
    ranks = [MixtureLoader(spec, 64, 8, rank=r, world_size=world_size, seed=7) for r in range(world_size)]
    for _ in range(15):
        parts = [next(r) for r in ranks]
        for whole, sliced in zip(next(single), zip(*parts)):
            assert torch.equal(whole, torch.cat(sliced))
    assert all(r.state_dict() == single.state_dict() for r in ranks)
    with pytest.raises(ValueError, match="divisible by world_size=3"):
        MixtureLoader(spec, 64, 8, rank=0, world_size=3)


def test_loader_refuses_a_source_from_another_tokenizer(sources, tok):
    with pytest.raises(ValueError, match=r"source 'a' .* re-run `python data.py prepare`"):
        MixtureLoader({"a": (sources["a"], 1.0)}, 64, 2, tokenizer=tok)
    MixtureLoader({"a": (sources["a"], 1.0)}, 64, 2, tokenizer=byte_tokenizer())  # the right one is fine


WRITE_SHARD = data.write_shard


def slow_write_shard(*args):
    """data.write_shard, slowed down, in the pool's (forked) workers: chunks pile up unless prepare bounds them."""
    time.sleep(0.3)
    return WRITE_SHARD(*args)


def test_prepare_holds_at_most_workers_plus_two_chunks(tmp_path, monkeypatch):
    """Chunks read but not yet written (as shards) never exceed workers + 2, however slow the workers are."""
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"text": f"document {i} " * 5}) + "\n" for i in range(60)))
    tok = Tokenizer.train(["document 1 2 3"] * 10, 300)
    out, in_flight, read = tmp_path / "out", [], data.read_chunks

    def counted(*args):
        for k, chunk in enumerate(read(*args)):
            in_flight.append(k + 1 - len(list(out.glob("shard_*.bin"))))
            yield k, chunk

    monkeypatch.setattr(data, "write_shard", slow_write_shard)
    monkeypatch.setattr(data, "read_chunks", lambda *a: (c for _, c in counted(*a)))
    prepare(str(src), out, tok, docs_per_shard=2, workers=3)
    assert len(in_flight) == 30 and max(in_flight) <= 3 + 2, in_flight
