//! Compatibility with the reference's operator clients (issue 20): what they send, what they
//! assert, and the reference's own validation libraries as oracles.

mod operator_clients;
mod phones;
