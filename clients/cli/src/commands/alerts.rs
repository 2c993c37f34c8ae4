//! `alerts` and `watch-alerts`: the alert log as a table, and the live event stream as lines.

use maestro_proto as pb;
use tokio_stream::StreamExt;

use super::Output;
use crate::{
    args::{AlertsArgs, SeverityArg, WatchAlertsArgs},
    client::Clients,
    table::Table,
    units::{self, in_unit},
    Failure,
};

fn min_severity(s: Option<SeverityArg>) -> i32 {
    s.map_or(pb::Severity::Unspecified, pb::Severity::from) as i32
}

/// `alerts`.
pub async fn list(c: &mut Clients, out: Output, a: &AlertsArgs) -> Result<(), Failure> {
    let req = pb::ListAlertsRequest {
        min_severity: min_severity(a.severity),
        active_only: a.active,
        limit: a.limit,
        ..Default::default()
    };
    let list = c.resources.list_alerts(req).await?.into_inner();
    out.show(&list, "AlertList", |l| alert_table(&l.alerts).unwrap_or_else(|| "no alerts\n".into()))?;
    Ok(())
}

/// `watch-alerts`: one line per event until the stream ends or Ctrl-C.
pub async fn watch(c: &mut Clients, out: Output, a: &WatchAlertsArgs) -> Result<(), Failure> {
    let req = pb::WatchAlertsRequest { min_severity: min_severity(a.severity) };
    let mut stream = c.resources.watch_alerts(req).await?.into_inner();
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(event) = next.transpose()? else { return Ok(()) };
        out.stream(&event, "AlertEvent", |e| format!("{}\n", event_line(e)))?;
    }
}

/// `ACTIVE   WARNING   host_memory  host  85.2 % (threshold 80.0 %)  message`.
pub fn event_line(e: &pb::AlertEvent) -> String {
    let kind = match pb::alert_event::Kind::try_from(e.kind).unwrap_or_default() {
        pb::alert_event::Kind::Active => "ACTIVE",
        pb::alert_event::Kind::Raised => "RAISED",
        pb::alert_event::Kind::Resolved => "RESOLVED",
        pb::alert_event::Kind::Unspecified => "EVENT",
    };
    let a = e.alert.clone().unwrap_or_default();
    format!(
        "{kind:<8} {:<8} {:<15} {:<8} {} (threshold {})  {}",
        units::severity(a.severity),
        a.rule,
        a.resource,
        in_unit(a.value, &a.unit),
        in_unit(a.threshold, &a.unit),
        a.message
    )
}

/// Alerts as a table, or `None` when there are none.
pub fn alert_table(alerts: &[pb::Alert]) -> Option<String> {
    if alerts.is_empty() {
        return None;
    }
    let mut t =
        Table::new(&["SEVERITY", "RULE", "RESOURCE", "VALUE", "THRESHOLD", "STATE", "STARTED", "MESSAGE"])
            .right(&[3, 4]);
    for a in alerts {
        let state = if a.active {
            "active".to_string()
        } else {
            format!("resolved {}", units::ago(a.resolved_at.as_ref()))
        };
        t.row(vec![
            units::severity(a.severity).into(),
            a.rule.clone(),
            a.resource.clone(),
            in_unit(a.value, &a.unit),
            in_unit(a.threshold, &a.unit),
            state,
            units::ago(a.started_at.as_ref()),
            a.message.clone(),
        ]);
    }
    Some(t.render())
}
