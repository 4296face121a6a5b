//! `sqlx::migrate!` embeds the migrations at compile time, and on stable Rust cargo does not
//! know it read them: without this, a new migration file is not built in until some other
//! change recompiles the crate.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
