//! Unit and property tests of the lease ledger, with time passed in explicitly.

use proptest::prelude::*;

use super::*;

const GB: u64 = 1_000_000_000;

fn capacity() -> Capacity {
    Capacity { host_available_bytes: 10 * GB, gpu_available_bytes: vec![(0, 8 * GB), (1, 4 * GB)] }
}

fn request(cpu_bytes: u64, gpu_bytes: u64, gpu_index: Option<u32>, ttl_s: Option<u64>) -> LeaseRequest {
    LeaseRequest {
        owner: "tester".into(),
        token: None,
        kind: LeaseKind::Client,
        cpu_bytes,
        gpu_bytes,
        gpu_index,
        ttl: ttl_s.map(Duration::from_secs),
    }
}

#[test]
fn reserves_and_tracks_totals() {
    let (mut ledger, now) = (Ledger::new(), Instant::now());
    let a = ledger.reserve(request(3 * GB, 2 * GB, Some(0), None), &capacity(), now).unwrap();
    let b = ledger.reserve(request(GB, GB, Some(1), Some(60)), &capacity(), now).unwrap();
    assert_ne!(a.id, b.id);
    assert!(a.id.as_str().starts_with("lease-1-") && b.id.as_str().starts_with("lease-2-"), "{}", a.id);
    assert_eq!((a.created_at, a.expires_at), (now, None));
    assert_eq!(b.expires_at, Some(now + Duration::from_secs(60)));
    assert_eq!(
        (ledger.reserved_host(), ledger.reserved_gpu(0), ledger.reserved_gpu(1)),
        (4 * GB, 2 * GB, GB)
    );
    assert_eq!(ledger.leases().map(|l| &l.id).collect::<Vec<_>>(), [&a.id, &b.id]);
    assert_eq!((ledger.len(), ledger.is_empty()), (2, false));
    assert_eq!(ledger.get(a.id.as_str()), Some(&a));
}

#[test]
fn refuses_host_over_commit_with_numbers() {
    let (mut ledger, now) = (Ledger::new(), Instant::now());
    ledger.reserve(request(6 * GB, 0, None, None), &capacity(), now).unwrap();
    let err = ledger.reserve(request(5 * GB, 0, None, None), &capacity(), now).unwrap_err();
    assert_eq!(
        err,
        LedgerError::Insufficient { resource: "host memory".into(), requested: 5 * GB, available: 4 * GB }
    );
    assert!(err.to_string().contains("requested 5000000000 bytes, available 4000000000 bytes"), "{err}");
    ledger.reserve(request(4 * GB, 0, None, None), &capacity(), now).unwrap();
    assert_eq!(ledger.len(), 2);
}

#[test]
fn refuses_gpu_over_commit_per_device() {
    let (mut ledger, now) = (Ledger::new(), Instant::now());
    ledger.reserve(request(0, 3 * GB, Some(1), None), &capacity(), now).unwrap();
    let err = ledger.reserve(request(0, 2 * GB, Some(1), None), &capacity(), now).unwrap_err();
    assert_eq!(
        err,
        LedgerError::Insufficient { resource: "gpu:1 memory".into(), requested: 2 * GB, available: GB }
    );
    ledger.reserve(request(0, 2 * GB, Some(0), None), &capacity(), now).unwrap();
}

#[test]
fn a_refused_request_reserves_nothing() {
    let (mut ledger, now) = (Ledger::new(), Instant::now());
    assert!(ledger.reserve(request(GB, 9 * GB, Some(0), None), &capacity(), now).is_err());
    assert_eq!((ledger.len(), ledger.reserved_host()), (0, 0));
}

#[test]
fn live_usage_shrinks_what_is_available() {
    let (mut ledger, now) = (Ledger::new(), Instant::now());
    let busy = Capacity { host_available_bytes: GB, ..capacity() };
    ledger.reserve(request(GB / 2, 0, None, None), &busy, now).unwrap();
    let err = ledger.reserve(request(GB, 0, None, None), &busy, now).unwrap_err();
    assert!(matches!(err, LedgerError::Insufficient { available, .. } if available == GB / 2));
}

#[test]
fn unknown_or_missing_gpu_is_an_error() {
    let (mut ledger, now) = (Ledger::new(), Instant::now());
    let err = ledger.reserve(request(0, GB, Some(7), None), &capacity(), now).unwrap_err();
    assert_eq!(err, LedgerError::GpuIndex(GpuIndexError::Unknown { index: 7, known: vec![0, 1] }));
    assert!(err.to_string().contains("gpu_index") && err.to_string().contains("got 7"), "{err}");
    let err = ledger.reserve(request(0, GB, None, None), &capacity(), now).unwrap_err();
    assert_eq!(err, LedgerError::GpuIndex(GpuIndexError::Required { requested: GB }));
    let cpu_only = Capacity { host_available_bytes: GB, gpu_available_bytes: vec![] };
    assert!(ledger.reserve(request(GB, 0, None, None), &cpu_only, now).is_ok());
}

#[test]
fn release_returns_the_lease_once() {
    let (mut ledger, now) = (Ledger::new(), Instant::now());
    let lease = ledger.reserve(request(GB, GB, Some(0), None), &capacity(), now).unwrap();
    assert_eq!(ledger.release(lease.id.as_str()), Ok(lease.clone()));
    let again = ledger.release(lease.id.as_str()).unwrap_err();
    assert_eq!(again, LedgerError::UnknownLease { id: lease.id.to_string() });
    assert!(matches!(ledger.release("lease-0-nope"), Err(LedgerError::UnknownLease { .. })));
    assert_eq!((ledger.reserved_host(), ledger.reserved_gpu(0)), (0, 0));
}

#[test]
fn expire_removes_only_due_leases() {
    let (mut ledger, t0) = (Ledger::new(), Instant::now());
    let short = ledger.reserve(request(GB, 0, None, Some(10)), &capacity(), t0).unwrap();
    let long = ledger.reserve(request(GB, 0, None, Some(100)), &capacity(), t0).unwrap();
    ledger.reserve(request(GB, 0, None, None), &capacity(), t0).unwrap();
    assert!(ledger.expire(t0 + Duration::from_secs(9)).is_empty());
    assert_eq!(ledger.expire(t0 + Duration::from_secs(10)), vec![short.clone()]);
    assert_eq!(ledger.len(), 2);
    assert!(matches!(ledger.release(short.id.as_str()), Err(LedgerError::UnknownLease { .. })));
    assert_eq!(ledger.expire(t0 + Duration::from_secs(1_000_000)), vec![long]);
    assert_eq!(ledger.reserved_host(), GB);
}

#[test]
fn expired_but_not_swept_leases_still_count() {
    let (mut ledger, t0) = (Ledger::new(), Instant::now());
    ledger.reserve(request(10 * GB, 0, None, Some(1)), &capacity(), t0).unwrap();
    let later = t0 + Duration::from_secs(5);
    assert!(ledger.reserve(request(1, 0, None, None), &capacity(), later).is_err());
    assert_eq!(ledger.expire(later).len(), 1);
    assert!(ledger.reserve(request(1, 0, None, None), &capacity(), later).is_ok());
}

#[test]
fn huge_ttl_never_expires_and_does_not_panic() {
    let (mut ledger, now) = (Ledger::new(), Instant::now());
    let lease = ledger.reserve(request(1, 0, None, Some(u64::MAX)), &capacity(), now).unwrap();
    assert_eq!(lease.expires_at, None);
    let huge = Capacity { host_available_bytes: u64::MAX, gpu_available_bytes: vec![(0, u64::MAX)] };
    assert!(ledger.reserve(request(u64::MAX, u64::MAX, Some(0), None), &huge, now).is_err());
    assert!(ledger.reserve(request(u64::MAX - 1, u64::MAX, Some(0), None), &huge, now).is_ok());
    assert_eq!(ledger.reserved_host(), u64::MAX);
}

#[test]
fn kinds_have_report_names() {
    let names = [LeaseKind::Client, LeaseKind::ModelLoad, LeaseKind::Generation].map(LeaseKind::as_str);
    assert_eq!(names, ["client", "model_load", "generation"]);
}

#[derive(Debug, Clone)]
enum Op {
    Reserve { cpu: u64, gpu: u64, gpu_index: Option<u32>, ttl_s: Option<u64> },
    Release(usize),
    ReleaseUnknown,
    Expire,
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let gpu_index = prop_oneof![Just(None), (0u32..3).prop_map(Some)];
    let reserve = (0..4 * GB, 0..4 * GB, gpu_index, proptest::option::of(0u64..120))
        .prop_map(|(cpu, gpu, gpu_index, ttl_s)| Op::Reserve { cpu, gpu, gpu_index, ttl_s });
    prop_oneof![
        4 => reserve,
        2 => any::<prop::sample::Index>().prop_map(|i| Op::Release(i.index(1 << 16))),
        1 => Just(Op::ReleaseUnknown),
        1 => Just(Op::Expire),
        2 => (0u64..60).prop_map(Op::Advance),
    ]
}

fn assert_within(ledger: &Ledger, capacity: &Capacity) {
    assert!(ledger.reserved_host() <= capacity.host_available_bytes);
    let host: u64 = ledger.leases().map(|l| l.cpu_bytes).sum();
    assert_eq!(host, ledger.reserved_host());
    for &(index, available) in &capacity.gpu_available_bytes {
        let gpu: u64 = ledger.leases().filter(|l| l.gpu_index == Some(index)).map(|l| l.gpu_bytes).sum();
        assert_eq!(gpu, ledger.reserved_gpu(index));
        assert!(gpu <= available, "gpu {index}: {gpu} > {available}");
    }
    assert!(ledger.leases().all(|l| l.gpu_bytes == 0 || l.gpu_index.is_some()));
}

/// Applies `op`, checking the ledger's answer against what the books allowed.
fn apply(ledger: &mut Ledger, capacity: &Capacity, op: Op, now: &mut Instant, ids: &mut Vec<LeaseId>) {
    match op {
        Op::Reserve { cpu, gpu, gpu_index, ttl_s } => {
            let host_fits = cpu <= capacity.host_available_bytes - ledger.reserved_host();
            let gpu_fits = match gpu_index {
                Some(i) => capacity.gpu(i).is_some_and(|a| gpu <= a - ledger.reserved_gpu(i)),
                None => gpu == 0,
            };
            let result = ledger.reserve(request(cpu, gpu, gpu_index, ttl_s), capacity, *now);
            assert_eq!(result.is_ok(), host_fits && gpu_fits, "{result:?}");
            ids.extend(result.map(|l| l.id));
        }
        Op::Release(i) if !ids.is_empty() => {
            let id = ids.swap_remove(i % ids.len());
            let live = ledger.get(id.as_str()).is_some();
            assert_eq!(ledger.release(id.as_str()).is_ok(), live);
        }
        Op::Release(_) | Op::ReleaseUnknown => assert!(ledger.release("lease-0-unknown").is_err()),
        Op::Expire => {
            let before = ledger.len();
            let expired = ledger.expire(*now);
            assert!(expired.iter().all(|l| l.is_expired(*now)));
            assert!(ledger.leases().all(|l| !l.is_expired(*now)));
            assert_eq!(before, expired.len() + ledger.len());
        }
        Op::Advance(s) => *now += Duration::from_secs(s),
    }
}

proptest! {
    #[test]
    fn never_over_commits_and_returns_to_zero(ops in proptest::collection::vec(op(), 1..200)) {
        let capacity = Capacity { host_available_bytes: 8 * GB, gpu_available_bytes: vec![(0, 6 * GB), (2, 3 * GB)] };
        let (mut ledger, mut now, mut ids) = (Ledger::new(), Instant::now(), Vec::new());
        for op in ops {
            apply(&mut ledger, &capacity, op, &mut now, &mut ids);
            assert_within(&ledger, &capacity);
        }
        ledger.expire(now + Duration::from_secs(3600));
        let remaining: Vec<LeaseId> = ledger.leases().map(|l| l.id.clone()).collect();
        for id in remaining {
            prop_assert!(ledger.release(id.as_str()).is_ok());
        }
        prop_assert_eq!((ledger.len(), ledger.reserved_host()), (0, 0));
        prop_assert_eq!((ledger.reserved_gpu(0), ledger.reserved_gpu(2)), (0, 0));
    }
}

fn by(token: Option<&str>, any: bool) -> Releaser {
    Releaser::Client { token: token.map(str::to_owned), any }
}

fn of(token: &str, kind: LeaseKind, cpu_bytes: u64) -> LeaseRequest {
    LeaseRequest { token: Some(token.into()), kind, ..request(cpu_bytes, 0, None, None) }
}

#[test]
fn clients_release_only_their_own_client_leases() {
    let (mut ledger, now) = (Ledger::new(), Instant::now());
    let mine = ledger.reserve(of("ci", LeaseKind::Client, GB), &capacity(), now).unwrap();
    let theirs = ledger.reserve(of("batch", LeaseKind::Client, GB), &capacity(), now).unwrap();
    let server = ledger.reserve(request(GB, 0, None, None), &capacity(), now).unwrap();
    let model = LeaseRequest { kind: LeaseKind::ModelLoad, ..request(GB, 0, None, None) };
    let model = ledger.reserve(model, &capacity(), now).unwrap();

    let err = ledger.release_by(theirs.id.as_str(), &by(Some("ci"), false)).unwrap_err();
    assert_eq!(err, LedgerError::NotYours { id: theirs.id.to_string(), holder: "batch".into() });
    let err = ledger.release_by(server.id.as_str(), &by(Some("ci"), false)).unwrap_err();
    assert!(matches!(err, LedgerError::NotYours { ref holder, .. } if holder.is_empty()), "{err}");
    for who in [by(Some("ci"), false), by(Some("ops"), true), by(None, true)] {
        let err = ledger.release_by(model.id.as_str(), &who).unwrap_err();
        assert_eq!(err, LedgerError::ServerLease { id: model.id.to_string(), kind: LeaseKind::ModelLoad });
        assert!(err.to_string().contains("model_load lease"), "{err}");
    }
    assert_eq!(ledger.release_by(mine.id.as_str(), &by(Some("ci"), false)).unwrap().id, mine.id);
    assert_eq!(ledger.release_by(theirs.id.as_str(), &by(Some("ops"), true)).unwrap().id, theirs.id);
    assert_eq!(ledger.release_by(server.id.as_str(), &by(None, true)).unwrap().id, server.id);
    assert_eq!(ledger.release_by(model.id.as_str(), &Releaser::Server).unwrap().id, model.id);
}

#[test]
fn a_token_holds_at_most_its_share() {
    let share = TokenShare { max_leases: 2, max_bytes: 3 * GB, max_total: 0 };
    let (mut ledger, now) = (Ledger::with_share(share), Instant::now());
    ledger.reserve(of("ci", LeaseKind::Client, GB), &capacity(), now).unwrap();
    let err = ledger.reserve(of("ci", LeaseKind::Client, 2 * GB + 1), &capacity(), now).unwrap_err();
    let expected =
        LedgerError::TokenBytes { token: "ci".into(), held: GB, requested: 2 * GB + 1, limit: 3 * GB };
    assert_eq!(err, expected);
    ledger.reserve(of("ci", LeaseKind::Client, 2 * GB), &capacity(), now).unwrap();
    let err = ledger.reserve(of("ci", LeaseKind::Client, 1), &capacity(), now).unwrap_err();
    assert_eq!(err, LedgerError::TokenLeases { token: "ci".into(), held: 2, limit: 2 });
    assert!(err.to_string().contains("--max-leases-per-token 2"), "{err}");
    // Another name has its own share; anonymous leases have none.
    ledger.reserve(of("batch", LeaseKind::Client, GB), &capacity(), now).unwrap();
    ledger.reserve(request(GB, 0, None, None), &capacity(), now).unwrap();
    ledger.reserve(request(GB, 0, None, None), &capacity(), now).unwrap();
}

#[test]
fn client_leases_in_all_are_capped_and_the_servers_own_are_not() {
    let share = TokenShare { max_total: 2, ..TokenShare::default() };
    let (mut ledger, now) = (Ledger::with_share(share), Instant::now());
    ledger.reserve(of("ci", LeaseKind::Client, GB), &capacity(), now).unwrap();
    ledger.reserve(request(GB, 0, None, None), &capacity(), now).unwrap();
    let err = ledger.reserve(of("batch", LeaseKind::Client, GB), &capacity(), now).unwrap_err();
    assert_eq!(err, LedgerError::TooManyLeases { held: 2, limit: 2 });
    assert!(err.to_string().contains("--max-leases 2"), "{err}");
    ledger.reserve(of("server", LeaseKind::Generation, GB), &capacity(), now).unwrap();
}
