//! What reading a phone costs on the ingestion path (a journey carries two to four):
//! `cargo run --release -p registry --example phone_parse`. Prints microseconds per parse
//! of typical inputs, three rounds. Figures and the comparison with the code before:
//! docs/performance.md.

use registry::domain::{Phone, PhoneTrunc};
use std::time::Instant;

fn main() {
    let phones = [
        "+33612345678",
        "06 12 34 56 78",
        "0612345678",
        "+33 6 12 34 56 78",
        "+32470123456",
        "04 05 90 86 12",
    ];
    let truncs = ["+336123456", "06 12 34 56", "+336908182"];
    let n: u32 = 200_000;
    for round in 1..=3 {
        let start = Instant::now();
        let valid = (0..n)
            .filter(|i| Phone::parse(phones[*i as usize % phones.len()]).is_some())
            .count();
        let phone = start.elapsed().as_secs_f64() * 1e6 / f64::from(n);
        let start = Instant::now();
        let valid_truncs = (0..n)
            .filter(|i| PhoneTrunc::parse(truncs[*i as usize % truncs.len()]).is_some())
            .count();
        let trunc = start.elapsed().as_secs_f64() * 1e6 / f64::from(n);
        println!(
            "round {round}: phone {phone:.2} µs ({valid} of {n} valid), phone_trunc {trunc:.2} µs ({valid_truncs} valid)"
        );
    }
}
