//! `maestro top`: a live full-screen dashboard over WatchSnapshots and WatchAlerts.
//!
//! Three parts: [`feed`] owns the connection and turns streams into events, [`state`] folds them
//! into a [`Dashboard`], [`ui`] draws a frame from it. This module owns the terminal: it enters the
//! alternate screen in raw mode, redraws on every event and every 250 ms (for the reconnect
//! countdown), and restores the terminal on `q`, Esc, Ctrl-C, SIGINT or a panic.

pub mod feed;
pub mod state;
pub mod ui;

use std::time::Duration;

use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc;

pub use state::{Dashboard, Event};

use crate::{args::TopArgs, client::Target, exit, Failure};

/// Redraw period when nothing arrives.
const REDRAW_EVERY: Duration = Duration::from_millis(250);

/// Runs the dashboard until the user quits.
pub async fn run(target: Target, args: &TopArgs) -> Result<(), Failure> {
    // `target` was checked (address, credentials) before the terminal was taken over.
    let addr = target.addr.clone();
    let (tx, mut events) = mpsc::channel(64);
    let feed = feed::spawn(target, args.interval_ms, tx);
    let mut keys = spawn_key_reader();
    let mut terminal = ratatui::try_init().map_err(|e| Failure::io("cannot open the terminal", e))?;
    let mut dashboard = Dashboard::new(addr);
    let mut redraw = tokio::time::interval(REDRAW_EVERY);
    let result = loop {
        if let Err(e) = terminal.draw(|f| ui::render(f, &dashboard)) {
            break Err(Failure::io("cannot draw", e));
        }
        tokio::select! {
            Some(event) = events.recv() => dashboard.apply(event),
            key = keys.recv() => match key {
                Some(k) if is_quit(&k) => break Ok(()),
                Some(_) => {}
                None => break Ok(()),
            },
            _ = redraw.tick() => {}
            _ = tokio::signal::ctrl_c() => break Ok(()),
        }
    };
    ratatui::restore();
    feed.abort();
    result.map_err(|f| Failure::new(exit::GENERAL, f.message))
}

/// `q`, Esc or Ctrl-C (raw mode delivers Ctrl-C as a key, not a signal).
pub fn is_quit(key: &KeyEvent) -> bool {
    key.kind == KeyEventKind::Press
        && match key.code {
            KeyCode::Char('q') | KeyCode::Esc => true,
            KeyCode::Char('c') => key.modifiers.contains(KeyModifiers::CONTROL),
            _ => false,
        }
}

/// Reads key presses on a thread of its own (crossterm's reader blocks) until the receiver goes.
fn spawn_key_reader() -> mpsc::Receiver<KeyEvent> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        while !tx.is_closed() {
            match event::poll(Duration::from_millis(100)) {
                Ok(true) => {
                    if let Ok(TermEvent::Key(key)) = event::read() {
                        if tx.blocking_send(key).is_err() {
                            return;
                        }
                    }
                }
                Ok(false) => {}
                Err(_) => return,
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_escape_and_ctrl_c_quit() {
        let key = |code, modifiers| KeyEvent::new(code, modifiers);
        assert!(is_quit(&key(KeyCode::Char('q'), KeyModifiers::NONE)));
        assert!(is_quit(&key(KeyCode::Esc, KeyModifiers::NONE)));
        assert!(is_quit(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)));
        assert!(!is_quit(&key(KeyCode::Char('c'), KeyModifiers::NONE)));
    }
}
