//! A browser driver for the dashboard's tests: a Playwright script under `tests/dashboard/`, run by
//! the venv's Python against Debian's Chromium, that reports what it finds as one line each on its
//! stdout and waits at sync points for a word from the test on its stdin.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use tokio::sync::mpsc;

/// Longest wait for the driver's next line: a backstop, since its own steps time out sooner.
const LINE_WITHIN: Duration = Duration::from_secs(300);

/// The driver, its stdin, and its stdout as lines.
pub struct Driver {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Driver {
    /// Runs `tests/dashboard/{script}` on the page at `url` with `args`.
    pub fn start(script: &str, url: &str, args: &[&str]) -> Self {
        let venv = std::env::var("MAESTRO_VENV").expect(
            "MAESTRO_VENV: run through `make test` or `source scripts/env.sh` (the venv has playwright)",
        );
        let mut child = Command::new(format!("{venv}/bin/python3"))
            .arg(format!("{}/tests/dashboard/{script}", env!("CARGO_MANIFEST_DIR")))
            .arg(url)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the browser driver starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self { child, stdin, lines }
    }

    /// The next line, which must start with `word`; its other words.
    pub async fn expect(&mut self, word: &str) -> Vec<String> {
        let line = tokio::time::timeout(LINE_WITHIN, self.lines.recv())
            .await
            .unwrap_or_else(|_| panic!("no {word:?} from the driver within {LINE_WITHIN:?}"))
            .unwrap_or_else(|| panic!("the driver ended before {word:?}"));
        let mut words = line.split_whitespace().map(str::to_owned);
        let first = words.next().unwrap_or_default();
        assert_eq!(first, word, "driver said {line:?}");
        words.collect()
    }

    /// Sends `word` to the driver waiting at a sync point.
    pub fn tell(&mut self, word: &str) {
        writeln!(self.stdin, "{word}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Waits for `done` and a successful exit.
    pub async fn finish(mut self) {
        self.expect("done").await;
        let status = self.child.wait().unwrap();
        assert!(status.success(), "driver exited {status}");
    }
}
