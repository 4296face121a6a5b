//! End-to-end tests in one binary: each module starts the three services on free ports and
//! drives them over HTTP. One binary links the whole stack once instead of once per file.

mod api_description;
mod assertions;
mod bad_input;
mod blacklist_failures;
mod cee;
mod compat;
mod console;
mod credential_matrix;
mod credentials;
mod database_crash;
mod database_roles;
mod journeys;
mod keys;
mod kubernetes;
mod lifecycle;
mod observability;
mod rate_limits;
mod replicas;
mod revocations_stay;
mod sealed_keys;
mod sessions;
mod sign_in_throttle;
mod signals;
mod staff_cli;
mod usage;
mod users;
mod walking_skeleton;
