//! `maestro top` without a terminal: a frame rendered into ratatui's TestBackend from real server
//! answers, and the feed surviving a server restart.

mod common;

use std::time::Duration;

use common::{start, start_on, PRESSED, ROOMY};
use maestro_cli::{
    client,
    top::{feed, ui, Dashboard, Event},
};
use maestro_proto as pb;
use ratatui::{backend::TestBackend, Terminal};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

fn draw(d: &Dashboard) -> String {
    let mut terminal = Terminal::new(TestBackend::new(140, 44)).unwrap();
    terminal.draw(|f| ui::render(f, d)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    let width = buffer.area.width as usize;
    let symbols: Vec<&str> = buffer.content.iter().map(|c| c.symbol()).collect();
    symbols.chunks(width).map(|row| row.concat()).collect::<Vec<_>>().join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frame_shows_memory_gpu_and_alerts_from_a_real_snapshot() {
    let s = start(PRESSED).await;
    let mut c = client::connect(&client::Target::new(&s.url()).unwrap()).await.unwrap();
    let mut d = Dashboard::new(s.url());
    d.apply(Event::Connected);
    let mut alerts = c.resources.watch_alerts(pb::WatchAlertsRequest::default()).await.unwrap().into_inner();
    let alert = tokio::time::timeout(Duration::from_secs(30), alerts.next()).await.unwrap().unwrap().unwrap();
    d.apply(Event::Alert(alert));
    for _ in 0..3 {
        d.apply(Event::Snapshot(Box::new(
            c.resources.get_status(pb::StatusRequest {}).await.unwrap().into_inner(),
        )));
    }
    d.apply(Event::Report(Box::new(
        c.resources.get_report(pb::ReportRequest {}).await.unwrap().into_inner(),
    )));
    let screen = draw(&d);
    for text in [
        "maestro top",
        s.url().as_str(),
        "● connected",
        "health CRITICAL",
        "host memory 0.95 GB / 1.00 GB (95.0 %)",
        "gpu0 memory 40.00 GB / 80.00 GB (50.0 %)",
        "CPU 37.0 % on 2 cores",
        "GPU0 utilisation 40 %",
        "Scripted H100",
        "61 °C",
        "active alerts (1)",
        "CRITICAL",
        "q  quit",
        "leases (0)",
        "cached models (0)",
    ] {
        assert!(screen.contains(text), "{text:?} is not on screen:\n{screen}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_connection_is_on_screen() {
    let mut d = Dashboard::new("http://127.0.0.1:1");
    d.apply(Event::Disconnected {
        error: "UNAVAILABLE: cannot connect".into(),
        retry_in: Duration::from_secs(4),
        attempt: 3,
    });
    let screen = draw(&d);
    assert!(screen.contains("disconnected, reconnecting in"), "{screen}");
    assert!(screen.contains("(attempt 3): UNAVAILABLE: cannot connect"), "{screen}");
    assert!(screen.contains("waiting for the first snapshot"), "{screen}");
}

async fn wait_for(rx: &mut mpsc::Receiver<Event>, what: &str, matches: impl Fn(&Event) -> bool) -> Event {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let event = tokio::time::timeout_at(deadline, rx.recv()).await;
        let event = event.unwrap_or_else(|_| panic!("no {what} within 30 s")).expect("the feed ended");
        if matches(&event) {
            return event;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_feed_survives_a_server_restart() {
    let s = start(ROOMY).await;
    let (addr, url) = (s.addr, s.url());
    let (tx, mut rx) = mpsc::channel(64);
    let feed = feed::spawn(client::Target::new(&url).unwrap(), 0, tx);
    wait_for(&mut rx, "connection", |e| matches!(e, Event::Connected)).await;
    wait_for(&mut rx, "snapshot", |e| matches!(e, Event::Snapshot(_))).await;
    s.stop().await;
    let lost = wait_for(&mut rx, "disconnection", |e| matches!(e, Event::Disconnected { .. })).await;
    let Event::Disconnected { attempt, retry_in, .. } = lost else { unreachable!() };
    assert_eq!(attempt, 1);
    let first = feed::FIRST_BACKOFF;
    assert!(
        first <= retry_in && retry_in < 2 * first,
        "the first retry is jittered from {first:?}: {retry_in:?}"
    );
    let _restarted = start_on(addr, ROOMY).await;
    wait_for(&mut rx, "reconnection", |e| matches!(e, Event::Connected)).await;
    wait_for(&mut rx, "snapshot after the restart", |e| matches!(e, Event::Snapshot(_))).await;
    feed.abort();
}
