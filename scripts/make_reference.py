#!/usr/bin/env python3
"""Build tiny random MusicGen checkpoints and transformers reference outputs for the parity tests.

Usage:
    python3 scripts/make_reference.py [--out tests/fixtures]
    python3 scripts/make_reference.py --small-shape DIR   # musicgen-small-shaped random checkpoint (~590M)

Each fixture directory gets config.json, generation_config.json, model.safetensors (weight norm stored as
weight_g / weight_v, like the published files), tokenizer.json, reference.safetensors and
conditioning.safetensors (unconditional and negative-prompt generations), longform.safetensors
(generations past the window, extended as audiocraft extends them) and audio_in.safetensors (a clip,
its EnCodec codes and a continuation of it). musicgen-stereo-tiny is stereo
(8 interleaved codebooks) stored in f16 like the published stereo files; its references run in f32 on
the f16-rounded weights, which is what Maestro computes from them. Seeds are fixed
and everything runs single-threaded on the CPU, so a rerun rewrites the same bytes. Then
reference_melody.py writes musicgen-melody-tiny (a melody checkpoint and its chroma and generation
references) and reference_layouts.py writes musicgen-tiny's weights in every published layout under layouts/ and the
pickle reader's cases under pickles/.
"""

import argparse
import json
import math
import os
import sys

import torch
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from reference_layouts import write_layouts
from reference_melody import write_melody
from transformers import EncodecConfig, MusicgenConfig, MusicgenDecoderConfig, MusicgenForConditionalGeneration, T5Config

PROMPTS = [
    "80s pop track with bassy drums and synth",
    "calm piano",
    "a  lofi   beat with rain, vinyl crackle and a slow jazzy piano melody over soft drums",
]
# Long-form generation at tiny scale: a window of LONG_WINDOW frames (the checkpoint's max_length in the
# test's copy), windows every LONG_STRIDE frames (30 s and 18 s at the published scale), one request per
# length of LONG_FRAMES.
LONG_WINDOW = 40
LONG_STRIDE = 24
LONG_FRAMES = [100, 70]

# Audio in: a clip of AUDIO_FRAMES frames (a chord with a little noise, at the codec's rate), encoded by
# EnCodec, then continued by CONTINUE_TOKENS decoder steps after it.
AUDIO_FRAMES = 12
CONTINUE_TOKENS = 20

# Negative prompts of the first two prompts' generation: the first gets one, the second keeps the null
# condition, so one batch mixes both.
NEGATIVE = ["calm piano", ""]
GUIDANCE = 3.0
MAX_NEW_TOKENS = 24
TEACHER_STEPS = 9
CODEC_FRAMES = 40

# Word pieces of the tiny Unigram vocabulary; single letters keep every prompt encodable.
WORDS = [
    "pop", "track", "with", "drums", "and", "synth", "calm", "piano", "beat", "rain", "slow", "soft",
    "jazz", "melody", "over", "80s", "lo", "fi", "vinyl", "crack", "le", "bass", "y",
]

TINY = {
    "musicgen-tiny": dict(
        seed=1234,
        t5=dict(vocab_size=100, d_model=32, d_kv=8, num_heads=4, d_ff=64, num_layers=2,
                relative_attention_num_buckets=32, relative_attention_max_distance=128),
        decoder=dict(vocab_size=64, hidden_size=48, num_hidden_layers=2, num_attention_heads=4, ffn_dim=96,
                     max_position_embeddings=512),
        encodec=dict(num_filters=4, hidden_size=16, codebook_size=64, num_lstm_layers=2,
                     num_residual_layers=1, use_conv_shortcut=False),
        tied_key="text_encoder.shared.weight",
    ),
    "musicgen-tiny2": dict(
        seed=4321,
        t5=dict(vocab_size=128, d_model=40, d_kv=12, num_heads=5, d_ff=72, num_layers=3,
                relative_attention_num_buckets=16, relative_attention_max_distance=20),
        decoder=dict(vocab_size=128, hidden_size=40, num_hidden_layers=3, num_attention_heads=5, ffn_dim=80,
                     max_position_embeddings=512),
        encodec=dict(num_filters=6, hidden_size=24, codebook_size=128, num_lstm_layers=1,
                     num_residual_layers=2, use_conv_shortcut=True),
        tied_key="text_encoder.encoder.embed_tokens.weight",
    ),
}

# musicgen-tiny's shapes in stereo, stored in f16 like the published stereo checkpoints.
TINY["musicgen-stereo-tiny"] = dict(TINY["musicgen-tiny"], seed=2468, channels=2, stored=torch.float16)

SMALL = dict(
    seed=7,
    t5=dict(vocab_size=32128, d_model=768, d_kv=64, num_heads=12, d_ff=3072, num_layers=12,
            relative_attention_num_buckets=32, relative_attention_max_distance=128),
    decoder=dict(vocab_size=2048, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, ffn_dim=4096,
                 max_position_embeddings=2048),
    encodec=dict(num_filters=64, hidden_size=128, codebook_size=2048, num_lstm_layers=2,
                 num_residual_layers=1, use_conv_shortcut=False),
    tied_key="text_encoder.shared.weight",
)


def build_tokenizer():
    """A T5-style Unigram tokenizer: NFKC + space squeeze, Metaspace, `</s>` appended by the post-processor."""
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + w, -3.0 - 0.1 * i) for i, w in enumerate(WORDS)]
    vocab += [(w, -4.0 - 0.1 * i) for i, w in enumerate(WORDS)]
    chars = "abcdefghijklmnopqrstuvwxyz0123456789,."
    vocab += [(c, -6.0) for c in chars]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tok.add_special_tokens(["<pad>", "</s>", "<unk>"])
    return tok


def build_config(spec):
    t5 = T5Config(**spec["t5"], feed_forward_proj="relu", dropout_rate=0.0, layer_norm_epsilon=1e-6,
                  is_encoder_decoder=False, use_cache=False)
    frame_rate = 50
    nbits = int(math.log2(spec["encodec"]["codebook_size"]))
    bandwidth = 4 * frame_rate * nbits / 1000.0
    enc = EncodecConfig(**spec["encodec"], sampling_rate=32000, upsampling_ratios=[8, 5, 4, 4],
                        target_bandwidths=[bandwidth], use_causal_conv=False, norm_type="weight_norm",
                        pad_mode="reflect", audio_channels=1, codebook_dim=spec["encodec"]["hidden_size"])
    assert enc.num_quantizers == 4, enc.num_quantizers
    vocab = spec["decoder"]["vocab_size"]
    channels = spec.get("channels", 1)
    # Stereo interleaves left and right codebooks; the codec stays mono and decodes each channel.
    dec = MusicgenDecoderConfig(**spec["decoder"], num_codebooks=4 * channels, activation_function="gelu",
                                dropout=0.0, scale_embedding=False, pad_token_id=vocab, bos_token_id=vocab,
                                decoder_start_token_id=vocab, audio_channels=channels)
    cfg = MusicgenConfig(text_encoder=t5, audio_encoder=enc, decoder=dec)
    cfg.decoder_start_token_id = vocab
    cfg.pad_token_id = vocab
    return cfg


def init_value(name, shape, gen):
    """Random values scaled so activations keep a unit-ish size through every part."""
    randn = lambda: torch.randn(shape, generator=gen)  # noqa: E731
    if name.endswith(".inited"):
        return torch.ones(shape)
    if name.endswith("cluster_size"):
        return torch.rand(shape, generator=gen) * 10.0
    if "codebook.embed" in name:
        return randn()
    if "layer_norm" in name or name.endswith("final_layer_norm.weight"):
        if name.endswith(".bias"):
            return 0.1 * randn()
        return 1.0 + 0.1 * randn()
    if "relative_attention_bias" in name:
        return 0.5 * randn()
    if "embed_tokens" in name or name.endswith("shared.weight"):
        return randn()
    if name.endswith("original0"):  # weight-norm gain: the norm of each output filter
        return 0.8 + 0.4 * torch.rand(shape, generator=gen)
    if name.endswith("original1"):
        return randn()
    if "lstm" in name:
        bound = 1.0 / math.sqrt(shape[-1] if "weight" in name else shape[0] / 4)
        return (torch.rand(shape, generator=gen) * 2 - 1) * bound
    if name.endswith(".bias"):
        return 0.1 * randn()
    if len(shape) == 2:
        return randn() / math.sqrt(shape[1])
    raise ValueError(f"no init rule for {name} {tuple(shape)}")


def fill_random(model, seed):
    """Every weight from `init_value`, in name order from one generator; the LM heads spread."""
    gen = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    with torch.no_grad():
        for name in sorted(state):
            if name.endswith("text_encoder.encoder.embed_tokens.weight"):
                continue  # tied to `shared`
            state[name].copy_(init_value(name, state[name].shape, gen))
        for head in model.decoder.lm_heads:
            head.weight.mul_(3.0)  # spread the logits so greedy picks are far from ties


def randomize(model, seed):
    fill_random(model, seed)
    with torch.no_grad():
        for layer in model.decoder.model.decoder.layers:
            layer.encoder_attn.v_proj.weight.mul_(0.4)  # let past codes, not only the text, steer the picks


def published_state_dict(model, tied_key, stored=torch.float32):
    """State dict spelled like the published checkpoints: weight_g / weight_v, one copy of the T5 embedding,
    in the stored dtype (integer buffers keep theirs)."""
    out = {}
    for name, value in model.state_dict().items():
        if name.endswith("embed_positions.weights"):
            continue
        if name in ("text_encoder.shared.weight", "text_encoder.encoder.embed_tokens.weight") and name != tied_key:
            continue
        name = name.replace(".parametrizations.weight.original0", ".weight_g")
        name = name.replace(".parametrizations.weight.original1", ".weight_v")
        value = value.detach()
        if value.is_floating_point():
            value = value.to(stored)
        out[name] = value.contiguous().clone()
    return out


def write_model(out_dir, model, cfg, spec, tok):
    os.makedirs(out_dir, exist_ok=True)
    stored = spec.get("stored", torch.float32)
    save_file(published_state_dict(model, spec["tied_key"], stored), os.path.join(out_dir, "model.safetensors"),
              metadata={"format": "pt"})
    config = cfg.to_dict()
    if stored != torch.float32:
        config["torch_dtype"] = str(stored).removeprefix("torch.")
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    pad = cfg.decoder.pad_token_id
    gen_cfg = {"bos_token_id": pad, "decoder_start_token_id": pad, "do_sample": True, "guidance_scale": GUIDANCE,
               "max_length": 1500, "pad_token_id": pad}
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump(gen_cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    tok.save(os.path.join(out_dir, "tokenizer.json"), pretty=False)


def encode(tok, prompts):
    encs = [tok.encode(p) for p in prompts]
    width = max(len(e.ids) for e in encs)
    ids = torch.zeros((len(prompts), width), dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, e in enumerate(encs):
        ids[i, : len(e.ids)] = torch.tensor(e.ids)
        mask[i, : len(e.ids)] = 1
    return ids, mask


def teacher_forced(model, ids, mask, gen):
    """Logits for random decoder inputs, guided exactly as generate() guides them."""
    dec = model.config.decoder
    bsz = ids.shape[0]
    codes = torch.randint(0, dec.vocab_size, (bsz * dec.num_codebooks, TEACHER_STEPS), generator=gen)
    codes[:, 0] = dec.pad_token_id
    hidden = model.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    enc = torch.cat([hidden, torch.zeros_like(hidden)])
    enc_mask = torch.cat([mask, torch.zeros_like(mask)])
    logits = model(encoder_outputs=(enc,), attention_mask=enc_mask, decoder_input_ids=codes.repeat(2, 1)).logits
    cond, uncond = logits.split(bsz * dec.num_codebooks)
    return codes, uncond + (cond - uncond) * GUIDANCE


def captured_generate(model, max_new_tokens=MAX_NEW_TOKENS, **kwargs):
    """generate()'s audio and the codes it decoded `(batch, codebooks, frames)`; a stereo model decodes
    its even (left) and odd (right) codebooks in two calls, put back interleaved here."""
    calls = []
    decode = model.audio_encoder.decode

    def capture(audio_codes, *args, **kw):
        calls.append(audio_codes[0].clone())
        return decode(audio_codes, *args, **kw)

    model.audio_encoder.decode = capture
    try:
        audio = model.generate(do_sample=False, max_new_tokens=max_new_tokens, **kwargs)
    finally:
        model.audio_encoder.decode = decode
    if len(calls) == 1:
        return calls[0], audio
    left, right = calls
    codes = torch.stack([left, right], dim=2).flatten(1, 2)
    return codes, audio


def greedy(model, ids, mask):
    return captured_generate(model, input_ids=ids, attention_mask=mask, guidance_scale=GUIDANCE)


def decode_codes(model, codes):
    """The codec's decode of `(1, codebooks, frames)` codes, per channel for a stereo model."""
    if model.config.decoder.audio_channels == 1:
        return model.audio_encoder.decode(codes[None], [None]).audio_values
    left = model.audio_encoder.decode(codes[None, :, ::2], [None]).audio_values
    right = model.audio_encoder.decode(codes[None, :, 1::2], [None]).audio_values
    return torch.cat([left, right], dim=1)


def unconditional(model):
    """transformers' own null inputs: zero states under a zero mask, guidance 1."""
    return captured_generate(model, **model.get_unconditional_inputs(num_samples=1))


def negative(model, tok, prompts, negatives):
    """Guided generation whose unconditional half is each negative prompt's T5 states (the null condition
    where it is empty), swapped in where transformers builds that half."""
    ids, mask = encode(tok, prompts + [n or "</s>" for n in negatives])
    n = len(prompts)
    keep = torch.tensor([1 if neg else 0 for neg in negatives])[:, None]
    neg_states = model.text_encoder(input_ids=ids[n:], attention_mask=mask[n:]).last_hidden_state
    prepare = model._prepare_text_encoder_kwargs_for_generation

    def swap(*args, **kwargs):
        out = prepare(*args, **kwargs)
        states = out["encoder_outputs"].last_hidden_state
        states[n:] = neg_states * keep[..., None]
        out["attention_mask"][n:] = mask[n:] * keep
        return out

    model._prepare_text_encoder_kwargs_for_generation = swap
    try:
        return captured_generate(model, input_ids=ids[:n], attention_mask=mask[:n], guidance_scale=GUIDANCE)
    finally:
        del model._prepare_text_encoder_kwargs_for_generation


def make_fixture(out_dir, spec):
    torch.manual_seed(spec["seed"])
    tok = build_tokenizer()
    cfg = build_config(spec)
    model = MusicgenForConditionalGeneration._from_config(cfg, attn_implementation="eager").eval()
    randomize(model, spec["seed"])
    write_model(out_dir, model, cfg, spec, tok)
    stored = spec.get("stored", torch.float32)
    if stored != torch.float32:
        # The references see the weights as stored; computed buffers (sinusoidal positions) stay f32, as
        # when transformers loads the published f16 files in f32.
        with torch.no_grad():
            for value in model.state_dict().values():
                if value.is_floating_point():
                    value.copy_(value.to(stored).float())

    gen = torch.Generator().manual_seed(spec["seed"] + 1)
    ref = {}
    with torch.no_grad():
        ids, mask = encode(tok, PROMPTS)
        ref["t5.input_ids"], ref["t5.attention_mask"] = ids, mask
        ref["t5.last_hidden_state"] = model.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        tf_ids, tf_mask = encode(tok, PROMPTS[:2])
        ref["tf.input_ids"], ref["tf.attention_mask"] = tf_ids, tf_mask
        ref["tf.decoder_input_ids"], ref["tf.logits"] = teacher_forced(model, tf_ids, tf_mask, gen)
        ref["gen.input_ids"], ref["gen.attention_mask"] = tf_ids, tf_mask
        ref["gen.codes"], ref["gen.audio"] = greedy(model, tf_ids, tf_mask)
        codebook = cfg.audio_encoder.codebook_size
        codes = torch.randint(0, codebook, (1, cfg.decoder.num_codebooks, CODEC_FRAMES), generator=gen)
        ref["codec.codes"] = codes
        ref["codec.audio"] = decode_codes(model, codes)
    ref["gen.max_new_tokens"] = torch.tensor([MAX_NEW_TOKENS])
    ref["guidance_scale"] = torch.tensor([GUIDANCE])
    ref = {k: v.contiguous().clone() for k, v in ref.items()}
    save_file(ref, os.path.join(out_dir, "reference.safetensors"), metadata={"prompts": json.dumps(PROMPTS)})
    write_conditioning(out_dir, model, tok)
    write_longform(out_dir, model, tok)
    write_audio_in(out_dir, model, cfg, tok)
    audio = ref["gen.audio"]
    print(f"{out_dir}: audio {tuple(audio.shape)} std {audio.std():.3f} max {audio.abs().max():.3f}, "
          f"codes {ref['gen.codes'].flatten()[:8].tolist()}", file=sys.stderr)


def write_conditioning(out_dir, model, tok):
    """conditioning.safetensors: an unconditional generation and a batch with negative prompts."""
    ref = {}
    with torch.no_grad():
        ref["uncond.codes"], ref["uncond.audio"] = unconditional(model)
        ref["neg.codes"], ref["neg.audio"] = negative(model, tok, PROMPTS[:2], NEGATIVE)
    ref = {k: v.contiguous().clone() for k, v in ref.items()}
    # One metadata key: safetensors writes several in no fixed order, and the bytes must not change.
    meta = {"prompts": json.dumps({"prompts": PROMPTS[:2], "negative_prompts": NEGATIVE})}
    save_file(ref, os.path.join(out_dir, "conditioning.safetensors"), metadata=meta)


def extended(model, ids, mask, frames):
    """audiocraft's window-by-window extension over transformers' generate: each window after the first
    is prompted (decoder_input_ids) with the previous window's codes past the stride."""
    channels = model.config.decoder.audio_channels
    cc = model.config.decoder.num_codebooks // channels
    codes, prompt, offset = None, None, 0
    while offset + (0 if prompt is None else prompt.shape[-1]) < frames:
        plen = 0 if prompt is None else prompt.shape[-1]
        total = min(frames - offset, LONG_WINDOW)
        kwargs = dict(input_ids=ids, attention_mask=mask, guidance_scale=GUIDANCE,
                      max_new_tokens=total + cc - 1 - plen)
        if prompt is not None:
            kwargs["decoder_input_ids"] = prompt.reshape(-1, plen)
        window, _ = captured_generate(model, **kwargs)
        assert window.shape[-1] == total, (window.shape, total)
        codes = window if codes is None else torch.cat([codes, window[..., plen:]], dim=-1)
        prompt = window[..., LONG_STRIDE:]
        offset += LONG_STRIDE
    return codes


def write_longform(out_dir, model, tok):
    """longform.safetensors: greedy generations longer than the window, each request alone."""
    ref = {}
    with torch.no_grad():
        for i, frames in enumerate(LONG_FRAMES):
            ids, mask = encode(tok, [PROMPTS[i]])
            codes = extended(model, ids, mask, frames)
            ref[f"long{i}.codes"] = codes[0]
            ref[f"long{i}.audio"] = decode_codes(model, codes)[0]
    ref = {k: v.contiguous().clone() for k, v in ref.items()}
    meta = {"longform": json.dumps({"window": LONG_WINDOW, "stride": LONG_STRIDE, "frames": LONG_FRAMES})}
    save_file(ref, os.path.join(out_dir, "longform.safetensors"), metadata=meta)


def clip(cfg, gen):
    """`(1, channels, samples)`: a chord per channel and a little noise, below full scale."""
    rate, channels = cfg.audio_encoder.sampling_rate, cfg.decoder.audio_channels
    n = AUDIO_FRAMES * math.prod(cfg.audio_encoder.upsampling_ratios)
    t = torch.arange(n) / rate
    rows = []
    for c in range(channels):
        f0 = 220.0 * (1.5 ** c)
        tone = sum(torch.sin(2 * math.pi * f0 * m * t) / m for m in (1, 1.25, 1.5))
        rows.append(0.3 * tone + 0.02 * torch.randn(n, generator=gen))
    return torch.stack(rows)[None].float()


def write_audio_in(out_dir, model, cfg, tok):
    """audio_in.safetensors: a clip, its EnCodec codes, and a continuation of it (greedy, guided)."""
    gen = torch.Generator().manual_seed(99)
    ref = {}
    with torch.no_grad():
        audio = clip(cfg, gen)
        ref["clip.audio"] = audio
        channels = [audio[:, c : c + 1] for c in range(audio.shape[1])]
        per_channel = [model.audio_encoder.encode(x).audio_codes[0] for x in channels]
        ref["clip.codes"] = torch.stack(per_channel, dim=2).flatten(1, 2)[0]  # interleaved like stereo codebooks
        ids, mask = encode(tok, [PROMPTS[1]])
        codes, out = captured_generate(model, input_ids=ids, attention_mask=mask, input_values=audio,
                                       guidance_scale=GUIDANCE, max_new_tokens=CONTINUE_TOKENS)
        ref["continue.codes"], ref["continue.audio"] = codes[0], out[0]
    ref = {k: v.contiguous().clone() for k, v in ref.items()}
    meta = {"audio_in": json.dumps({"prompt": PROMPTS[1], "max_new_tokens": CONTINUE_TOKENS})}
    save_file(ref, os.path.join(out_dir, "audio_in.safetensors"), metadata=meta)


def make_small_shape(out_dir):
    """A randomly initialised checkpoint with musicgen-small's sizes, for the benchmark (not committed)."""
    torch.manual_seed(SMALL["seed"])
    cfg = build_config(SMALL)
    cfg.audio_encoder.target_bandwidths = [2.2]
    model = MusicgenForConditionalGeneration(cfg).eval()
    randomize(model, SMALL["seed"])
    write_model(out_dir, model, cfg, SMALL, build_tokenizer())
    params = sum(p.numel() for p in model.parameters())
    print(f"{out_dir}: {params / 1e6:.1f}M parameters", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="tests/fixtures", help="fixture root (default tests/fixtures)")
    parser.add_argument("--small-shape", metavar="DIR", help="write a musicgen-small-shaped checkpoint to DIR")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    if args.small_shape:
        make_small_shape(args.small_shape)
        return
    for name, spec in TINY.items():
        make_fixture(os.path.join(args.out, name), spec)
    write_melody(args.out, TINY["musicgen-tiny"], sys.modules[__name__])
    write_layouts(args.out)


if __name__ == "__main__":
    main()
