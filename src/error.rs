//! The one error type of the domain, with the stable wire codes of SPEC §6. Only the edges
//! (HTTP responses, Socket.IO acks and `error` events) turn it into bytes; internal causes are
//! logged there once and never shown to clients.

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Unauthorized(String),
    /// The token of an open connection (or of a request) is past its `exp`: the client must
    /// get a fresh token and reconnect. Its own code, so a client can tell it from a bad token.
    #[error("{0}")]
    TokenExpired(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Validation(String),
    /// A request field that is not acceptable. The field is named by each dialect in its own
    /// words ([`AppError::body_in`]): a chat is `chatId` to SUP, `conversationId` to Spark.
    #[error("{} {problem}", field.neutral_name())]
    InvalidField { field: Field, problem: String },
    #[error("{0}")]
    EmptyContent(String),
    #[error("{0}")]
    ContentTooLong(String),
    #[error("{0}")]
    SelfMessage(String),
    #[error("{0}")]
    GroupFull(String),
    /// An upload over the size limit: `CONTENT_TOO_LONG` like an over-long message, but
    /// HTTP 413, the status upload clients know.
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    EditWindowExpired(String),
    /// `what` in words no dialect owns ("messages"): the same bucket serves every dialect.
    #[error("too many {what}, retry in {retry_after_ms} ms")]
    RateLimited { what: &'static str, retry_after_ms: u64 },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    UnknownType(String),
    /// A body that is not JSON at all (HTTP 400).
    #[error("{0}")]
    InvalidJson(String),
    /// A request the HTTP layer cannot route or read (a path that is not UTF-8, a body of
    /// the wrong media type, a URI over the limit): `VALIDATION_FAILED` with its own status.
    #[error("{message}")]
    BadRequest { status: u16, message: String },
    /// No route has this path (404), or none takes this method on it (405): `NOT_FOUND`,
    /// with the status that says which.
    #[error("{message}")]
    NoRoute { status: u16, message: String },
    /// The database refused a write (a disk fault, say). The cause was logged where it
    /// happened (`store::health`); the client learns only that nothing was stored and that
    /// trying again is safe.
    #[error("not stored: the database is failing; nothing was delivered, send it again")]
    StorageUnavailable,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    /// The stable code clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthorized(_) => "UNAUTHORIZED",
            AppError::TokenExpired(_) => "TOKEN_EXPIRED",
            AppError::Forbidden(_) => "FORBIDDEN",
            AppError::NotFound(_) | AppError::NoRoute { .. } => "NOT_FOUND",
            AppError::Validation(_) | AppError::InvalidField { .. } | AppError::BadRequest { .. } => {
                "VALIDATION_FAILED"
            }
            AppError::InvalidJson(_) => "INVALID_JSON",
            AppError::EmptyContent(_) => "EMPTY_CONTENT",
            AppError::ContentTooLong(_) | AppError::TooLarge(_) => "CONTENT_TOO_LONG",
            AppError::SelfMessage(_) => "SELF_MESSAGE",
            AppError::GroupFull(_) => "GROUP_FULL",
            AppError::EditWindowExpired(_) => "EDIT_WINDOW_EXPIRED",
            AppError::RateLimited { .. } => "RATE_LIMITED",
            AppError::Conflict(_) => "CONFLICT",
            AppError::UnknownType(_) => "UNKNOWN_TYPE",
            AppError::Internal(_) | AppError::StorageUnavailable => "INTERNAL_ERROR",
        }
    }

    /// The HTTP status for REST responses.
    pub fn http_status(&self) -> u16 {
        match self {
            AppError::Unauthorized(_) | AppError::TokenExpired(_) => 401,
            AppError::InvalidJson(_) => 400,
            AppError::BadRequest { status, .. } | AppError::NoRoute { status, .. } => *status,
            AppError::Forbidden(_) => 403,
            AppError::NotFound(_) => 404,
            AppError::Validation(_)
            | AppError::InvalidField { .. }
            | AppError::UnknownType(_)
            | AppError::EmptyContent(_)
            | AppError::ContentTooLong(_)
            | AppError::SelfMessage(_) => 422,
            AppError::GroupFull(_) | AppError::Conflict(_) | AppError::EditWindowExpired(_) => 409,
            AppError::TooLarge(_) => 413,
            AppError::RateLimited { .. } => 429,
            AppError::Internal(_) => 500,
            AppError::StorageUnavailable => 503,
        }
    }

    /// The body clients see: `{ code, message }`, fields named in neutral words. Internal
    /// causes stay in the log.
    pub fn body(&self) -> ErrorBody {
        ErrorBody { code: self.code(), message: self.to_string() }
    }

    /// The body in a dialect's words: `name` says what the dialect calls each field.
    pub fn body_in(&self, name: fn(Field) -> &'static str) -> ErrorBody {
        match self {
            AppError::InvalidField { field, problem } => {
                ErrorBody { code: self.code(), message: format!("{} {problem}", name(*field)) }
            }
            _ => self.body(),
        }
    }

    pub fn invalid(field: Field, problem: impl Into<String>) -> Self {
        AppError::InvalidField { field, problem: problem.into() }
    }

    /// Logs internal errors with their cause; client errors are not worth a log line each.
    pub fn log_if_internal(&self, context: &str) {
        if let AppError::Internal(cause) = self {
            tracing::error!(context, cause = %format!("{cause:#}"), "internal error");
        }
    }

    pub fn validation(msg: impl Into<String>) -> Self {
        AppError::Validation(msg.into())
    }

    pub fn contains_nul() -> Self {
        AppError::validation("text must not contain NUL (\\u0000) characters")
    }

    pub fn not_member() -> Self {
        AppError::Forbidden("you are not a member of this conversation".into())
    }
}

/// Refuses text that PostgreSQL cannot store (a NUL character, `\u0000` in JSON) anywhere
/// in a payload, keys included, so that both databases answer the same `VALIDATION_FAILED`
/// instead of one storing it and the other failing the statement.
pub fn refuse_nul(value: &serde_json::Value) -> AppResult<()> {
    use serde_json::Value;
    let found = match value {
        Value::String(s) => has_nul(s),
        Value::Array(items) => return items.iter().try_for_each(refuse_nul),
        Value::Object(fields) => {
            for (key, field) in fields {
                if has_nul(key) {
                    return Err(AppError::contains_nul());
                }
                refuse_nul(field)?;
            }
            false
        }
        _ => false,
    };
    if found {
        return Err(AppError::contains_nul());
    }
    Ok(())
}

/// As [`refuse_nul`], for one piece of text (a path id, a query value, a file name).
pub fn refuse_nul_text(text: &str) -> AppResult<()> {
    if has_nul(text) {
        return Err(AppError::contains_nul());
    }
    Ok(())
}

fn has_nul(text: &str) -> bool {
    text.as_bytes().contains(&0)
}

/// A field of a request, as the core knows it; each dialect has its own name for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Chat,
    Message,
    User,
    /// One of a list of users.
    Users,
    Call,
    Callee,
    Device,
    Attachment,
    Attachments,
    Participants,
    ReplyTo,
    TempId,
    Notification,
    Cursor,
    /// The user a direct message goes to.
    Recipient,
    /// The other user of a direct conversation.
    Peer,
}

impl Field {
    /// Words for logs and for transports without a dialect of their own.
    pub fn neutral_name(self) -> &'static str {
        match self {
            Field::Chat => "conversation id",
            Field::Message => "message id",
            Field::User => "user id",
            Field::Users => "user ids",
            Field::Call => "call id",
            Field::Callee => "callee id",
            Field::Device => "device id",
            Field::Attachment => "attachment id",
            Field::Attachments => "attachment ids",
            Field::Participants => "participant ids",
            Field::ReplyTo => "reply-to message id",
            Field::TempId => "temporary id",
            Field::Notification => "notification id",
            Field::Cursor => "cursor",
            Field::Recipient => "recipient",
            Field::Peer => "other user",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
}

impl From<sea_orm::DbErr> for AppError {
    fn from(e: sea_orm::DbErr) -> Self {
        AppError::Internal(e.into())
    }
}

impl From<sea_orm::TransactionError<AppError>> for AppError {
    fn from(e: sea_orm::TransactionError<AppError>) -> Self {
        match e {
            sea_orm::TransactionError::Connection(db) => db.into(),
            sea_orm::TransactionError::Transaction(app) => app,
        }
    }
}

impl From<validator::ValidationErrors> for AppError {
    fn from(e: validator::ValidationErrors) -> Self {
        AppError::Validation(describe_validation(&e))
    }
}

/// Turns validator's nested report into one readable line: `chatId: length; tempId: length`.
fn describe_validation(e: &validator::ValidationErrors) -> String {
    let mut parts: Vec<String> = e
        .field_errors()
        .iter()
        .map(|(field, errs)| {
            let what: Vec<String> = errs
                .iter()
                .map(|err| err.message.as_ref().map(|m| m.to_string()).unwrap_or_else(|| err.code.to_string()))
                .collect();
            format!("{field}: {}", what.join(", "))
        })
        .collect();
    parts.sort();
    if parts.is_empty() {
        "invalid payload".into()
    } else {
        parts.join("; ")
    }
}
