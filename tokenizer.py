"""
Llama-3's tokenizer on tiktoken: byte-level BPE with Llama-3's split pattern and special tokens. It loads
Llama-3's own ranks (original/tokenizer.model, or a tokenizer.json) from a model folder or the hub, or offline
from Meta's llama-models package (`"llama3"`), or a small BPE trained here for the CPU miniature
(`python data.py train_tokenizer`). It saves as tiktoken's ranks file, and, for an export, also as the files
transformers' AutoTokenizer, vLLM and lm-eval read (save_hf).

    tok = Tokenizer.from_pretrained("llama3")                   # or "meta-llama/Llama-3.2-1B", or a folder
    ids = [tok.bos_id] + tok.encode("1 + 1 = 2")                # special-token strings in text stay text
    assert tok.decode(ids[1:]) == "1 + 1 = 2"

A tokenizer's identity (a hash of its ranks, specials and pattern) is what prepared shards record, so a loader
never mixes token ids of two tokenizers.
"""
import base64
import collections
import hashlib
import heapq
import importlib.util
import json
import tempfile
from pathlib import Path

import regex
import tiktoken

from common import local_or_hub, write_atomic

LLAMA3_PATTERN = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
# Llama-3.1/3.2's 256 special tokens, from id len(ranks) = 128000 on. Llama-3.0 names some
# reserved slots differently (same ids), so from_pretrained prefers a model's own file's names.
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                   "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
                   "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]
LLAMA3_SPECIALS += [f"<|reserved_special_token_{i}|>" for i in range(3, 3 + 256 - len(LLAMA3_SPECIALS))]
TRAINED_SPECIALS = 16  # a trained tokenizer keeps the first 16, at Llama-3's offsets from the first


class Tokenizer:
    """Byte-level BPE on tiktoken: `ranks` maps token bytes to ids, `special_tokens` names to ids."""

    def __init__(self, ranks, special_tokens, name="tokenizer"):
        self.ranks, self.special_tokens, self.name = ranks, special_tokens, name
        self.enc = tiktoken.Encoding(name, pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks,
                                     special_tokens=special_tokens)
        self.bos_id, self.eos_id = special_tokens["<|begin_of_text|>"], special_tokens["<|end_of_text|>"]
        self.eot_id = special_tokens["<|eot_id|>"]
        self.n_vocab = self.enc.n_vocab
        specials = json.dumps(sorted(special_tokens.items(), key=lambda kv: kv[1]))
        # what prepared shards record and a loader checks: the ranks file, the specials, the pattern
        self.identity = hashlib.sha256(self.ranks_file() + specials.encode() + LLAMA3_PATTERN.encode()).hexdigest()[:16]

    def encode(self, text, allow_special=False):
        # special-token strings inside data are plain text unless asked for (chat templates)
        return self.enc.encode(text, allowed_special="all") if allow_special else self.enc.encode_ordinary(text)

    def decode(self, ids):
        # decode(encode(s)) == s for every str UTF-8 can hold (a lone surrogate becomes U+FFFD)
        return self.enc.decode(ids.tolist() if hasattr(ids, "tolist") else list(ids))

    def ranks_file(self):
        """tiktoken's ranks format, as Llama-3 ships it in original/tokenizer.model."""
        return b"".join(base64.b64encode(t) + b" %d\n" % r for t, r in sorted(self.ranks.items(), key=lambda kv: kv[1]))

    def save(self, folder):
        """tokenizer.model (the ranks file) + special_tokens.json."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / "tokenizer.model", self.ranks_file())
        write_atomic(folder / "special_tokens.json", json.dumps(self.special_tokens, indent=0))

    def check_hf(self):
        """save_hf numbers the special tokens on from the ranks, in id order (as Llama-3's are): a tokenizer whose
        specials are not is an error at a run's start (train.py, rl.py), not at its export."""
        ids = sorted(self.special_tokens.values())
        if ids != list(range(len(self.ranks), len(self.ranks) + len(ids))) or len(set(self.ranks.values())) != \
                len(self.ranks) or max(self.ranks.values()) != len(self.ranks) - 1:
            raise ValueError(f"{self.name}: its special tokens are not numbered on from its {len(self.ranks)} ranks "
                             "without gaps, which an export's tokenizer.json needs")

    def save_hf(self, folder, model_max_length):
        """tokenizer.json, tokenizer_config.json and special_tokens_map.json, as a Llama-3 base model's folder has
        them: transformers' tiktoken converter on our ranks (byte-level BPE, Llama-3's split pattern, every special
        token at its id), BOS added in front as Llama-3's post-processor does, EOS end_of_text, no chat template."""
        from tokenizers import AddedToken, processors
        from transformers.convert_slow_tokenizer import TikTokenConverter
        with tempfile.NamedTemporaryFile(suffix=".tiktoken") as f:
            f.write(self.ranks_file())
            f.flush()
            hf = TikTokenConverter(vocab_file=f.name, pattern=LLAMA3_PATTERN).converted()
        hf.add_special_tokens([AddedToken(name, normalized=False, special=True)  # numbered on from the ranks
                               for name, _ in sorted(self.special_tokens.items(), key=lambda kv: kv[1])])
        self.check_hf()
        assert all(hf.token_to_id(name) == i for name, i in self.special_tokens.items())
        bos = "<|begin_of_text|>"
        hf.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos}:1 $B:1",
                                          special_tokens=[(bos, self.bos_id)])])
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / "tokenizer.json", hf.to_str(pretty=True))
        token = lambda name: {"content": name, "lstrip": False, "normalized": False, "rstrip": False,  # noqa: E731
                              "single_word": False, "special": True}
        write_atomic(folder / "tokenizer_config.json", json.dumps({
            "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos, "eos_token": "<|end_of_text|>",
            "model_max_length": model_max_length, "model_input_names": ["input_ids", "attention_mask"],
            # decode(encode(s)) == s: no clean-up of spaces before punctuation
            "clean_up_tokenization_spaces": False,
            "added_tokens_decoder": {str(i): token(name) for name, i in sorted(self.special_tokens.items(),
                                                                               key=lambda kv: kv[1])}}, indent=2))
        write_atomic(folder / "special_tokens_map.json", json.dumps({
            "bos_token": {k: v for k, v in token(bos).items() if k != "special"},
            "eos_token": {k: v for k, v in token("<|end_of_text|>").items() if k != "special"}}, indent=2))

    @classmethod
    def load(cls, folder):
        folder = Path(folder)
        specials = json.loads((folder / "special_tokens.json").read_text())
        return cls(read_ranks(folder / "tokenizer.model"), specials, name=str(folder))

    @classmethod
    def from_pretrained(cls, path_or_repo_id):
        """Llama-3's tokenizer from a model folder or hub repo id (original/tokenizer.model, else
        tokenizer.json), a folder written by save(), or "llama3": Meta's own, offline (llama3())."""
        if str(path_or_repo_id) == "llama3" and not Path("llama3").exists():
            return cls.llama3()
        hint = (f"A trained tokenizer is made by `python data.py train_tokenizer --inputs=... --out={path_or_repo_id}` "
                "(README: the recipe on a CPU, by hand); a model folder holds its own")
        folder = Path(local_or_hub(str(path_or_repo_id), "tokenizer", hint,
                                   allow_patterns=["original/tokenizer.model", "tokenizer.json"]))
        if (folder / "special_tokens.json").exists():
            return cls.load(folder)
        ranks_file = next((folder / f for f in ["original/tokenizer.model", "tokenizer.model"]
                           if (folder / f).exists()), None)
        if ranks_file:
            ranks = read_ranks(ranks_file)
        elif (folder / "tokenizer.json").exists():
            ranks = ranks_from_tokenizer_json(folder / "tokenizer.json")
        else:
            raise FileNotFoundError(f"{folder}: no original/tokenizer.model, tokenizer.model or "
                                    "tokenizer.json; is this a Llama-3 model folder?")
        specials = special_names(folder) or {s: len(ranks) + i for i, s in enumerate(LLAMA3_SPECIALS)}
        return cls(ranks, specials, name=str(path_or_repo_id))

    @classmethod
    def llama3(cls):
        """Llama-3's tokenizer without Hub access: the 128,000 ranks Meta's llama-models package ships
        (llama_models/llama3/tokenizer.model), with Llama-3.1/3.2's 256 special tokens as the Hub's Llama-3.2
        tokenizer.json names them (the same ids as Meta's class; it names 128005 and 128011 <|step_id|> and
        <|image|> and numbers its reserved slots from there)."""
        spec = importlib.util.find_spec("llama_models")  # found, not imported: the package imports much else
        path = Path(spec.origin).parent / "llama3" / "tokenizer.model" if spec and spec.origin else None
        if path is None or not path.exists():
            raise FileNotFoundError("tokenizer=llama3 reads Llama-3's ranks from Meta's llama-models package, which "
                                    "is not installed: `pip install llama-models` (no Hub access needed), or name "
                                    "a model folder or hub id such as meta-llama/Llama-3.2-1B")
        ranks = read_ranks(path)
        return cls(ranks, {s: len(ranks) + i for i, s in enumerate(LLAMA3_SPECIALS)}, name="llama3")

    @classmethod
    def train(cls, texts, vocab_size):
        """Byte-level BPE with Llama-3's split pattern; vocab_size includes the 16 special tokens.
        Counts pairs over the unique pre-tokenized chunks (weighted by their counts) and, after each
        merge, updates only the chunks that held the merged pair."""
        n_tokens = vocab_size - TRAINED_SPECIALS
        if n_tokens < 256:
            raise ValueError(f"vocab_size={vocab_size} is below 256 bytes + {TRAINED_SPECIALS} special tokens")
        pattern, chunks = regex.compile(LLAMA3_PATTERN), collections.Counter()
        for text in texts:
            chunks.update(pattern.findall(text))
        words, counts = [list(c.encode()) for c in chunks], list(chunks.values())
        vocab = [bytes([b]) for b in range(256)]  # id -> bytes
        ids = {b: i for i, b in enumerate(vocab)}
        pair_count, where = collections.Counter(), collections.defaultdict(set)
        for w, word in enumerate(words):
            for pair in zip(word, word[1:]):
                pair_count[pair] += counts[w]
                where[pair].add(w)
        heap = [(-n, pair) for pair, n in pair_count.items()]  # ties go to the lowest ids
        heapq.heapify(heap)
        while len(vocab) < n_tokens and heap:
            n, pair = heapq.heappop(heap)
            if -n != pair_count[pair]:  # stale entry: counts only grow through a fresh push
                if pair_count[pair] > 0:
                    heapq.heappush(heap, (-pair_count[pair], pair))
                continue
            merged = vocab[pair[0]] + vocab[pair[1]]
            if merged not in ids:  # (ab)c and a(bc) are the same bytes, so the same token
                ids[merged] = len(vocab)
                vocab.append(merged)
            new, changed = ids[merged], set()
            for w in where.pop(pair):
                word, n_w = words[w], counts[w]
                for p in zip(word, word[1:]):
                    pair_count[p] -= n_w
                words[w] = word = merge_pair(word, pair, new)
                for p in zip(word, word[1:]):
                    pair_count[p] += n_w
                    where[p].add(w)
                    changed.add(p)
            for p in changed:
                if pair_count[p] > 0:
                    heapq.heappush(heap, (-pair_count[p], p))
        specials = {s: len(vocab) + i for i, s in enumerate(LLAMA3_SPECIALS[:TRAINED_SPECIALS])}
        return cls({b: i for i, b in enumerate(vocab)}, specials, name=f"bpe{vocab_size}")


def merge_pair(word, pair, new):
    out, i = [], 0
    while i < len(word):
        hit = i + 1 < len(word) and word[i] == pair[0] and word[i + 1] == pair[1]
        out.append(new if hit else word[i])
        i += 2 if hit else 1
    return out


def read_ranks(path):
    lines = Path(path).read_bytes().splitlines()
    return {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in lines if line)}


def ranks_from_tokenizer_json(path):
    # tokenizer.json spells bytes as GPT-2's printable stand-ins: themselves if printable, else 256+n
    printable = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 255 and b != 173]
    byte_of = {chr(b): b for b in printable}
    byte_of.update({chr(256 + n): b for n, b in enumerate(b for b in range(256) if b not in printable)})
    tokenizer = json.loads(Path(path).read_text())
    added = {t["id"] for t in tokenizer.get("added_tokens", [])}  # the special tokens, kept apart
    return {bytes(byte_of[c] for c in t): r for t, r in tokenizer["model"]["vocab"].items() if r not in added}


def special_names(folder):
    if (folder / "tokenizer.json").exists():
        added = json.loads((folder / "tokenizer.json").read_text()).get("added_tokens", [])
        return {t["content"]: t["id"] for t in added}
