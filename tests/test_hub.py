"""The Hub path, offline: Llama.from_pretrained(repo_id), Tokenizer.from_pretrained(repo_id), data.py prepare's
hf:org/name[/glob] and rl.py's prompts=hf:... run through huggingface_hub itself against a stand-in Hub on the
loopback (tests/hub_server.py, via HF_ENDPOINT): single-file and sharded weights, a dataset of parquet and jsonl
files, a revision, a missing repo, revision or file, a gated repo's 401 and 403, and one download per node under
torchrun. Each case runs in a fresh process, as huggingface_hub reads HF_ENDPOINT when it is imported."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import ROOT, free_port
from hub_server import Hub
from model import Llama, ModelConfig
from tokenizer import Tokenizer


@pytest.fixture(scope="module")
def hub():
    server = Hub()
    yield server
    server.close()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two small exported models (different weights) and the tokenizer they share, as local folders."""
    tok = Tokenizer.train(["Janet has 3 apples and buys 4 more: 3 + 4 = 7. The answer is \\boxed{7}."] * 50, 300)
    cfg = ModelConfig(dim=32, n_layers=2, n_heads=2, n_kv_heads=1, ffn_dim=64, vocab_size=tok.n_vocab,
                      max_seq_len=128, rope_original_len=64, bos_id=tok.bos_id, eos_id=tok.eos_id)
    folders = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        folder = tmp_path_factory.mktemp(f"model{seed}")
        Llama(cfg).save_pretrained(folder, tokenizer=tok)
        folders.append(folder)
    return folders


def files_of(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def in_fresh_process(hub, tmp_path, code, torchrun=False):
    """Run code (Python; `ROOT` importable) with huggingface_hub pointed at the stand-in hub and a cache of its
    own; the process's result."""
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_DISABLE_XET": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "5"}
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_HUB_CACHE"):
        env.pop(key, None)
    script = tmp_path / "case.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n" + textwrap.dedent(code))
    cmd = [sys.executable, str(script)]
    if torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
               str(script)]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def ok(out):
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


SAME_MODEL = """
import torch
from model import Llama
from tokenizer import Tokenizer
def same(repo, folder):
    ours, theirs = Llama.from_pretrained(folder), Llama.from_pretrained(repo)
    tok, hub_tok = Tokenizer.from_pretrained(folder), Tokenizer.from_pretrained(repo)
    assert hub_tok.identity == tok.identity, repo
    x = torch.tensor([[tok.bos_id] + tok.encode("Janet has 3 apples")])
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x)), repo
"""


def test_single_file_and_sharded_weights_and_the_tokenizer_from_the_hub(hub, models, tmp_path):
    import transformers
    hub.add("org/single", files_of(models[0]))
    sharded = tmp_path / "sharded"
    transformers.AutoModelForCausalLM.from_pretrained(models[0]).save_pretrained(sharded, max_shard_size="20KB")
    assert len(list(sharded.glob("model-*.safetensors"))) > 1
    hub.add("org/sharded", {**files_of(sharded), **{k: v for k, v in files_of(models[0]).items()
                                                     if k.startswith(("tokenizer", "special"))}})
    ok(in_fresh_process(hub, tmp_path, SAME_MODEL + f"""
same("org/single", {str(models[0])!r})
same("org/sharded", {str(models[0])!r})
"""))
    got = {p for m, p in hub.requests if m == "GET" and "/resolve/" in p and p.startswith("/org/single/")}
    assert "/org/single/resolve/" + hub.commit("model", "org/single", "main") + "/model.safetensors" in got


def test_a_revision_is_read_as_org_name_at_revision(hub, models, tmp_path):
    hub.add("org/revs", files_of(models[0]))
    hub.add("org/revs", files_of(models[1]), revision="v1")
    commit = hub.commit("model", "org/revs", "v1")
    ok(in_fresh_process(hub, tmp_path, SAME_MODEL + f"""
same("org/revs", {str(models[0])!r})
same("org/revs@v1", {str(models[1])!r})
same("org/revs@{commit}", {str(models[1])!r})
"""))


def test_missing_repos_revisions_and_files_and_gated_repos_are_clear_errors(hub, models, tmp_path):
    hub.add("org/gated", files_of(models[0]), gated=401)
    hub.add("org/no_access", files_of(models[0]), gated=403)
    hub.add("org/weights_only", {"model.safetensors": (models[0] / "model.safetensors").read_bytes()})
    out = ok(in_fresh_process(hub, tmp_path, """
from model import Llama
for repo in ["org/gated", "org/no_access", "org/nothing_here", "org/weights_only@v9", "org/weights_only"]:
    try:
        Llama.from_pretrained(repo)
    except (FileNotFoundError, ValueError) as e:
        print(repo, "->", e)
"""))
    said = dict(line.split(" -> ", 1) for line in out.splitlines() if " -> " in line)
    assert len(said) == 5, out
    for repo in ["org/gated", "org/no_access", "org/nothing_here"]:
        assert f"model={repo}" in said[repo] and "huggingface-cli login" in said[repo], said[repo]
    assert "401" in said["org/gated"] and "403" in said["org/no_access"]
    assert "model=org/weights_only@v9" in said["org/weights_only@v9"] and "Revision Not Found" in said["org/weights_only@v9"]
    assert "config.json not found" in said["org/weights_only"]  # the repo is there; the file it needs is not


def parquet_bytes(rows, tmp_path, name):
    import pyarrow as pa
    import pyarrow.parquet as pq
    path = tmp_path / name
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path.read_bytes()


def test_a_hub_dataset_of_parquet_and_jsonl_files_prepares_and_feeds_rl(hub, models, tmp_path):
    rows = [{"text": f"Page {i}: {i} + {i} = {2 * i}."} for i in range(30)]
    prompts = [{"question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(7)]
    hub.add("org/math", {"data/train-00000.parquet": parquet_bytes(rows[:20], tmp_path, "a.parquet"),
                         "data/train-00001.parquet": parquet_bytes(rows[20:], tmp_path, "b.parquet"),
                         "extra/more.jsonl": "".join(json.dumps(r) + "\n" for r in rows[:5]),
                         "README.md": "# a dataset"}, kind="dataset")
    hub.add("org/prompts", {"train.jsonl": "".join(json.dumps(r) + "\n" for r in prompts)}, kind="dataset")
    tok = models[0]
    out = ok(in_fresh_process(hub, tmp_path, f"""
import json, os, rl
from data import prepare
for inputs, out, docs in [("hf:org/math/data/*.parquet", "parquet", 30), ("hf:org/math", "all", 35)]:
    prepare([inputs], out, {str(tok)!r}, workers=1)
    index = json.load(open(os.path.join(out, "index.json")))
    assert index["complete"] and index["n_docs"] == docs, (inputs, index["inputs"])
    print(inputs, "=", sorted(os.path.basename(f) for f, _ in index["inputs"]))
rows = rl.load_prompts("hf:org/prompts/train.jsonl", "qa")
assert [r["answer"] for r in rows] == [str(i + 1) for i in range(7)]
try:
    prepare(["hf:org/math/missing.jsonl"], "none", {str(tok)!r}, workers=1)
except FileNotFoundError as e:
    print("missing ->", e)
"""))
    said = dict(line.split(" = ") for line in out.splitlines() if " = " in line)
    assert said["hf:org/math/data/*.parquet"] == "['train-00000.parquet', 'train-00001.parquet']"
    assert said["hf:org/math"] == "['more.jsonl', 'train-00000.parquet', 'train-00001.parquet']"
    assert "missing.jsonl" in out.split("missing -> ")[1]


def test_under_torchrun_one_download_per_node(hub, models, tmp_path):
    hub.add("org/shared", files_of(models[0]))
    out = in_fresh_process(hub, tmp_path, """
import torch.distributed as dist
from model import Llama
dist.init_process_group("gloo")
model = Llama.from_pretrained("org/shared")
print("loaded", dist.get_rank(), sum(p.numel() for p in model.parameters()), flush=True)
dist.destroy_process_group()
""", torchrun=True)
    ok(out)
    assert out.stdout.count("loaded") == 2
    # one process asked the hub: the revision is resolved once (huggingface_hub's file locks alone would let both
    # ranks ask, and still fetch each file once)
    assert [p for m, p in hub.requests if p.startswith("/api/models/org/shared/revision/")] == \
        ["/api/models/org/shared/revision/main"]
    downloads = [p for m, p in hub.requests if m == "GET" and p.startswith("/org/shared/resolve/")]
    assert len([p for p in downloads if p.endswith("/model.safetensors")]) == 1, downloads


def test_under_torchrun_a_failed_download_is_an_error_on_every_rank(hub, models, tmp_path):
    hub.add("org/gated_shared", files_of(models[0]), gated=401)
    out = in_fresh_process(hub, tmp_path, """
import torch.distributed as dist
from model import Llama
dist.init_process_group("gloo")
try:
    Llama.from_pretrained("org/gated_shared")
except FileNotFoundError as e:  # one write a line: torchrun's ranks share the pipe, unbuffered (python -u)
    sys.stdout.write(f"rank {dist.get_rank()} -> {e}\\n")
    sys.stdout.flush()
dist.destroy_process_group()
""", torchrun=True)
    said = dict(line.split(" -> ", 1) for line in ok(out).splitlines() if line.startswith("rank "))
    assert "huggingface-cli login" in said["rank 0"] and "local rank 0 could not download" in said["rank 1"], said
