//! What the CLI proves itself with: a bearer token sent on every call, and the TLS settings of an
//! `https://` address (the CA to trust, the client identity for mutual TLS).
//!
//! The token comes from `--token`, else `--token-file`, else `MAESTRO_TOKEN`: the nearer to the
//! command line, the stronger, so a one-off `--token` overrides a profile's file or variable. It is
//! never printed: [`Token`]'s `Debug` hides it, and no error repeats it.

use std::{fmt, path::Path, str::FromStr};

use tonic::{
    metadata::{Ascii, MetadataValue},
    service::Interceptor,
    transport::{Certificate, ClientTlsConfig, Identity},
    Request, Status,
};

use crate::exit::{self, Failure};

/// The environment variable read when neither `--token` nor `--token-file` is given.
pub const TOKEN_ENV: &str = "MAESTRO_TOKEN";

/// A bearer token as typed; `Debug` shows only that there is one.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// The token text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Token {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

/// The token to send: `flag`, else the contents of `file`, else `env`; `None` sends no header.
pub fn resolve_token(
    flag: Option<&Token>,
    file: Option<&Path>,
    env: Option<String>,
) -> Result<Option<Token>, Failure> {
    let token = match (flag, file) {
        (Some(t), _) => t.expose().trim().to_string(),
        (None, Some(path)) => read_token_file(path)?,
        // An empty variable (`MAESTRO_TOKEN=`) reads as unset, as shells and compose files write it.
        (None, None) => match env.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()) {
            Some(t) => t,
            None => return Ok(None),
        },
    };
    if token.is_empty() {
        return Err(Failure::new(exit::USAGE, "the token is empty"));
    }
    Ok(Some(Token(token)))
}

/// The token in `path`: the whole file less surrounding whitespace (an editor's trailing newline).
fn read_token_file(path: &Path) -> Result<String, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::io(format_args!("cannot read --token-file {}", path.display()), e))?;
    Ok(text.trim().to_string())
}

/// Adds `authorization: Bearer <token>` to every call when there is a token, nothing otherwise.
#[derive(Clone, Default)]
pub struct Auth {
    header: Option<MetadataValue<Ascii>>,
}

impl Auth {
    /// The interceptor for `token`; a token a header cannot carry (a control character, non-ASCII
    /// text) is a usage error.
    pub fn new(token: Option<&Token>) -> Result<Self, Failure> {
        let Some(token) = token else { return Ok(Self::default()) };
        let mut header: MetadataValue<Ascii> =
            format!("Bearer {}", token.expose()).parse().map_err(|_| {
                Failure::new(exit::USAGE, "the token holds characters an HTTP header cannot carry")
            })?;
        // Kept out of HPACK's dynamic table, as a secret should be.
        header.set_sensitive(true);
        Ok(Self { header: Some(header) })
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth").field("token", &self.header.as_ref().map(|_| "<hidden>")).finish()
    }
}

impl Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.header {
            request.metadata_mut().insert("authorization", header.clone());
        }
        Ok(request)
    }
}

/// PEM files for an `https://` address, as given on the command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsPaths<'a> {
    /// The CA that signed the server's certificate (otherwise the system's roots).
    pub ca: Option<&'a Path>,
    /// The client certificate chain (mutual TLS).
    pub cert: Option<&'a Path>,
    /// Its private key.
    pub key: Option<&'a Path>,
}

impl TlsPaths<'_> {
    /// Whether any TLS file was given.
    pub fn any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// `--tls-cert` and `--tls-key` name one identity: both or neither, else a usage error.
    pub fn check(&self) -> Result<(), Failure> {
        if self.cert.is_some() != self.key.is_some() {
            let message = "--tls-cert and --tls-key go together: give both or neither";
            return Err(Failure::new(exit::USAGE, message));
        }
        Ok(())
    }

    /// The client TLS settings: `--tls-ca` or the system's roots, plus the identity when given.
    pub fn config(&self) -> Result<ClientTlsConfig, Failure> {
        self.check()?;
        let config = match self.ca {
            Some(ca) => {
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_pem("--tls-ca", ca)?))
            }
            None => ClientTlsConfig::new().with_native_roots(),
        };
        let (Some(cert), Some(key)) = (self.cert, self.key) else { return Ok(config) };
        let identity = Identity::from_pem(read_pem("--tls-cert", cert)?, read_pem("--tls-key", key)?);
        Ok(config.identity(identity))
    }
}

fn read_pem(flag: &str, path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::io(format_args!("cannot read {flag} {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(s: &str) -> Token {
        s.parse().unwrap()
    }

    #[test]
    fn the_flag_beats_the_file_and_the_file_beats_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        let env = || Some("from-env".to_string());
        let got = |t: Option<Token>| t.map(|t| t.expose().to_string());
        assert_eq!(got(resolve_token(Some(&token("flag")), Some(&file), env()).unwrap()).unwrap(), "flag");
        assert_eq!(got(resolve_token(None, Some(&file), env()).unwrap()).unwrap(), "from-file");
        assert_eq!(got(resolve_token(None, None, env()).unwrap()).unwrap(), "from-env");
        assert_eq!(resolve_token(None, None, None).unwrap(), None);
        assert_eq!(resolve_token(None, None, Some(" ".into())).unwrap(), None);
    }

    #[test]
    fn an_empty_or_unreadable_token_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        assert_eq!(resolve_token(None, Some(&empty), None).unwrap_err().code, exit::USAGE);
        let missing = resolve_token(None, Some(&dir.path().join("absent")), None).unwrap_err();
        assert_eq!(missing.code, exit::GENERAL);
        assert!(missing.message.contains("--token-file"), "{}", missing.message);
    }

    #[test]
    fn the_token_is_never_shown() {
        let t = token("s3cret");
        assert!(!format!("{t:?}").contains("s3cret"));
        assert!(!format!("{:?}", Auth::new(Some(&t)).unwrap()).contains("s3cret"));
        assert_eq!(Auth::new(Some(&token("bad\ntoken"))).unwrap_err().code, exit::USAGE);
    }

    #[test]
    fn the_interceptor_adds_the_header_only_with_a_token() {
        let mut with = Auth::new(Some(&token("abc"))).unwrap();
        let request = with.call(Request::new(())).unwrap();
        assert_eq!(request.metadata().get("authorization").unwrap(), "Bearer abc");
        let request = Auth::default().call(Request::new(())).unwrap();
        assert!(request.metadata().get("authorization").is_none());
    }
}
