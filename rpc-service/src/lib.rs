//! The frame shared by the services behind the gateway (auth-service and registry).
//!
//! - [`db`]: PostgreSQL or SQLite pools with the service's migrations applied at start.
//! - [`identity`]: the warp filter that admits only requests carrying the gateway's assertion.
//! - [`error`]: [`RpcError`], the reference's JSON-RPC error body, and the one `recover`.
//! - [`http`]: `/health`, `/metrics`, request metrics and logs, serving with graceful stop.
//! - [`secret_file`]: a generated secret written once, private to this user.
//!
//! Business rules live in the services, not here.

pub mod body;
pub mod db;
pub mod error;
pub mod http;
pub mod identity;
pub mod secret_file;

pub use error::RpcError;
pub use layered_settings::Secret;
