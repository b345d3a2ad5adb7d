//! The crate's one error type. Every message names what a user can act on: the file, the key or
//! the option, what was expected and what was found. Bad input never panics; it becomes one of these.

use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system refused a file operation.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    /// A file was read but its content is not what it claims to be.
    #[error("{}: {msg}", path.display())]
    Format { path: PathBuf, msg: String },

    /// A setting (CLI flag, YAML key, metadata value) is missing, unknown or out of range.
    #[error("{0}")]
    Config(String),

    /// Tensor shapes that do not fit together (a bug in the caller, or a file with wrong shapes).
    #[error("shape mismatch: {0}")]
    Shape(String),

    /// The compute device failed or is missing (no driver, out of memory, built without kernels).
    #[error("device: {0}")]
    Device(String),

    /// The device ran out of memory: the caller may retry with fewer students per cohort.
    #[error("device: out of memory: {0}")]
    OutOfMemory(String),

    /// The user interrupted a long run; finished work has been saved.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub fn format(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }

    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }

    pub fn shape(msg: impl Into<String>) -> Self {
        Error::Shape(msg.into())
    }

    pub fn device(msg: impl Into<String>) -> Self {
        Error::Device(msg.into())
    }
}
