"""common.py's pieces that every run leans on: the atomic write, the logs' cut-back on resume, and what reads as a
hub id. (Checkpoints, resume and 2-rank runs are tested end to end in test_train.py and test_rl.py.)"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common import is_hub_id, open_log, write_atomic

ROOT = Path(__file__).resolve().parents[1]


def test_write_atomic_leaves_the_old_file_or_the_new_one(tmp_path):
    path = tmp_path / "meta.json"
    write_atomic(path, '{"step": 1}')
    write_atomic(path, b'{"step": 2}')
    assert path.read_text() == '{"step": 2}'

    def torn(f):  # a writer that dies halfway
        f.write(b'{"st')
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        write_atomic(path, torn)
    assert path.read_text() == '{"step": 2}' and os.listdir(tmp_path) == ["meta.json"]  # no temporary file left
    write_atomic(path, lambda f: Path(f.name).write_text("by name"))  # safetensors writes to the path itself
    assert path.read_text() == "by name"


def test_logs_are_cut_back_to_the_checkpoint_and_past_a_torn_line(tmp_path):
    rows = [{"step": s, "loss": 1.0 / s} for s in range(1, 6)]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (tmp_path / "metrics.jsonl").write_text(text + '{"step": 6, "lo')  # a kill mid-line
    with open_log(tmp_path, "metrics", resume_step=3) as f:
        f.write(json.dumps({"step": 4}) + "\n")
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    (tmp_path / "metrics.jsonl").write_text(text + '{"step": 6, "lo')
    open_log(tmp_path, "metrics", resume_step=10).close()
    assert (tmp_path / "metrics.jsonl").read_text() == text  # everything whole is kept, the torn line dropped
    open_log(tmp_path, "metrics", resume_step=None).close()  # a fresh start: nothing of an earlier attempt stays
    assert (tmp_path / "metrics.jsonl").read_text() == ""


def test_what_reads_as_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_hub_id("meta-llama/Llama-3.2-1B") and is_hub_id("out/stable")  # nothing local says otherwise
    assert not any(map(is_hub_id, ["out/world/tokenizer", "./org/name", "/org/name", "~/org", "name"]))
    (tmp_path / "out").mkdir()
    assert not is_hub_id("out/stable")  # out/ is here: out/stable is a local path that does not exist yet


def test_a_hub_failure_says_which_setting_and_what_to_do(tmp_path):
    code = ("from common import local_or_hub\n"
            "local_or_hub('nobody/nothing', 'init_from', 'Run what writes it first.')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)})  # never online
    assert out.returncode != 0
    assert "FileNotFoundError: init_from=nobody/nothing: no such local path, and the hub answered: " in out.stderr
    assert "Run what writes it first. (a gated repo needs `huggingface-cli login`)" in out.stderr
