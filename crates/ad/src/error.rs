//! The connector's typed errors: each names the operation, the object (DN or URL) and the
//! server's own code and words, so an operator can act on it without a packet capture.

/// What went wrong talking to AD.
#[derive(Debug, thiserror::Error)]
pub enum AdError {
    /// The TCP connection could not be made (refused, unreachable, timed out).
    #[error("cannot connect to {url}: {message}")]
    Connect { url: String, message: String },
    /// The TLS handshake (ldaps:// or StartTLS) failed, e.g. an untrusted certificate.
    #[error("TLS with {url} failed: {message}")]
    Tls { url: String, message: String },
    /// The CA file given for TLS could not be read or holds no certificate.
    #[error("CA file {path}: {message}")]
    CaFile { path: String, message: String },
    /// The simple bind was refused (49 = wrong credentials).
    #[error("bind as {dn} refused: rc {code} {message}")]
    Bind {
        dn: String,
        code: u32,
        message: String,
    },
    /// The server answered an operation with an error result.
    #[error("{operation} {dn}: rc {code} {message}")]
    Ldap {
        operation: String,
        dn: String,
        code: u32,
        message: String,
    },
    /// The connection failed in the middle of an operation (I/O error, timeout).
    #[error("{operation} {dn}: connection lost: {message}")]
    Transport {
        operation: String,
        dn: String,
        message: String,
    },
    /// The server sent a value this connector cannot interpret.
    #[error("{operation} {dn}: unreadable {attr}: {message}")]
    Value {
        operation: String,
        dn: String,
        attr: String,
        message: String,
    },
}

impl AdError {
    /// Connect, TLS, bind and transport failures: the directory is unreachable or refuses
    /// our credentials (the CLI maps these to exit code 3).
    pub fn is_unreachable_or_refused(&self) -> bool {
        matches!(
            self,
            AdError::Connect { .. }
                | AdError::Tls { .. }
                | AdError::Bind { .. }
                | AdError::Transport { .. }
        )
    }

    /// The LDAP result code, when the server answered with one.
    pub fn code(&self) -> Option<u32> {
        match self {
            AdError::Bind { code, .. } | AdError::Ldap { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub(crate) fn from_ldap(operation: &str, dn: &str, err: ldap3::LdapError) -> AdError {
        match err {
            ldap3::LdapError::LdapResult { result } => AdError::Ldap {
                operation: operation.to_string(),
                dn: dn.to_string(),
                code: result.rc,
                message: result.text,
            },
            other => AdError::Transport {
                operation: operation.to_string(),
                dn: dn.to_string(),
                message: other.to_string(),
            },
        }
    }

    pub(crate) fn from_result(operation: &str, dn: &str, result: ldap3::LdapResult) -> AdError {
        AdError::Ldap {
            operation: operation.to_string(),
            dn: dn.to_string(),
            code: result.rc,
            message: result.text,
        }
    }
}
