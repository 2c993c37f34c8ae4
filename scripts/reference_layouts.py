"""The tiny fixture's weights in every layout the hub ships MusicGen in, and the pickle test cases.

Called by make_reference.py after the fixtures are written. From tests/fixtures/musicgen-tiny it writes
tests/fixtures/layouts/<layout>/ (the same config, generation config and tokenizer, the same tensors):

    safetensors-shards  model.safetensors.index.json + model-0000k-of-00002.safetensors (musicgen-stereo-large)
    pickle              pytorch_model.bin, a torch.save zip archive (musicgen-medium)
    pickle-shards       pytorch_model.bin.index.json + pytorch_model-0000k-of-00002.bin (musicgen-large)
    both                model.safetensors beside a decoy pytorch_model.bin that cannot load (safetensors wins)

and tests/fixtures/pickles/ with views.bin (strided, offset, shared and typed storages) and crafted
archives whose pickles name os.system or builtins.eval. torch.save archives are rewritten with fixed
timestamps, without the random .data/serialization_id record and under `archive/` as the published files
are, so a rerun writes the same bytes; torch.load still reads them (checked here).
"""

import io
import json
import os
import shutil
import zipfile
from collections import OrderedDict

import torch
from safetensors.torch import load_file, save_file

COPIED = ["config.json", "generation_config.json", "tokenizer.json"]
SHARDS = 2
TIED = ("text_encoder.shared.weight", "text_encoder.encoder.embed_tokens.weight")


def rewrite_archive(data, path):
    """torch.save's zip with fixed metadata: records renamed under archive/, no serialization id."""
    src = zipfile.ZipFile(io.BytesIO(data))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
        for info in src.infolist():
            name = "archive/" + info.filename.split("/", 1)[1]
            if name.endswith(".data/serialization_id"):
                continue
            record = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            record.compress_type = zipfile.ZIP_STORED
            record.external_attr = 0o644 << 16
            out.writestr(record, src.read(info.filename))


def torch_save(obj, path):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    rewrite_archive(buffer.getvalue(), path)
    loaded = torch.load(path, weights_only=True)
    assert list(loaded) == list(obj), path
    for key, value in obj.items():
        assert torch.equal(loaded[key], value), (path, key)


def archive_with_pickle(pickled, path):
    """A torch.save-shaped archive around a hand-written data.pkl (the crafted, refused cases)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
        for name, data in [("archive/data.pkl", pickled), ("archive/version", b"3\n"),
                           ("archive/data/0", bytes(8))]:
            record = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            record.external_attr = 0o644 << 16
            out.writestr(record, data)


def split(state):
    """Keys in name order cut into SHARDS runs of about equal bytes, as save_pretrained fills shards."""
    keys = sorted(state)
    total = sum(state[k].numel() * state[k].element_size() for k in keys)
    shards, current, size = [], [], 0
    for key in keys:
        current.append(key)
        size += state[key].numel() * state[key].element_size()
        if size >= total * (len(shards) + 1) / SHARDS and len(shards) < SHARDS - 1:
            shards.append(current)
            current = []
    shards.append(current)
    return shards, total


def write_index(path, shard_keys, names, total):
    weight_map = {key: name for keys, name in zip(shard_keys, names) for key in keys}
    with open(path, "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f,
                  indent=2, sort_keys=True)
        f.write("\n")


def fresh_dir(base, out):
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    for name in COPIED:
        shutil.copyfile(os.path.join(base, name), os.path.join(out, name))


def pickled_state(state):
    """The state dict as the published .bin files hold it: both T5 embedding names, one storage."""
    out = OrderedDict(sorted(state.items()))
    present = [k for k in TIED if k in out]
    for key in TIED:
        out.setdefault(key, out[present[0]])
    return out


def write_model_layouts(base, root):
    state = load_file(os.path.join(base, "model.safetensors"))
    shard_keys, total = split(state)

    out = os.path.join(root, "safetensors-shards")
    fresh_dir(base, out)
    names = [f"model-{i + 1:05d}-of-{SHARDS:05d}.safetensors" for i in range(SHARDS)]
    for keys, name in zip(shard_keys, names):
        save_file({k: state[k] for k in keys}, os.path.join(out, name), metadata={"format": "pt"})
    write_index(os.path.join(out, "model.safetensors.index.json"), shard_keys, names, total)

    out = os.path.join(root, "pickle")
    fresh_dir(base, out)
    torch_save(pickled_state(state), os.path.join(out, "pytorch_model.bin"))

    out = os.path.join(root, "pickle-shards")
    fresh_dir(base, out)
    names = [f"pytorch_model-{i + 1:05d}-of-{SHARDS:05d}.bin" for i in range(SHARDS)]
    for keys, name in zip(shard_keys, names):
        torch_save(OrderedDict((k, state[k]) for k in keys), os.path.join(out, name))
    write_index(os.path.join(out, "pytorch_model.bin.index.json"), shard_keys, names, total)

    out = os.path.join(root, "both")
    fresh_dir(base, out)
    shutil.copyfile(os.path.join(base, "model.safetensors"), os.path.join(out, "model.safetensors"))
    torch_save(OrderedDict([("decoy.weight", torch.zeros(2))]), os.path.join(out, "pytorch_model.bin"))


def write_pickle_cases(out):
    os.makedirs(out, exist_ok=True)
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    views = OrderedDict([
        ("contiguous", base),
        ("transposed", base.t()),
        ("row", base[1]),
        ("column", base[:, 2]),
        ("scalar", torch.tensor(3.5)),
        ("empty", torch.zeros(0, 3)),
        ("half", torch.arange(5, dtype=torch.float16)),
        ("bf16", torch.arange(5, dtype=torch.bfloat16)),
        ("long", torch.arange(4, dtype=torch.int64) - 2),
        ("bool", torch.tensor([True, False, True])),
    ])
    torch_save(views, os.path.join(out, "views.bin"))
    # os.system("echo pwned") by GLOBAL (protocol 2), as a value of an otherwise plain dict.
    command = b"echo pwned"
    system = (b"\x80\x02}q\x00X\x01\x00\x00\x00xcos\nsystem\nX" + len(command).to_bytes(4, "little") + command
              + b"\x85Rs.")
    archive_with_pickle(system, os.path.join(out, "os_system.bin"))
    # builtins.eval("...") by STACK_GLOBAL (protocol 4).
    expression = b"__import__('os').getcwd()"
    evaluate = b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93\x8c" + bytes([len(expression)]) + expression + b"\x85R."
    archive_with_pickle(evaluate, os.path.join(out, "builtins_eval.bin"))


def write_layouts(fixtures):
    write_model_layouts(os.path.join(fixtures, "musicgen-tiny"), os.path.join(fixtures, "layouts"))
    write_pickle_cases(os.path.join(fixtures, "pickles"))
