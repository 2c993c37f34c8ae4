//! The token file: who may call, under which name, with which role.
//!
//! One entry per line; blank lines and `#` comments are skipped. A line is either a bare token (all
//! rights, named `token-<line>` in logs, as before roles existed) or `TOKEN,NAME,ROLE`. `TOKEN` may be
//! written `sha256:<64 hex digits>`, the digest of the token, so the file need not hold the secret.
//! Tokens are kept only as SHA-256 digests and compared in constant time; a token never reaches a log
//! or a message. Any malformed line fails the whole file with its line number, and a reload that
//! fails keeps the tokens loaded before.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// What a token may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Every read-only RPC.
    Read,
    /// `Generate`, `Allocate` and `Release` of its own leases, besides reading.
    Generate,
    /// Everything: `Cleanup`, `LoadModel`, `UnloadModel`, `Release` of any client lease.
    Admin,
}

impl Role {
    /// The name the token file and messages use.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Generate => "generate",
            Role::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Role::Read, Role::Generate, Role::Admin].into_iter().find(|r| r.as_str() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a token is: the name and role its line gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's name (never the token).
    pub name: Arc<str>,
    /// What it may do.
    pub role: Role,
}

/// Why a token file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file could not be read.
    #[error("cannot read the token file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is neither `TOKEN` nor `TOKEN,NAME,ROLE`.
    #[error(
        "token file line {line}: expected TOKEN or TOKEN,NAME,ROLE, got {fields} comma-separated fields"
    )]
    Fields {
        /// 1-based line number.
        line: usize,
        /// How many fields it has.
        fields: usize,
    },
    /// A field is empty.
    #[error("token file line {line}: the {field} is empty")]
    Empty {
        /// 1-based line number.
        line: usize,
        /// `token`, `name` or `role`.
        field: &'static str,
    },
    /// The role is none of read, generate, admin.
    #[error("token file line {line}: role must be read, generate or admin, got {role:?}")]
    Role {
        /// 1-based line number.
        line: usize,
        /// What the line says.
        role: String,
    },
    /// A `sha256:` token is not 64 hex digits.
    #[error("token file line {line}: a sha256: token must be 64 hex digits")]
    Digest {
        /// 1-based line number.
        line: usize,
    },
    /// The same token twice.
    #[error("token file line {line}: the same token as line {first}")]
    Duplicate {
        /// 1-based line number.
        line: usize,
        /// Where it first appears.
        first: usize,
    },
    /// Nothing but comments and blank lines.
    #[error("the token file has no token")]
    NoTokens,
}

/// One parsed line.
#[derive(Debug, Clone)]
struct Entry {
    digest: [u8; 32],
    identity: Identity,
    line: usize,
}

/// Parses a token file's text (see the module header).
fn parse(text: &str) -> Result<Vec<Entry>, TokenFileError> {
    let mut entries: Vec<Entry> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let content = raw.trim();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let entry = parse_line(content, line)?;
        if let Some(first) = entries.iter().find(|e| e.digest == entry.digest) {
            return Err(TokenFileError::Duplicate { line, first: first.line });
        }
        entries.push(entry);
    }
    if entries.is_empty() {
        return Err(TokenFileError::NoTokens);
    }
    Ok(entries)
}

fn parse_line(content: &str, line: usize) -> Result<Entry, TokenFileError> {
    let fields: Vec<&str> = content.split(',').map(str::trim).collect();
    let (token, name, role) = match fields.as_slice() {
        [token] => (*token, format!("token-{line}"), Role::Admin),
        [token, name, role] => {
            if name.is_empty() {
                return Err(TokenFileError::Empty { line, field: "name" });
            }
            let role = Role::parse(role).ok_or_else(|| match *role {
                "" => TokenFileError::Empty { line, field: "role" },
                other => TokenFileError::Role { line, role: other.to_owned() },
            })?;
            (*token, (*name).to_owned(), role)
        }
        other => return Err(TokenFileError::Fields { line, fields: other.len() }),
    };
    if token.is_empty() {
        return Err(TokenFileError::Empty { line, field: "token" });
    }
    let digest = match token.strip_prefix("sha256:") {
        Some(hex_digits) => {
            let mut digest = [0u8; 32];
            hex::decode_to_slice(hex_digits, &mut digest).map_err(|_| TokenFileError::Digest { line })?;
            digest
        }
        None => sha256(token.as_bytes()),
    };
    Ok(Entry { digest, identity: Identity { name: name.into(), role }, line })
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The accepted tokens, shared by the auth layer and whatever reloads them.
#[derive(Debug, Clone)]
pub struct Tokens {
    file: PathBuf,
    entries: Arc<RwLock<Vec<Entry>>>,
}

impl Tokens {
    /// Reads the token file; any error is a start-up error.
    pub fn load(file: &Path) -> Result<Self, TokenFileError> {
        let t = Self { file: file.to_path_buf(), entries: Arc::default() };
        t.reload()?;
        Ok(t)
    }

    /// The file the tokens come from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Re-reads the file and returns how many tokens it holds; on any error the old tokens stay.
    pub fn reload(&self) -> Result<usize, TokenFileError> {
        let text = std::fs::read_to_string(&self.file)
            .map_err(|source| TokenFileError::Read { path: self.file.clone(), source })?;
        let entries = parse(&text)?;
        let n = entries.len();
        *self.entries.write().expect("token lock") = entries;
        Ok(n)
    }

    /// Who `presented` is, if it is one of the tokens. Every entry is compared, each in constant
    /// time, so the time taken says nothing about which entry matched or how close a guess came.
    pub fn identify(&self, presented: &[u8]) -> Option<Identity> {
        let digest = sha256(presented);
        let entries = self.entries.read().expect("token lock");
        let mut found = None;
        for entry in entries.iter() {
            let equal: Choice = entry.digest.ct_eq(&digest);
            if bool::from(equal) {
                found = Some(entry.identity.clone());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Tokens, TokenFileError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, text).unwrap();
        Tokens::load(&file)
    }

    fn who(tokens: &Tokens, token: &str) -> Option<(String, Role)> {
        tokens.identify(token.as_bytes()).map(|i| (i.name.to_string(), i.role))
    }

    #[test]
    fn bare_tokens_keep_all_rights_and_are_named_by_line() {
        let t = load("# ops\nalpha\n\n beta \n").unwrap();
        assert_eq!(who(&t, "alpha"), Some(("token-2".into(), Role::Admin)));
        assert_eq!(who(&t, "beta"), Some(("token-4".into(), Role::Admin)));
        for near in ["alphA", "alpha2", "alph", "", "alphabeta", "# ops"] {
            assert_eq!(who(&t, near), None, "{near:?}");
        }
    }

    #[test]
    fn fields_give_name_and_role_and_digests_stand_for_tokens() {
        let digest = hex::encode(sha256(b"hidden"));
        let text = format!("r1,reader,read\n g1 , ci , generate \nsha256:{digest},ops,admin\n");
        let t = load(&text).unwrap();
        assert_eq!(who(&t, "r1"), Some(("reader".into(), Role::Read)));
        assert_eq!(who(&t, "g1"), Some(("ci".into(), Role::Generate)));
        assert_eq!(who(&t, "hidden"), Some(("ops".into(), Role::Admin)));
        assert_eq!(who(&t, &format!("sha256:{digest}")), None, "the digest itself is no token");
        assert!(Role::Read < Role::Generate && Role::Generate < Role::Admin);
    }

    /// A token file's text and the error it must give.
    type Case = (&'static str, fn(&TokenFileError) -> bool);

    #[test]
    fn malformed_lines_name_their_line() {
        let cases: [Case; 8] = [
            ("ok\na,b\n", |e| matches!(e, TokenFileError::Fields { line: 2, fields: 2 })),
            ("a,b,read,x\n", |e| matches!(e, TokenFileError::Fields { line: 1, fields: 4 })),
            ("a,,read\n", |e| matches!(e, TokenFileError::Empty { line: 1, field: "name" })),
            (",n,read\n", |e| matches!(e, TokenFileError::Empty { line: 1, field: "token" })),
            ("a,n,root\n", |e| matches!(e, TokenFileError::Role { line: 1, role } if role == "root")),
            ("sha256:abc,n,read\n", |e| matches!(e, TokenFileError::Digest { line: 1 })),
            ("a\n#\na,n,read\n", |e| matches!(e, TokenFileError::Duplicate { line: 3, first: 1 })),
            ("# only comments\n\n", |e| matches!(e, TokenFileError::NoTokens)),
        ];
        for (text, expected) in cases {
            let err = load(text).unwrap_err();
            assert!(expected(&err), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_failed_reload_keeps_the_old_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, "alpha,a,read\n").unwrap();
        let t = Tokens::load(&file).unwrap();
        std::fs::write(&file, "gamma,g,admin\n").unwrap();
        assert_eq!(t.reload().unwrap(), 1);
        assert_eq!(who(&t, "gamma"), Some(("g".into(), Role::Admin)));
        assert_eq!(who(&t, "alpha"), None);
        std::fs::write(&file, "delta,d\n").unwrap();
        assert!(matches!(t.reload(), Err(TokenFileError::Fields { line: 1, .. })));
        std::fs::remove_file(&file).unwrap();
        assert!(matches!(t.reload(), Err(TokenFileError::Read { .. })));
        assert_eq!(who(&t, "gamma"), Some(("g".into(), Role::Admin)), "the old tokens stay");
    }
}
