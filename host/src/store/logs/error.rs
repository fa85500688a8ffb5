//! The failures of the log store, whether repeating the call later can
//! succeed, and the one place a failure becomes an HTTP answer of the admin
//! API and dashboard. No message holds a database URL: a PostgreSQL URL may
//! carry a password, so messages name the step that failed and the engine's
//! own error text only.

use crate::http::error::GatewayError;

/// The engine or operating-system error beneath a log-store failure.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// SQLite.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL; shown as the server's message when the server answered.
    #[error("{}", pg_message(.0))]
    Postgres(#[from] postgres::Error),
    /// The file system or the OS (the store's folder, the writer thread).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The server's own message for a database error, else the client's text
/// (which describes the kind of failure and never repeats the connection
/// string).
fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    }
}

/// Why a log-store call failed.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// The store could not be opened or reached: creating its folder, opening
    /// or preparing the SQLite file, connecting to PostgreSQL, applying the
    /// schema, starting the writer thread. `what` names the step (and the file
    /// path for SQLite; never a URL).
    #[error("{what}: {source}")]
    Open {
        /// The step that failed.
        what: String,
        /// What the engine or the OS said.
        #[source]
        source: BackendError,
    },
    /// A statement failed on an open store.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A filter, query parameter or body field sent by the client is invalid.
    /// `message` is the whole text shown to the client and starts by naming
    /// the parameter.
    #[error("{message}")]
    BadQuery {
        /// The parameter or field at fault, as the client wrote it.
        param: String,
        /// The text shown to the client.
        message: String,
    },
    /// No entry of the gateway has this id.
    #[error("no log entry '{id}'")]
    NotFound {
        /// The id looked up.
        id: String,
    },
    /// An appended entry has no usable `id`.
    #[error("log entry needs a non-empty string \"id\"")]
    MissingId,
    /// The writer's queue is full; the entry was dropped.
    #[error("log queue full: entry dropped")]
    QueueFull,
    /// The store was closed: the writer is gone.
    #[error("log store is shut down")]
    Closed,
    /// A thread holding the store's state panicked (a poisoned lock, the
    /// PostgreSQL connect thread), so the store cannot serve.
    #[error("{0}")]
    Unavailable(&'static str),
    /// Stored data is not what the store wrote: an entry that is not JSON, a
    /// column of an unexpected type, a report query without its row.
    #[error("{0}")]
    Corrupt(String),
}

impl LogStoreError {
    /// A bad client parameter: the message reads `{param}: {detail}`.
    pub fn bad_query(param: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        let param = param.into();
        let message = format!("{param}: {detail}");
        LogStoreError::BadQuery { param, message }
    }

    /// A step of opening or reaching the store failed.
    pub(crate) fn open(what: impl Into<String>, source: impl Into<BackendError>) -> Self {
        LogStoreError::Open {
            what: what.into(),
            source: source.into(),
        }
    }

    /// Whether the same call may succeed later unchanged: true when the
    /// database, its connection or the writer's queue failed; false when the
    /// request itself is at fault, nothing matches, or the store is gone.
    pub fn retryable(&self) -> bool {
        match self {
            LogStoreError::Open { .. } | LogStoreError::Backend(_) | LogStoreError::QueueFull => {
                true
            }
            LogStoreError::BadQuery { .. }
            | LogStoreError::NotFound { .. }
            | LogStoreError::MissingId
            | LogStoreError::Closed
            | LogStoreError::Unavailable(_)
            | LogStoreError::Corrupt(_) => false,
        }
    }
}

impl From<rusqlite::Error> for LogStoreError {
    fn from(e: rusqlite::Error) -> Self {
        LogStoreError::Backend(BackendError::Sqlite(e))
    }
}

impl From<postgres::Error> for LogStoreError {
    fn from(e: postgres::Error) -> Self {
        LogStoreError::Backend(BackendError::Postgres(e))
    }
}

/// The HTTP answer of a log-store failure: the client's mistakes are 400,
/// a missing entry 404, and everything on the store's side 503. Messages
/// are the error's own text, which never holds a database URL.
impl From<LogStoreError> for GatewayError {
    fn from(e: LogStoreError) -> Self {
        let message = e.to_string();
        match e {
            LogStoreError::BadQuery { .. } | LogStoreError::MissingId => {
                GatewayError::bad_request(message)
            }
            LogStoreError::NotFound { .. } => GatewayError::not_found(message),
            LogStoreError::Open { .. }
            | LogStoreError::Backend(_)
            | LogStoreError::QueueFull
            | LogStoreError::Closed
            | LogStoreError::Unavailable(_) => GatewayError::store_unavailable(message),
            // Data the store cannot read back: asking again will not help.
            LogStoreError::Corrupt(_) => GatewayError::new(
                hyper::StatusCode::INTERNAL_SERVER_ERROR,
                "store_error",
                message,
            )
            .caused_by(crate::http::error::Origin::Store),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::StatusCode;

    fn sqlite_error() -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            Some("database is locked".into()),
        )
    }

    /// A PostgreSQL error made without a server: a URL that does not parse.
    fn postgres_error(url: &str) -> postgres::Error {
        url.parse::<postgres::Config>()
            .expect_err("the URL should not parse")
    }

    #[test]
    fn a_bad_parameter_is_a_400_naming_it() {
        let e = LogStoreError::bad_query("group_by", "expected model or provider, got 'x'");
        assert!(
            matches!(&e, LogStoreError::BadQuery { param, .. } if param == "group_by"),
            "{e:?}"
        );
        assert!(!e.retryable());
        let g = GatewayError::from(e);
        assert_eq!(g.status, StatusCode::BAD_REQUEST);
        assert_eq!(g.kind, "bad_request");
        assert_eq!(g.message, "group_by: expected model or provider, got 'x'");
    }

    #[test]
    fn retryable_only_for_failures_on_the_store_side() {
        let cases = [
            (LogStoreError::open("x: cannot open", sqlite_error()), true),
            (LogStoreError::from(sqlite_error()), true),
            (LogStoreError::from(postgres_error("host=h port=x")), true),
            (
                LogStoreError::open(
                    "cannot start the log writer",
                    std::io::Error::other("no threads"),
                ),
                true,
            ),
            (LogStoreError::QueueFull, true),
            (
                LogStoreError::bad_query("limit", "expected an integer"),
                false,
            ),
            (LogStoreError::NotFound { id: "r1".into() }, false),
            (LogStoreError::MissingId, false),
            (LogStoreError::Closed, false),
            (LogStoreError::Unavailable("log store unavailable"), false),
            (LogStoreError::Corrupt("expected value".into()), false),
        ];
        for (e, retryable) in cases {
            assert_eq!(e.retryable(), retryable, "{e:?}");
        }
    }

    #[test]
    fn each_failure_maps_to_its_status() {
        let status = |e: LogStoreError| GatewayError::from(e).status;
        assert_eq!(
            status(LogStoreError::NotFound { id: "r1".into() }),
            StatusCode::NOT_FOUND
        );
        assert_eq!(status(LogStoreError::MissingId), StatusCode::BAD_REQUEST);
        for e in [
            LogStoreError::from(sqlite_error()),
            LogStoreError::open("cannot connect to PostgreSQL", postgres_error("port=x")),
            LogStoreError::QueueFull,
            LogStoreError::Closed,
            LogStoreError::Unavailable("log store unavailable"),
        ] {
            assert_eq!(status(e), StatusCode::SERVICE_UNAVAILABLE);
        }
        // Unreadable data: retrying will not help, so no 503.
        let corrupt = GatewayError::from(LogStoreError::Corrupt("expected value".into()));
        assert_eq!(corrupt.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!corrupt.retryable());
        let g = GatewayError::from(LogStoreError::NotFound { id: "r1".into() });
        assert_eq!(g.message, "no log entry 'r1'");
    }

    #[test]
    fn messages_keep_the_database_url_out() {
        let url = "postgresql://aigw:s3cret-pw@db.internal:notaport/logs";
        let e = LogStoreError::open("cannot connect to PostgreSQL", postgres_error(url));
        let shown = format!("{e} {e:?}");
        let shown = format!("{shown} {:?}", GatewayError::from(e));
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert!(!shown.contains("db.internal"), "{shown}");
        assert!(shown.contains("cannot connect to PostgreSQL"), "{shown}");
    }
}
