//! The lossy containers (Ogg Opus, MP3) through ffmpeg: the announced length comes back (±0.1 s;
//! for Opus at 48 kHz, exactly, pre-skip and end trimming honoured), a sine comes back at its
//! frequency and level, chunks start on page or frame boundaries, and hostile input does no harm.

use super::{
    resample::frames_at_48k,
    test_support::{encode_chunks, ffmpeg_decode, rms, sine, tone_amplitude, PUSH_SIZES},
    Container, StreamInfo,
};

/// The rate ffmpeg decodes each container at.
fn decoded_rate(container: Container) -> f64 {
    if container == Container::OggOpus {
        48_000.0
    } else {
        32_000.0
    }
}

/// Encodes `input` in pushes of `push` samples, checks every chunk starts a page or frame, and
/// returns ffmpeg's decoding.
fn round_trip(container: Container, info: StreamInfo, input: &[f32], push: usize) -> Vec<f32> {
    let chunks = encode_chunks(container, info, input, push);
    for chunk in &chunks {
        match container {
            Container::OggOpus => assert_eq!(&chunk[..4], b"OggS", "an Ogg chunk that does not start a page"),
            _ => assert!(
                chunk[0] == 0xFF && chunk[1] & 0xE0 == 0xE0,
                "an MP3 chunk that does not start a frame"
            ),
        }
    }
    ffmpeg_decode(&chunks.concat(), container.extension())
}

/// Checks the decoded length is the announced one within 0.1 s.
fn check_length(container: Container, info: StreamInfo, decoded: &[f32]) {
    let seconds = decoded.len() as f64 / f64::from(info.channels) / decoded_rate(container);
    let announced = info.total_frames as f64 / f64::from(info.sample_rate);
    assert!(
        (seconds - announced).abs() <= 0.1,
        "{container:?}: {seconds} s decoded, {announced} s announced"
    );
}

/// Checks a 0.5-amplitude 440 Hz sine came back (the second channel inverted).
fn check_sine(container: Container, channels: usize, decoded: &[f32]) {
    let rate = decoded_rate(container);
    for channel in 0..channels {
        let tone = tone_amplitude(decoded, channels, channel, rate, 440.0);
        assert!((0.4..=0.6).contains(&tone), "{container:?}: 440 Hz at {tone}, not 0.5");
        let other = tone_amplitude(decoded, channels, channel, rate, 1_000.0);
        assert!(other < 0.02, "{container:?}: 1 kHz at {other}, should be absent");
    }
    let level = rms(decoded);
    assert!((0.3..=0.4).contains(&level), "{container:?}: RMS {level}, not about 0.35");
    if channels == 2 {
        let product: f64 = decoded.chunks_exact(2).map(|f| f64::from(f[0]) * f64::from(f[1])).sum();
        assert!(product < 0.0, "{container:?}: the channels came back swapped or mixed");
    }
}

#[test]
fn sines_come_back_at_the_announced_length_for_every_push_size() {
    for container in [Container::OggOpus, Container::Mp3] {
        for channels in [1u16, 2] {
            for push in PUSH_SIZES {
                let info = StreamInfo { sample_rate: 32_000, channels, total_frames: 32_000 };
                let decoded = round_trip(container, info, &sine(channels, 32_000, 440.0), push(channels));
                check_length(container, info, &decoded);
                check_sine(container, usize::from(channels), &decoded);
            }
        }
    }
}

#[test]
fn opus_honours_the_pre_skip_and_trims_the_end_exactly() {
    for channels in [1u16, 2] {
        // A quarter second of silence, then the sine: its onset must come out where it went in.
        let mut input = vec![0.0; 8_000 * usize::from(channels)];
        input.extend(sine(channels, 24_001, 440.0));
        let info = StreamInfo { sample_rate: 32_000, channels, total_frames: 32_001 };
        let decoded = round_trip(Container::OggOpus, info, &input, 7 * usize::from(channels));
        assert_eq!(decoded.len() as u64 / u64::from(channels), frames_at_48k(32_001, 32_000));
        let onset = decoded.iter().position(|s| s.abs() > 0.2).unwrap() / usize::from(channels);
        assert!((12_000..=12_072).contains(&onset), "the sine starts at frame {onset}, not 12 000");
    }
}

#[test]
fn ogg_pages_carry_the_header_fields_and_end_with_eos() {
    let info = StreamInfo { sample_rate: 32_000, channels: 2, total_frames: 10_007 };
    let bytes = encode_chunks(Container::OggOpus, info, &sine(2, 10_007, 440.0), 4_000).concat();
    let pages = ogg_pages(&bytes);
    let head = &pages[0].1;
    assert_eq!(&head[..8], b"OpusHead");
    let pre_skip = u16::from_le_bytes([head[10], head[11]]);
    assert!(pre_skip > 0, "libopus always has a lookahead");
    assert_eq!(u32::from_le_bytes(head[12..16].try_into().unwrap()), 32_000);
    assert_eq!(&pages[1].1[..8], b"OpusTags");
    let (flags, granule) = pages.last().map(|p| (p.0, p.2)).unwrap();
    assert_eq!(flags & 0x04, 0x04, "the last page lacks EOS");
    assert_eq!(granule, u64::from(pre_skip) + frames_at_48k(10_007, 32_000));
    assert!(pages.iter().rev().skip(1).all(|p| p.0 & 0x04 == 0), "EOS before the last page");
}

/// Each page's header flags, body, and granule position.
fn ogg_pages(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>, u64)> {
    let mut pages = Vec::new();
    while !bytes.is_empty() {
        assert_eq!(&bytes[..4], b"OggS");
        let segments = usize::from(bytes[26]);
        let body: usize = bytes[27..27 + segments].iter().map(|s| usize::from(*s)).sum();
        let start = 27 + segments;
        let granule = u64::from_le_bytes(bytes[6..14].try_into().unwrap());
        pages.push((bytes[5], bytes[start..start + body].to_vec(), granule));
        bytes = &bytes[start + body..];
    }
    pages
}

#[test]
fn streams_are_held_to_their_announced_length() {
    for container in [Container::OggOpus, Container::Mp3] {
        let info = StreamInfo { sample_rate: 32_000, channels: 2, total_frames: 16_000 };
        let long = round_trip(container, info, &sine(2, 64_000, 440.0), 10_000);
        check_length(container, info, &long);
        let short = round_trip(container, info, &sine(2, 3_000, 440.0), 10_000);
        check_length(container, info, &short);
        let empty = StreamInfo { total_frames: 0, ..info };
        check_length(container, empty, &round_trip(container, empty, &[], 1));
    }
}

#[test]
fn hostile_samples_do_no_harm() {
    for container in [Container::OggOpus, Container::Mp3] {
        let info = StreamInfo { sample_rate: 32_000, channels: 1, total_frames: 32_000 };
        let mut input = sine(1, 32_000, 440.0);
        for (i, s) in input.iter_mut().enumerate().filter(|(i, _)| i % 1_000 == 0) {
            *s = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30][i / 1_000 % 4];
        }
        let decoded = round_trip(container, info, &input, 333);
        check_length(container, info, &decoded);
        assert!(decoded.iter().all(|s| s.is_finite() && s.abs() <= 1.5));
        assert!(tone_amplitude(&decoded, 1, 0, decoded_rate(container), 440.0) > 0.3);
    }
}

#[test]
fn the_mp3_bitrate_constant_is_the_one_lame_uses() {
    assert_eq!(super::mp3::BITRATE as u32, super::MP3_BITRATE_KBPS);
}

#[test]
fn layouts_the_codecs_cannot_carry_are_refused() {
    use super::{encoder, EncodeError};
    let info = StreamInfo { sample_rate: 32_000, channels: 3, total_frames: 10 };
    for container in [Container::OggOpus, Container::Mp3] {
        assert!(matches!(encoder(container, info), Err(EncodeError::Channels { channels: 3, max: 2, .. })));
        let zero_rate = StreamInfo { sample_rate: 0, channels: 1, ..info };
        assert!(matches!(encoder(container, zero_rate), Err(EncodeError::SampleRate { sample_rate: 0, .. })));
    }
    let odd_rate = StreamInfo { sample_rate: 31_999, channels: 1, ..info };
    assert!(matches!(
        encoder(Container::Mp3, odd_rate),
        Err(EncodeError::SampleRate { sample_rate: 31_999, .. })
    ));
    // Opus resamples any rate; 48 kHz passes through.
    assert!(encoder(Container::OggOpus, StreamInfo { sample_rate: 48_000, ..odd_rate }).is_ok());
}
