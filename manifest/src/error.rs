//! Errors from reading and validating a manifest.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

/// A 1-based line and column in the manifest text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Location {
    /// The line and column of byte offset `offset` in `text` (clamped to the text).
    pub fn from_offset(text: &str, offset: usize) -> Location {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = before[line_start..].chars().count() + 1;
        Location { line, column }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Prefix `path[:line:col]`.
fn at(path: &std::path::Path, loc: &Option<Location>) -> String {
    match loc {
        Some(l) => format!("{}:{l}", path.display()),
        None => path.display().to_string(),
    }
}

/// Why a manifest could not be loaded. `Display` is one line starting with the manifest path
/// (and `line:column` when known).
#[derive(Debug, Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("{}: cannot read manifest: {source}; check the path and its permissions", path.display())]
    Read {
        /// The manifest path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not UTF-8.
    #[error("{}: manifest is not valid UTF-8 (first bad byte at offset {offset}); save it as UTF-8", path.display())]
    NotUtf8 {
        /// The manifest path.
        path: PathBuf,
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
    /// TOML syntax error, unknown field, or a value of the wrong type.
    #[error("{}: {message}", at(path, location))]
    Syntax {
        /// The manifest path.
        path: PathBuf,
        /// Where, when the parser reported it.
        location: Option<Location>,
        /// The parser's message, on one line.
        message: String,
    },
    /// The manifest parses but breaks a rule; `field` is the field path (e.g.
    /// `package.hello.inputs[1]`).
    #[error("{}: {field}: {message}", at(path, location))]
    Invalid {
        /// The manifest path.
        path: PathBuf,
        /// Where the offending value is, when known.
        location: Option<Location>,
        /// Field path, e.g. `package.hello.inputs[1]`.
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
}

impl ManifestError {
    /// The field path for validation errors (`None` for read and syntax errors).
    pub fn field(&self) -> Option<&str> {
        match self {
            ManifestError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }

    /// The line and column, when known.
    pub fn location(&self) -> Option<Location> {
        match self {
            ManifestError::Syntax { location, .. } | ManifestError::Invalid { location, .. } => {
                *location
            }
            _ => None,
        }
    }
}

/// Squash a possibly multi-line message onto one line.
pub(crate) fn one_line(msg: &str) -> String {
    msg.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
