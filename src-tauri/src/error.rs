//! The one error type of the app's commands: the engine's message, which
//! already says what to do, sent to the web view as a plain string.

use serde::{Serialize, Serializer};

/// A command failure, shown in the window as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppError(pub String);

impl AppError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for AppError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

macro_rules! from_engine {
    ($($t:ty),*) => {$(
        impl From<$t> for AppError {
            fn from(e: $t) -> Self {
                Self(e.to_string())
            }
        }
    )*};
}

from_engine!(
    tunesmith::TrainError,
    tunesmith::ModelError,
    tunesmith::BackendError,
    tunesmith::config::ConfigError,
    tunesmith::data::DataError,
    tunesmith::export::ExportError,
    tunesmith::plan::PlanError,
    tunesmith::report::ReportError,
    tunesmith::chat::ChatError,
    tunesmith::TokenizerError
);

/// What commands return.
pub type AppResult<T> = Result<T, AppError>;
