//! The four containers by name: MIME type, file extension, query value, and the choice an HTTP
//! `Accept` header makes among them (RFC 9110 §12.5.1: q-values, wildcards, media parameters).

/// An encoded container the server streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Container {
    /// 16-bit PCM in a RIFF/WAVE file.
    Wav,
    /// 16-bit FLAC.
    Flac,
    /// Opus at 48 kHz in Ogg pages.
    OggOpus,
    /// MPEG-1 Layer III, constant bitrate.
    Mp3,
}

impl Container {
    /// Every container, in the order a wildcard `Accept` prefers them (WAV first: any client plays it).
    pub const ALL: [Container; 4] = [Container::Wav, Container::Flac, Container::OggOpus, Container::Mp3];

    /// The MIME type a response carries.
    pub fn mime(self) -> &'static str {
        match self {
            Container::Wav => "audio/wav",
            Container::Flac => "audio/flac",
            Container::OggOpus => "audio/ogg; codecs=opus",
            Container::Mp3 => "audio/mpeg",
        }
    }

    /// The file extension a saved stream gets (without the dot).
    pub fn extension(self) -> &'static str {
        match self {
            Container::Wav => "wav",
            Container::Flac => "flac",
            Container::OggOpus => "ogg",
            Container::Mp3 => "mp3",
        }
    }

    /// The container a file extension names (case-insensitive, without the dot; `opus` too).
    pub fn from_extension(ext: &str) -> Option<Self> {
        Self::from_name(ext)
    }

    /// The container a query value names: `wav`, `flac`, `opus` or `ogg`, `mp3` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "wav" => Some(Container::Wav),
            "flac" => Some(Container::Flac),
            "opus" | "ogg" => Some(Container::OggOpus),
            "mp3" => Some(Container::Mp3),
            _ => None,
        }
    }

    /// The container an HTTP `Accept` header asks for: the acceptable one with the highest q-value,
    /// the header's order breaking ties; `*/*` and `audio/*` mean WAV (unless a listed container
    /// ranks higher). `None` when nothing acceptable is a container.
    pub fn from_accept(accept: &str) -> Option<Self> {
        let ranges: Vec<MediaRange> = accept.split(',').filter_map(MediaRange::parse).collect();
        // Each container ranks by the range that names it most specifically; ties go to the range
        // listed first, then to `ALL`'s order (so a bare wildcard gives WAV).
        Container::ALL
            .into_iter()
            .filter_map(|c| rank(&ranges, c).map(|(q, position)| (q, position, c)))
            .filter(|(q, _, _)| *q > 0.0)
            .fold(None, |best: Option<(f32, usize, Container)>, next| match best {
                Some(b) if b.0 > next.0 || (b.0 == next.0 && b.1 <= next.1) => Some(b),
                _ => Some(next),
            })
            .map(|(_, _, c)| c)
    }
}

/// One element of an `Accept` header.
struct MediaRange {
    kind: String,
    subtype: String,
    codecs: Option<String>,
    q: f32,
}

impl MediaRange {
    /// `type/subtype; param=value; q=0.5`, lower-cased; `None` when malformed.
    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split(';');
        let (kind, subtype) = parts.next()?.trim().split_once('/')?;
        let mut range = MediaRange {
            kind: kind.trim().to_ascii_lowercase(),
            subtype: subtype.trim().to_ascii_lowercase(),
            codecs: None,
            q: 1.0,
        };
        for param in parts {
            let Some((name, value)) = param.split_once('=') else { continue };
            let value = value.trim().trim_matches('"').to_ascii_lowercase();
            match name.trim().to_ascii_lowercase().as_str() {
                // A q-value that does not parse is treated as absent rather than as a refusal.
                "q" => range.q = value.parse::<f32>().ok().filter(|q| (0.0..=1.0).contains(q)).unwrap_or(1.0),
                "codecs" => range.codecs = Some(value),
                _ => {}
            }
        }
        (!range.kind.is_empty() && !range.subtype.is_empty()).then_some(range)
    }

    /// Whether this range names `container` itself (not through a wildcard).
    fn matches_exactly(&self, container: Container) -> bool {
        let codecs_opus = self.codecs.as_deref().is_none_or(|c| c.split(',').any(|c| c.trim() == "opus"));
        match (self.kind.as_str(), self.subtype.as_str()) {
            ("audio", "wav" | "wave" | "x-wav" | "vnd.wave") => container == Container::Wav,
            ("audio", "flac" | "x-flac") => container == Container::Flac,
            ("audio", "ogg" | "opus") => container == Container::OggOpus && codecs_opus,
            ("audio", "mpeg" | "mp3") => container == Container::Mp3,
            _ => false,
        }
    }

    /// How specific a match this range is for `container` (2 exact, 1 `audio/*`, 0 `*/*`).
    fn specificity(&self, container: Container) -> Option<u8> {
        match (self.kind.as_str(), self.subtype.as_str()) {
            ("*", "*") => Some(0),
            ("audio", "*") => Some(1),
            _ => self.matches_exactly(container).then_some(2),
        }
    }
}

/// The q-value the header gives `container` and the position of the range that gives it: its most
/// specific matching range (the first of equals); `None` when no range matches.
fn rank(ranges: &[MediaRange], container: Container) -> Option<(f32, usize)> {
    let mut best: Option<(u8, f32, usize)> = None;
    for (position, range) in ranges.iter().enumerate() {
        let Some(specificity) = range.specificity(container) else { continue };
        if best.is_none_or(|(s, _, _)| specificity > s) {
            best = Some((specificity, range.q, position));
        }
    }
    best.map(|(_, q, position)| (q, position))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Container::ALL {
            assert_eq!(Container::from_extension(c.extension()), Some(c));
            assert_eq!(Container::from_extension(&c.extension().to_uppercase()), Some(c));
        }
        assert_eq!(Container::from_extension("opus"), Some(Container::OggOpus));
        assert_eq!(Container::from_name("OGG"), Some(Container::OggOpus));
        assert_eq!(Container::from_name("aac"), None);
        assert_eq!(Container::OggOpus.mime(), "audio/ogg; codecs=opus");
    }

    #[test]
    fn accept_headers_pick_by_quality_then_order() {
        let pick = Container::from_accept;
        assert_eq!(pick("*/*"), Some(Container::Wav));
        assert_eq!(pick("audio/*"), Some(Container::Wav));
        assert_eq!(pick("audio/flac, audio/mpeg"), Some(Container::Flac));
        assert_eq!(pick("audio/flac;q=0.5, audio/mpeg"), Some(Container::Mp3));
        assert_eq!(pick("audio/ogg; codecs=opus"), Some(Container::OggOpus));
        assert_eq!(pick("audio/ogg; codecs=\"vorbis\""), None);
        assert_eq!(pick("AUDIO/MPEG;Q=0.9, */*;q=0.1"), Some(Container::Mp3));
        assert_eq!(pick("text/html, application/json"), None);
        assert_eq!(pick(""), None);
        assert_eq!(pick("audio/wav;q=0, audio/*"), Some(Container::Flac));
        assert_eq!(pick("audio/*;q=0"), None);
        assert_eq!(pick("audio/wav;q=0, audio/flac;q=0.2"), Some(Container::Flac));
        assert_eq!(pick("text/html, */*;q=0.8"), Some(Container::Wav));
        assert_eq!(pick("garbage, ;;, /, audio/mp3"), Some(Container::Mp3));
    }
}
