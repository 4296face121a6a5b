//! The reference's JSON-RPC error body and the one place rejections become responses.
//!
//! `{"id":1,"jsonrpc":"2.0","error":{"code":-32602,"message":"Invalid params","data":...}}`

use serde_json::{Value, json};
use std::convert::Infallible;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Rejection, Reply};

/// `Retry-After` of a 503 `database_unavailable`: PostgreSQL's crash recovery or a restart
/// takes seconds.
pub const DATABASE_RETRY_AFTER_SECS: u64 = 2;

/// An error answered to the client in the JSON-RPC shape.
#[derive(Debug, Clone)]
pub struct RpcError {
    pub status: StatusCode,
    pub code: i32,
    pub message: &'static str,
    pub data: Option<Value>,
    /// Seconds for a `Retry-After` header (429 answers).
    pub retry_after: Option<u64>,
    /// A finer outcome than the status for the gateway's usage records, sent as
    /// [`OUTCOME_HEADER`] (the gateway reads it, keeps it only if it knows it, and strips it).
    pub outcome: Option<&'static str>,
}

/// The header carrying [`RpcError::outcome`] to the gateway.
pub const OUTCOME_HEADER: &str = "x-rpc-outcome";

impl RpcError {
    fn new(status: StatusCode, code: i32, message: &'static str, data: Option<Value>) -> Self {
        Self {
            status,
            code,
            message,
            data,
            retry_after: None,
            outcome: None,
        }
    }

    /// Names a finer outcome for the gateway's usage records (`422:distance_too_short`).
    pub fn outcome(mut self, outcome: &'static str) -> Self {
        self.outcome = Some(outcome);
        self
    }

    /// Adds a `Retry-After` of `seconds` (at least 1) to the answer.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// 400, -32602: schema errors (`data` lists every violation).
    pub fn invalid_params(data: impl Into<Value>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            -32602,
            "Invalid params",
            Some(data.into()),
        )
    }

    /// 400, -32600: a request that is well-formed JSON but makes no sense.
    pub fn invalid_request(data: impl Into<Value>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            -32600,
            "Invalid Request",
            Some(data.into()),
        )
    }

    pub fn unauthorized(data: impl Into<Value>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            -32501,
            "Unauthorized Error",
            Some(data.into()),
        )
    }

    pub fn forbidden(data: impl Into<Value>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            -32503,
            "Forbidden Error",
            Some(data.into()),
        )
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, -32504, "Not found", None)
    }

    pub fn conflict(data: impl Into<Value>) -> Self {
        Self::new(StatusCode::CONFLICT, -32509, "Conflict", Some(data.into()))
    }

    pub fn unprocessable(data: impl Into<Value>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            -32422,
            "Unprocessable Request",
            Some(data.into()),
        )
    }

    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            -32600,
            "Invalid Request",
            Some("payload_too_large".into()),
        )
    }

    /// 400, -32700 `Parse error`: a body that is not JSON. `data` says where, in our words
    /// (never the parser's own text, which echoes the body and names Rust types).
    pub fn parse_error(error: &serde_json::Error) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            -32700,
            "Parse error",
            Some(Value::Array(vec![Value::String(format!(
                ": must be valid JSON (line {}, column {})",
                error.line(),
                error.column()
            ))])),
        )
    }

    /// 415: a body that is not JSON.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            -32600,
            "Invalid Request",
            Some("content-type must be application/json".into()),
        )
    }

    pub fn too_many_requests(data: impl Into<Value>) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            -32029,
            "Too Many Requests Error",
            Some(data.into()),
        )
    }

    /// 503 with `Retry-After`: the service is saturated for now (`data` says what).
    pub fn unavailable(data: impl Into<Value>, retry_after: u64) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            -32603,
            "Service Unavailable",
            Some(data.into()),
        )
        .retry_after(retry_after)
    }

    /// 503 `database_unavailable` with `Retry-After`: the database is out of reach
    /// ([`crate::db::is_unavailable`]); nothing was decided, the client may send again.
    pub fn database_unavailable() -> Self {
        Self::unavailable("database_unavailable", DATABASE_RETRY_AFTER_SECS)
    }

    /// The answer to a failed database call: [`RpcError::database_unavailable`] when the
    /// database is out of reach, else [`RpcError::internal`]. Logs the cause once.
    pub fn database(e: &sqlx::Error) -> Self {
        if crate::db::is_unavailable(e) {
            tracing::warn!(error = %e, "database unavailable");
            Self::database_unavailable()
        } else {
            tracing::error!(error = %e, "database error");
            Self::internal()
        }
    }

    /// 500. Says nothing internal: log the cause where it happened, once.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            -32603,
            "Internal Server Error",
            None,
        )
    }

    pub fn body(&self) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(data) = &self.data {
            error["data"] = data.clone();
        }
        json!({"id": 1, "jsonrpc": "2.0", "error": error})
    }
}

impl warp::reject::Reject for RpcError {}

impl Reply for RpcError {
    fn into_response(self) -> Response {
        let mut response =
            warp::reply::with_status(warp::reply::json(&self.body()), self.status).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(warp::http::header::RETRY_AFTER, seconds.into());
        }
        if let Some(outcome) = self.outcome {
            response.headers_mut().insert(
                OUTCOME_HEADER,
                warp::http::HeaderValue::from_static(outcome),
            );
        }
        response
    }
}

impl From<sqlx::Error> for RpcError {
    fn from(e: sqlx::Error) -> Self {
        RpcError::database(&e)
    }
}

/// Turns a handler's result into a response: handlers return `Result<Response, RpcError>`.
pub fn respond(result: Result<Response, RpcError>) -> Result<Response, Infallible> {
    Ok(result.unwrap_or_else(Reply::into_response))
}

/// The one `recover`: every rejection becomes a JSON-RPC error body.
pub async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    let error = if let Some(e) = rejection.find::<RpcError>() {
        e.clone()
    } else if rejection.is_not_found() {
        RpcError::not_found()
    } else if rejection
        .find::<warp::filters::body::BodyDeserializeError>()
        .is_some()
    {
        // Routes read bodies with `crate::body`; warp's own reader would end here. Its text
        // is serde's, so it is not repeated.
        RpcError::new(
            StatusCode::BAD_REQUEST,
            -32700,
            "Parse error",
            Some(vec![": must be valid JSON".to_owned()].into()),
        )
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        RpcError::payload_too_large()
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        RpcError::new(
            StatusCode::LENGTH_REQUIRED,
            -32600,
            "Invalid Request",
            Some("content-length required".into()),
        )
    } else if rejection
        .find::<warp::reject::UnsupportedMediaType>()
        .is_some()
    {
        RpcError::unsupported_media_type()
    } else if rejection.find::<warp::reject::InvalidQuery>().is_some() {
        RpcError::invalid_params(vec![": must be a valid query string".to_string()])
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        RpcError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            -32601,
            "Method not found",
            None,
        )
    } else {
        tracing::error!(?rejection, "unhandled rejection");
        RpcError::internal()
    };
    Ok(error.into_response())
}
