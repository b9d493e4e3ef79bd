//! One error type for the whole core. Each kind maps to one C status, one
//! Python exception class, one Node `code` and one PHP exception class.

use std::fmt;

/// What went wrong, coarsely: the bindings choose their exception class by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A value passed to a call is out of range or malformed.
    InvalidArgument,
    /// A configuration key is unknown or its value is wrong.
    InvalidConfig,
    /// Waiting for something took longer than allowed.
    Timeout,
    /// A bounded resource has nothing left.
    Exhausted,
    /// A dependency cycle.
    Cycle,
    /// A named thing does not exist.
    NotFound,
    /// The operating system refused a read or write.
    Io,
    /// A database reported an error.
    Database,
    /// A callback supplied by the host failed.
    Callback,
    /// The object was closed and cannot be used any more.
    Closed,
    /// The operation is not available on this system or in this mode.
    Unsupported,
}

impl ErrorKind {
    /// Stable lower-case name, used as Node's `error.code` suffix and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::InvalidConfig => "invalid_config",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Exhausted => "exhausted",
            ErrorKind::Cycle => "cycle",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Io => "io",
            ErrorKind::Database => "database",
            ErrorKind::Callback => "callback",
            ErrorKind::Closed => "closed",
            ErrorKind::Unsupported => "unsupported",
        }
    }
}

/// An error with its kind and a message that names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into() }
    }
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidConfig, message)
    }
    pub fn callback(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Callback, message)
    }
    pub fn io(context: &str, err: &std::io::Error) -> Self {
        Self::new(ErrorKind::Io, format!("{context}: {err}"))
    }
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
