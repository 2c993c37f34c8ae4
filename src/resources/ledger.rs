//! The lease ledger: every reservation of host or GPU memory, as a plain struct.
//!
//! A reservation succeeds only when it fits in what the monitor reports available minus every lease
//! still on the books, so the ledger never promises the same byte twice. Time is a parameter (`now`),
//! which keeps expiry deterministic and testable without a clock; the actor that owns the ledger
//! passes the current instant and calls [`Ledger::expire`] before reserving.

use std::fmt;
use std::time::{Duration, Instant};

/// A lease's id, `lease-<sequence>-<random hex>`: the sequence keeps ids unique within a run, the
/// random part keeps a client from guessing or reusing ids across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(String);

impl LeaseId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for LeaseId {
    fn from(id: String) -> Self {
        LeaseId(id)
    }
}

impl From<&str> for LeaseId {
    fn from(id: &str) -> Self {
        LeaseId(id.to_owned())
    }
}

/// What a lease is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaseKind {
    /// Reserved by a client through `Allocate`.
    Client,
    /// Held while a model loads and for as long as it stays loaded.
    ModelLoad,
    /// Held for the working set of one generation.
    Generation,
}

impl LeaseKind {
    /// Lower-case name for reports and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseKind::Client => "client",
            LeaseKind::ModelLoad => "model_load",
            LeaseKind::Generation => "generation",
        }
    }
}

/// A reservation to make; field values are validated by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRequest {
    /// Who holds it (a client name, a model id, a request id).
    pub owner: String,
    /// The name of the token that asked for it (`None` without a token file and for the server's own
    /// leases): who may release it, and whose share it counts against.
    pub token: Option<String>,
    /// What it is for.
    pub kind: LeaseKind,
    /// Host memory to reserve.
    pub cpu_bytes: u64,
    /// GPU memory to reserve on `gpu_index`.
    pub gpu_bytes: u64,
    /// The GPU; required when `gpu_bytes` > 0.
    pub gpu_index: Option<u32>,
    /// Lifetime; `None` lives until released.
    pub ttl: Option<Duration>,
}

/// A reservation on the books.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Unique id.
    pub id: LeaseId,
    /// Who holds it.
    pub owner: String,
    /// The name of the token that made it (see [`LeaseRequest::token`]).
    pub token: Option<String>,
    /// What it is for.
    pub kind: LeaseKind,
    /// Host memory reserved.
    pub cpu_bytes: u64,
    /// GPU memory reserved.
    pub gpu_bytes: u64,
    /// The GPU `gpu_bytes` is reserved on.
    pub gpu_index: Option<u32>,
    /// When it was granted.
    pub created_at: Instant,
    /// When it expires; `None` never (a TTL too large to represent counts as never).
    pub expires_at: Option<Instant>,
}

impl Lease {
    /// Whether the lease has expired at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// Memory the monitor reports available right now: effective limit minus live usage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capacity {
    /// Host memory available.
    pub host_available_bytes: u64,
    /// `(gpu index, bytes available)` per GPU.
    pub gpu_available_bytes: Vec<(u32, u64)>,
}

impl Capacity {
    fn gpu(&self, index: u32) -> Option<u64> {
        self.gpu_available_bytes.iter().find(|(i, _)| *i == index).map(|&(_, bytes)| bytes)
    }
}

/// Why a reservation or release failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// Not enough memory once other leases are counted.
    #[error(
        "not enough {resource}: requested {requested} bytes, available {available} bytes after other leases"
    )]
    Insufficient {
        /// `host memory` or `gpu:N memory`.
        resource: String,
        /// Bytes asked for.
        requested: u64,
        /// Bytes available minus other leases.
        available: u64,
    },
    /// The request's `gpu_index` names no GPU it can use.
    #[error("gpu_index: {0}")]
    GpuIndex(GpuIndexError),
    /// No such lease: never granted, already released or expired.
    #[error("lease_id: no live lease {id:?} (unknown, released or expired)")]
    UnknownLease {
        /// The id given.
        id: String,
    },
    /// The server's own lease: it ends with the work it is for, never by `Release`.
    #[error(
        "lease_id: {id:?} is a {} lease, held by the server for as long as its work lasts; only client leases can be released",
        kind.as_str()
    )]
    ServerLease {
        /// The id given.
        id: String,
        /// What it is for.
        kind: LeaseKind,
    },
    /// Another token's lease, and the caller is no admin.
    #[error("lease_id: {id:?} was made by token {holder:?}; only that token or an admin may release it")]
    NotYours {
        /// The id given.
        id: String,
        /// The name of the token that made it (empty when none did).
        holder: String,
    },
    /// The token already holds as many client leases as one token may.
    /// The server holds as many client leases as it may.
    #[error("{held} client leases are held, the server's limit (--max-leases {limit})")]
    TooManyLeases {
        /// Client leases held.
        held: usize,
        /// The limit.
        limit: usize,
    },
    #[error(
        "token {token:?} holds {held} client leases, the limit per token (--max-leases-per-token {limit})"
    )]
    TokenLeases {
        /// The token's name.
        token: String,
        /// Leases it holds.
        held: usize,
        /// The limit.
        limit: usize,
    },
    /// The lease would take the token past its share of bytes.
    #[error(
        "token {token:?} holds {held} bytes in client leases; {requested} more would pass the limit per token (--max-lease-bytes-per-token {limit})"
    )]
    TokenBytes {
        /// The token's name.
        token: String,
        /// Bytes (host and GPU) its client leases hold.
        held: u64,
        /// Bytes asked for.
        requested: u64,
        /// The limit.
        limit: u64,
    },
}

/// Who asks to release a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Releaser {
    /// The server's own guard, for its own lease.
    Server,
    /// A `Release` call.
    Client {
        /// The caller's token name (`None` without a token file).
        token: Option<String>,
        /// Whether it may release any client lease (an admin, or anyone without a token file).
        any: bool,
    },
}

/// How many client leases, and how many bytes in them, one token name may hold (`0` = no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenShare {
    /// Client leases per token name.
    pub max_leases: usize,
    /// Host plus GPU bytes in client leases per token name.
    pub max_bytes: u64,
    /// Client leases in all, whoever holds them (0 = no limit): anonymous clients have no name to
    /// share by, so this is what bounds the ledger.
    pub max_total: usize,
}

/// What is wrong with a request's `gpu_index` (the message without the field's name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuIndexError {
    /// The index is not one the monitor reports.
    #[error("must be one of the GPUs present {known:?}, got {index}")]
    Unknown {
        /// The index given.
        index: u32,
        /// The indices present.
        known: Vec<u32>,
    },
    /// GPU bytes were requested without saying on which GPU.
    #[error("required when gpu_memory_bytes > 0, got gpu_memory_bytes {requested} and no GPU")]
    Required {
        /// GPU bytes asked for.
        requested: u64,
    },
}

/// The leases in force, in the order they were granted.
#[derive(Debug, Default)]
pub struct Ledger {
    leases: Vec<Lease>,
    next: u64,
    share: TokenShare,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty ledger that holds each token name to `share`.
    pub fn with_share(share: TokenShare) -> Self {
        Self { share, ..Self::default() }
    }

    /// Grants `request` if it fits in `capacity` minus every lease on the books (expired ones
    /// included until [`Ledger::expire`] removes them, so a late expiry never over-commits).
    pub fn reserve(
        &mut self,
        request: LeaseRequest,
        capacity: &Capacity,
        now: Instant,
    ) -> Result<Lease, LedgerError> {
        if request.kind == LeaseKind::Client {
            let held = self.leases.iter().filter(|l| l.kind == LeaseKind::Client).count();
            let limit = self.share.max_total;
            if limit > 0 && held >= limit {
                return Err(LedgerError::TooManyLeases { held, limit });
            }
        }
        if let Some(token) = request.token.as_deref() {
            self.check_share(token, request.cpu_bytes.saturating_add(request.gpu_bytes))?;
        }
        let host_free = capacity.host_available_bytes.saturating_sub(self.reserved_host());
        check("host memory".to_owned(), request.cpu_bytes, host_free)?;
        match request.gpu_index {
            Some(index) => {
                let available = capacity.gpu(index).ok_or_else(|| {
                    let known = capacity.gpu_available_bytes.iter().map(|&(i, _)| i).collect();
                    LedgerError::GpuIndex(GpuIndexError::Unknown { index, known })
                })?;
                let free = available.saturating_sub(self.reserved_gpu(index));
                check(format!("gpu:{index} memory"), request.gpu_bytes, free)?;
            }
            None if request.gpu_bytes > 0 => {
                let requested = request.gpu_bytes;
                return Err(LedgerError::GpuIndex(GpuIndexError::Required { requested }));
            }
            None => {}
        }
        let lease = Lease {
            id: self.new_id(),
            owner: request.owner,
            token: request.token,
            kind: request.kind,
            cpu_bytes: request.cpu_bytes,
            gpu_bytes: request.gpu_bytes,
            gpu_index: request.gpu_index,
            created_at: now,
            expires_at: request.ttl.and_then(|ttl| now.checked_add(ttl)),
        };
        self.leases.push(lease.clone());
        Ok(lease)
    }

    /// Removes and returns the lease; an unknown or already released id is an error.
    pub fn release(&mut self, id: &str) -> Result<Lease, LedgerError> {
        self.release_by(id, &Releaser::Server)
    }

    /// Removes and returns the lease if `by` may release it: the server its own leases, a client
    /// only client leases, and only its token's unless it may release any.
    pub fn release_by(&mut self, id: &str, by: &Releaser) -> Result<Lease, LedgerError> {
        let unknown = || LedgerError::UnknownLease { id: id.to_owned() };
        let position = self.leases.iter().position(|l| l.id.as_str() == id).ok_or_else(unknown)?;
        let lease = &self.leases[position];
        if let Releaser::Client { token, any } = by {
            if lease.kind != LeaseKind::Client {
                return Err(LedgerError::ServerLease { id: id.to_owned(), kind: lease.kind });
            }
            if !any && lease.token != *token {
                let holder = lease.token.clone().unwrap_or_default();
                return Err(LedgerError::NotYours { id: id.to_owned(), holder });
            }
        }
        Ok(self.leases.remove(position))
    }

    /// Refuses a client lease of `bytes` that would take `token` past its share.
    fn check_share(&self, token: &str, bytes: u64) -> Result<(), LedgerError> {
        let mine =
            self.leases.iter().filter(|l| l.kind == LeaseKind::Client && l.token.as_deref() == Some(token));
        let (held, held_bytes) = mine.fold((0usize, 0u64), |(n, b), l| {
            (n + 1, b.saturating_add(l.cpu_bytes).saturating_add(l.gpu_bytes))
        });
        let TokenShare { max_leases, max_bytes, .. } = self.share;
        if max_leases > 0 && held >= max_leases {
            return Err(LedgerError::TokenLeases { token: token.to_owned(), held, limit: max_leases });
        }
        if max_bytes > 0 && held_bytes.saturating_add(bytes) > max_bytes {
            let token = token.to_owned();
            return Err(LedgerError::TokenBytes {
                token,
                held: held_bytes,
                requested: bytes,
                limit: max_bytes,
            });
        }
        Ok(())
    }

    /// Removes and returns the leases expired at `now`, oldest first.
    pub fn expire(&mut self, now: Instant) -> Vec<Lease> {
        let (expired, live) = std::mem::take(&mut self.leases).into_iter().partition(|l| l.is_expired(now));
        self.leases = live;
        expired
    }

    /// The lease with `id`, if on the books.
    pub fn get(&self, id: &str) -> Option<&Lease> {
        self.leases.iter().find(|l| l.id.as_str() == id)
    }

    /// Host memory reserved by all leases.
    pub fn reserved_host(&self) -> u64 {
        self.leases.iter().fold(0u64, |sum, l| sum.saturating_add(l.cpu_bytes))
    }

    /// GPU memory reserved on `index` by all leases.
    pub fn reserved_gpu(&self, index: u32) -> u64 {
        let on_gpu = self.leases.iter().filter(|l| l.gpu_index == Some(index));
        on_gpu.fold(0u64, |sum, l| sum.saturating_add(l.gpu_bytes))
    }

    /// GPU memory reserved by all leases, per GPU index that has any.
    pub fn reserved_gpu_by_index(&self) -> std::collections::BTreeMap<u32, u64> {
        let mut reserved = std::collections::BTreeMap::new();
        for lease in &self.leases {
            if let Some(index) = lease.gpu_index {
                let sum: &mut u64 = reserved.entry(index).or_default();
                *sum = sum.saturating_add(lease.gpu_bytes);
            }
        }
        reserved
    }

    /// The leases, oldest first.
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.iter()
    }

    /// Number of leases.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// Whether no lease is held.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    fn new_id(&mut self) -> LeaseId {
        self.next += 1;
        let random = uuid::Uuid::new_v4().simple().to_string();
        LeaseId(format!("lease-{}-{}", self.next, &random[..12]))
    }
}

fn check(resource: String, requested: u64, available: u64) -> Result<(), LedgerError> {
    if requested > available {
        return Err(LedgerError::Insufficient { resource, requested, available });
    }
    Ok(())
}

#[cfg(test)]
#[path = "tests/ledger.rs"]
mod tests;
