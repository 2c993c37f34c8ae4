//! Every relative link of the repository's Markdown resolves: the README, `docs/` and every other
//! Markdown file outside build output, each link to a file that exists and, with a `#fragment` into a
//! Markdown file, to one of its headings' anchors as GitHub makes them. Pages move and headings get
//! renamed; this keeps the README's map and the pages' cross-references honest.
//!
//! Markdown is parsed by `pulldown-cmark`, so links inside code blocks and code spans are not links,
//! and reference-style links are resolved as a renderer would.

use std::{
    collections::{HashMap, HashSet},
    path::{Component, Path, PathBuf},
};

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// Folders never searched for Markdown: build output, dependencies, fuzzing's generated files.
const SKIPPED_DIRS: [&str; 5] = ["target", "node_modules", "artifacts", "corpus", "fixtures"];

/// A link that does not resolve: the file it is in, its destination, and why.
#[derive(Debug, PartialEq, Eq)]
struct Broken {
    file: PathBuf,
    link: String,
    why: String,
}

/// GitHub's anchor for a heading's text: lower case, every character but letters, digits, spaces,
/// `-` and `_` dropped, spaces turned into `-` (github-slugger, without de-duplication).
fn slug(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn parser(text: &str) -> Parser<'_> {
    Parser::new_ext(text, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS)
}

/// The anchors of a document's headings, a repeated one suffixed `-1`, `-2`, ... as GitHub does.
fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut heading: Option<String> = None;
    for event in parser(text) {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                let base = slug(&heading.take().unwrap_or_default());
                let mut anchor = base.clone();
                while seen.contains(&anchor) {
                    let n = counts.entry(base.clone()).or_insert(0);
                    *n += 1;
                    anchor = format!("{base}-{n}");
                }
                seen.insert(anchor);
            }
            _ => {}
        }
    }
    seen
}

/// The destinations of a document's links and images, in order.
fn links(text: &str) -> Vec<String> {
    parser(text)
        .filter_map(|event| match event {
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                Some(dest_url.to_string())
            }
            _ => None,
        })
        .collect()
}

/// Whether a destination leaves the repository's files: a URL with a scheme, or a mail address.
fn external(dest: &str) -> bool {
    let scheme = dest.split_once(':').map(|(s, _)| s);
    scheme.is_some_and(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)))
}

/// `path` with `.` and `..` folded away, or `None` when it climbs above where it started.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            other => out.push(other),
        }
    }
    Some(out)
}

/// Every broken relative link of `files` (paths relative to `root`).
fn check(root: &Path, files: &[PathBuf]) -> Vec<Broken> {
    let mut cache: HashMap<PathBuf, HashSet<String>> = HashMap::new();
    let mut anchors_of = |file: &Path| -> HashSet<String> {
        cache
            .entry(file.to_path_buf())
            .or_insert_with(|| anchors(&std::fs::read_to_string(root.join(file)).unwrap_or_default()))
            .clone()
    };
    let mut broken = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for link in links(&text) {
            if external(&link) {
                continue;
            }
            let (path, fragment) = match link.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (link.as_str(), None),
            };
            let mut fail = |why: String| broken.push(Broken { file: file.clone(), link: link.clone(), why });
            let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
            let target = if decoded.is_empty() {
                Some(file.clone())
            } else if decoded.starts_with('/') {
                normalize(Path::new(decoded.trim_start_matches('/')))
            } else {
                normalize(&file.parent().unwrap_or(Path::new("")).join(decoded.as_ref()))
            };
            let Some(target) = target else {
                fail("leads outside the repository".into());
                continue;
            };
            if !root.join(&target).exists() {
                fail(format!("{} does not exist", target.display()));
                continue;
            }
            let markdown = target.extension().is_some_and(|e| e == "md");
            if let Some(fragment) = fragment.filter(|_| markdown) {
                if !anchors_of(&target).contains(fragment) {
                    fail(format!("{} has no heading with the anchor #{fragment}", target.display()));
                }
            }
        }
    }
    broken
}

/// The Markdown files below `dir`, relative to `root`, skipping hidden and generated folders.
fn markdown_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(root.join(dir)).unwrap().flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = dir.join(&name);
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() && !name.starts_with('.') && !SKIPPED_DIRS.contains(&name.as_str()) {
            markdown_files(root, &path, out);
        } else if kind.is_file() && name.ends_with(".md") {
            out.push(path);
        }
    }
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    markdown_files(root, Path::new(""), &mut files);
    for needed in ["README.md", "docs/guide.md", "docs/api.md", "docs/configuration.md"] {
        assert!(files.contains(&PathBuf::from(needed)), "{needed} is among the checked files: {files:?}");
    }
    let broken = check(root, &files);
    let report: Vec<String> =
        broken.iter().map(|b| format!("{}: ({}) {}", b.file.display(), b.link, b.why)).collect();
    assert!(broken.is_empty(), "{} broken links:\n{}", broken.len(), report.join("\n"));
}

#[test]
fn slugs_follow_github() {
    assert_eq!(slug("Devices: GPU hosts and CPU hosts"), "devices-gpu-hosts-and-cpu-hosts");
    assert_eq!(slug("Longer than the model's window"), "longer-than-the-models-window");
    assert_eq!(
        slug("Native decoder step (csrc/decoder_step.cpp, 2026-11-28)"),
        "native-decoder-step-csrcdecoder_stepcpp-2026-11-28"
    );
    assert_eq!(slug("ResourceService.GetStatus"), "resourceservicegetstatus");
    assert_eq!(slug("Limits ≤ 5 — bytes"), "limits--5--bytes");
    let text = "# Title\n## Usage\n### Usage\n## `code` *and* [a link](x.md)\n```\n# not a heading\n```\n";
    let found = anchors(text);
    let want: HashSet<String> =
        ["title", "usage", "usage-1", "code-and-a-link"].into_iter().map(String::from).collect();
    assert_eq!(found, want);
}

/// The checker finds what it is for: a missing file, a missing anchor, a link out of the repository;
/// and passes what is fine, including links in code, which are not links.
#[test]
fn broken_links_are_reported_and_good_ones_pass() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("docs")).unwrap();
    std::fs::write(root.join("docs/page.md"), "# Page\n## A section\n## A section\n").unwrap();
    std::fs::write(root.join("image.png"), b"").unwrap();
    let readme = "# Read me\n\
        [good](docs/page.md) [anchor](docs/page.md#a-section) [second](docs/page.md#a-section-1)\n\
        [self](#read-me) [image](image.png) [web](https://example.com/x#y) <mailto:a@b.c>\n\
        [no file](docs/missing.md) [no anchor](docs/page.md#nowhere) [outside](../../etc/passwd)\n\
        [missing self](#nope)\n\n`[in code](nowhere.md)`\n\n```\n[in a block](nowhere.md)\n```\n";
    std::fs::write(root.join("README.md"), readme).unwrap();
    let mut files = Vec::new();
    markdown_files(root, Path::new(""), &mut files);
    assert_eq!(files, [PathBuf::from("README.md"), PathBuf::from("docs/page.md")]);
    let found: Vec<(String, String)> = check(root, &files).into_iter().map(|b| (b.link, b.why)).collect();
    let want = [
        ("docs/missing.md", "docs/missing.md does not exist"),
        ("docs/page.md#nowhere", "docs/page.md has no heading with the anchor #nowhere"),
        ("../../etc/passwd", "leads outside the repository"),
        ("#nope", "README.md has no heading with the anchor #nope"),
    ];
    let want: Vec<(String, String)> = want.iter().map(|(l, w)| (l.to_string(), w.to_string())).collect();
    assert_eq!(found, want);
}
