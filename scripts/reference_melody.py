"""The tiny melody checkpoint (`model_type: musicgen_melody`) and its references, for make_reference.py.

`musicgen-melody-tiny` has musicgen-tiny's sizes, a 12-bin chroma projection and a chroma_length of
CHROMA_LENGTH frames (`musicgen-stereo-melody-tiny` the same in stereo: 8 interleaved codebooks); its preprocessor_config.json scales the published feature extractor down
(N_FFT / HOP instead of 16384 / 4096) so a fraction of a second gives several chroma frames.

melody.safetensors holds, for two clips (one shorter than n_fft, which the extractor pads), the
normalised chroma before the argmax and the one-hot transformers' MusicgenMelodyFeatureExtractor
makes of it; then greedy guided generations: two prompts each with the first clip's melody, and the
second prompt alone (the null chroma).

The extractor needs torchaudio only for `transforms.Spectrogram`, and PyPI has no torchaudio for torch
2.13, so SPECTROGRAM reproduces it with torch.stft (periodic Hann window, reflect-padded centre frames,
power 2, normalised by the window's L2 norm). It was checked equal once against torchaudio 2.11.0's
Spectrogram (imported beside torch 2.13 from its wheel): max |difference| 0.0 on random batches. The rest
is transformers' own code, called on that stand-in.
"""

import json
import math
import os
import types

import torch
from safetensors.torch import save_file
from transformers import MusicgenMelodyConfig, MusicgenMelodyDecoderConfig, MusicgenMelodyForConditionalGeneration
from transformers.audio_utils import chroma_filter_bank
from transformers.models.musicgen_melody.feature_extraction_musicgen_melody import MusicgenMelodyFeatureExtractor

# name: (seed, audio channels)
MELODY_FIXTURES = {"musicgen-melody-tiny": (3579, 1), "musicgen-stereo-melody-tiny": (9753, 2)}
CHROMA_LENGTH = 24
NUM_CHROMA = 12
N_FFT = 2048
HOP = 512
# A clip longer than n_fft (16 chroma frames, repeated up to CHROMA_LENGTH by the model) and one shorter.
CLIP_SAMPLES = 8000
SHORT_SAMPLES = 1000
MELODY_TOKENS = 20


def spectrogram(waveform):
    """torchaudio.transforms.Spectrogram(n_fft=N_FFT, win_length=N_FFT, hop_length=HOP, power=2,
    center=True, pad=0, normalized=True), written with torch.stft."""
    window = torch.hann_window(N_FFT)
    spec = torch.stft(waveform, N_FFT, HOP, N_FFT, window, center=True, pad_mode="reflect", normalized=False,
                      onesided=True, return_complex=True)
    return (spec / window.pow(2.0).sum().sqrt()).abs().pow(2.0)


def extractor(rate):
    """The attributes MusicgenMelodyFeatureExtractor's chroma code reads, with the stand-in spectrogram."""
    filters = chroma_filter_bank(sampling_rate=rate, num_frequency_bins=N_FFT, tuning=0, num_chroma=NUM_CHROMA)
    return types.SimpleNamespace(n_fft=N_FFT, spectrogram=spectrogram, chroma_filters=torch.from_numpy(filters).float())


def chroma(fe, wave):
    """(normalised chroma before the argmax, transformers' one-hot), each `(frames, num_chroma)`, for a
    mono `wave` `(samples,)`; the first repeats the extractor's steps, the second is its own method."""
    onehot = MusicgenMelodyFeatureExtractor._torch_extract_fbank_features(fe, wave[None].clone())[0]
    padded = wave[None]
    if padded.shape[-1] < fe.n_fft:
        pad = fe.n_fft - padded.shape[-1]
        padded = torch.nn.functional.pad(padded, (pad // 2, pad // 2 + pad % 2), "constant", 0)
    raw = torch.einsum("cf, ...ft->...ct", fe.chroma_filters, fe.spectrogram(padded).squeeze(1))
    norm = torch.nn.functional.normalize(raw, p=float("inf"), dim=-2, eps=1e-6).transpose(1, 2)[0]
    assert torch.equal(norm.argmax(-1), onehot.argmax(-1))
    return norm, onehot


def melody_config(text_config, codec_config, decoder_spec, channels):
    vocab = decoder_spec["vocab_size"]
    dec = MusicgenMelodyDecoderConfig(**decoder_spec, num_codebooks=4 * channels, activation_function="gelu",
                                      dropout=0.0, scale_embedding=False, pad_token_id=vocab, bos_token_id=vocab,
                                      decoder_start_token_id=vocab, audio_channels=channels)
    cfg = MusicgenMelodyConfig(text_encoder=text_config, audio_encoder=codec_config, decoder=dec,
                               num_chroma=NUM_CHROMA, chroma_length=CHROMA_LENGTH)
    cfg.decoder_start_token_id = vocab
    cfg.pad_token_id = vocab
    return cfg


def tune(model, seed, fill_random):
    fill_random(model, seed)
    with torch.no_grad():
        model.audio_enc_to_dec_proj.weight.mul_(3.0)  # let the melody, not only the text, steer the picks


def tone(rate, samples, f0, gen):
    t = torch.arange(samples) / rate
    wave = sum(torch.sin(2 * math.pi * f0 * m * t) / m for m in (1, 1.26, 1.5))
    return (0.3 * wave + 0.02 * torch.randn(samples, generator=gen)).float()


def write_melody(out_root, spec, helpers):
    """Writes the melody fixtures under `out_root`; `helpers` are make_reference's builders."""
    for name, (seed, channels) in MELODY_FIXTURES.items():
        write_fixture(os.path.join(out_root, name), seed, channels, spec, helpers)


def write_fixture(out_dir, seed, channels, spec, helpers):
    torch.manual_seed(seed)
    tok = helpers.build_tokenizer()
    base = helpers.build_config(spec)
    cfg = melody_config(base.text_encoder, base.audio_encoder, spec["decoder"], channels)
    model = MusicgenMelodyForConditionalGeneration._from_config(cfg, attn_implementation="eager").eval()
    tune(model, seed, helpers.fill_random)
    helpers.write_model(out_dir, model, cfg, spec, tok)
    rate = cfg.audio_encoder.sampling_rate
    preprocessor = {"chunk_length": 30, "feature_extractor_type": "MusicgenMelodyFeatureExtractor",
                    "feature_size": NUM_CHROMA, "hop_length": HOP, "n_fft": N_FFT, "num_chroma": NUM_CHROMA,
                    "padding_side": "left", "padding_value": 0.0, "processor_class": "MusicgenMelodyProcessor",
                    "return_attention_mask": True, "sampling_rate": rate, "stem_indices": [3, 2]}
    with open(os.path.join(out_dir, "preprocessor_config.json"), "w") as f:
        json.dump(preprocessor, f, indent=2, sort_keys=True)
        f.write("\n")

    gen = torch.Generator().manual_seed(seed + 1)
    fe = extractor(rate)
    ref = {}
    with torch.no_grad():
        clips = {"clip": tone(rate, CLIP_SAMPLES, 261.63, gen), "short": tone(rate, SHORT_SAMPLES, 392.0, gen)}
        for name, wave in clips.items():
            ref[f"{name}.audio"] = wave
            ref[f"{name}.chroma"], ref[f"{name}.onehot"] = chroma(fe, wave)
        features = ref["clip.onehot"][None]
        ids, mask = helpers.encode(tok, [helpers.PROMPTS[1]])
        run = lambda **kw: helpers.captured_generate(  # noqa: E731
            model, guidance_scale=helpers.GUIDANCE, max_new_tokens=MELODY_TOKENS, **kw)
        ref["melody.codes"], ref["melody.audio"] = run(input_ids=ids, attention_mask=mask, input_features=features)
        ref["text.codes"], ref["text.audio"] = run(input_ids=ids, attention_mask=mask)
        ids0, mask0 = helpers.encode(tok, [helpers.PROMPTS[0]])
        ref["melody0.codes"], ref["melody0.audio"] = run(input_ids=ids0, attention_mask=mask0,
                                                         input_features=features)
    ref = {k: v.contiguous().clone() for k, v in ref.items()}
    meta = {"melody": json.dumps({"prompts": helpers.PROMPTS[:2], "max_new_tokens": MELODY_TOKENS})}
    save_file(ref, os.path.join(out_dir, "melody.safetensors"), metadata=meta)
    print(f"{out_dir}: melody codes {ref['melody.codes'].flatten()[:8].tolist()}, "
          f"text codes {ref['text.codes'].flatten()[:8].tolist()}")
