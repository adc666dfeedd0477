"""Shared test fixtures: the repo root on sys.path, the ../shared data folder, a free port for torchrun."""
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"


@pytest.fixture
def shared_data():
    """../shared/data, or skip when the checkout has no ../shared beside it."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"{path} not found: these tests read ../shared/data beside the checkout")
    return path


def free_port():
    """A free TCP port on the loopback, for a torchrun rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wandb_logged(out_dir):
    """What the offline wandb runs under out_dir/wandb logged: {"config": {...}, "history": [{...} per step, every
    run's in order], "summary": {...}} (config and summary: the newest run's)."""
    runs = wandb_runs(out_dir)
    return {"config": runs[-1]["config"], "history": [h for r in runs for h in r["history"]],
            "summary": runs[-1]["summary"]}


def wandb_runs(out_dir):
    """Each offline wandb run under out_dir/wandb, oldest first, as wandb_logged's dict plus its "name" and
    "group", read back from its run-<id>.wandb file (records in the LevelDB log format wandb writes: 32 KiB
    blocks of chunks, each a 7-byte header of checksum, length and type, then a piece of a protobuf Record)."""
    import json
    import struct

    from wandb.proto import wandb_internal_pb2 as pb
    files = sorted(Path(out_dir).glob("wandb/offline-run-*/run-*.wandb"))
    assert files, f"no offline wandb run under {out_dir}/wandb"
    runs = []
    for path in files:
        logged = {"config": {}, "history": [], "summary": {}}
        runs.append(logged)
        data, pos, records, piece = path.read_bytes(), 7, [], b""
        while pos + 7 <= len(data):
            left = 32768 - pos % 32768
            _, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
            if length == 0 and kind == 0:  # a block's padding
                pos += left
                continue
            piece, pos = piece + data[pos + 7:pos + 7 + length], pos + 7 + length
            if kind in (1, 4):  # a whole record, or a record's last chunk
                records.append(piece)
                piece = b""
        for raw in records:
            record = pb.Record()
            record.ParseFromString(raw)
            kind = record.WhichOneof("record_type")
            if kind == "run":
                logged["config"] |= {i.key: json.loads(i.value_json) for i in record.run.config.update}
                logged["name"], logged["group"] = record.run.display_name, record.run.run_group
            elif kind == "history":
                logged["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                          for i in record.history.item})
            elif kind == "summary":
                logged["summary"] |= {i.key: json.loads(i.value_json) for i in record.summary.update if i.key}
    return runs
