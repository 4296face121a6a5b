//! Our phone rules against the reference's own: libphonenumber-js 1.12.8 with its default
//! metadata (`tests/oracle/phones.mjs`), on numbers generated the way operators write them.
//!
//! Every generated input goes through both; they must agree on validity, as a `phone` and as
//! a `phone_trunc`, and on the E.164 form. A disagreement is a journey one of the two refuses.

use phonenumber::metadata::DATABASE;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use registry::domain::{Phone, PhoneTrunc};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

const ORACLE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/oracle");

/// What one side decides for one input.
#[derive(Debug, PartialEq)]
struct Decision {
    phone: Option<String>,
    trunc: Option<String>,
}

fn ours(input: &str) -> Decision {
    Decision {
        phone: Phone::parse(input).map(|p| p.as_str().to_owned()),
        trunc: PhoneTrunc::parse(input).map(|p| p.as_str().to_owned()),
    }
}

/// Runs `node phones.mjs <args>` in the oracle's folder with `input` on its stdin.
fn oracle(args: &[&str], input: String) -> String {
    let mut node = Command::new("node")
        .arg("phones.mjs")
        .args(args)
        .current_dir(ORACLE_DIR)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node (scripts/prereqs.sh installs it, with tests/oracle's packages)");
    let mut stdin = node.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = node.wait_with_output().expect("node's output");
    writer.join().expect("writer").expect("written");
    assert!(output.status.success(), "the oracle failed: {output:?}");
    String::from_utf8(output.stdout).expect("utf-8")
}

/// The reference's decision on each input, with the calling code it read.
fn reference(inputs: &[String]) -> Vec<(Option<String>, Decision)> {
    let lines: String = inputs
        .iter()
        .map(|i| format!("{}\n", serde_json::to_string(i).expect("json")))
        .collect();
    let decisions: Vec<_> = oracle(&[], lines)
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("oracle line");
            let text = |k: &str| v[k].as_str().map(str::to_owned);
            (
                text("code"),
                Decision {
                    phone: text("e164"),
                    trunc: text("trunc_e164"),
                },
            )
        })
        .collect();
    assert_eq!(decisions.len(), inputs.len(), "one answer per input");
    decisions
}

/// A pattern as the min metadata writes it: without the whitespace of the XML.
fn compact(pattern: &str) -> String {
    pattern.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The calling codes whose numbering plans differ between the reference's metadata
/// (libphonenumber-js 1.12.8) and ours (the `phonenumber` crate's, newer): a country's
/// general pattern, its leading digits, or the number types the min metadata keeps.
fn plans_that_differ() -> BTreeSet<String> {
    let plans: Value = serde_json::from_str(&oracle(&["plans"], String::new())).expect("plans");
    let mut differ = BTreeSet::new();
    for (id, theirs) in plans.as_object().expect("plans by country") {
        let code = theirs["code"].as_str().expect("code").to_owned();
        let Some(ours) = DATABASE.by_id(id.as_str()) else {
            differ.insert(code);
            continue;
        };
        let d = ours.descriptors();
        let general = compact(d.general().national_number().as_str());
        let leading = ours.leading_digits().map(|l| compact(l.as_str()));
        let types_differ = theirs["types"].as_array().is_some_and(|kept| {
            let theirs: BTreeSet<&str> = kept.iter().filter_map(Value::as_str).collect();
            let ours: BTreeSet<String> = [
                d.fixed_line(),
                d.mobile(),
                d.toll_free(),
                d.premium_rate(),
                d.shared_cost(),
                d.personal_number(),
                d.voip(),
                d.pager(),
                d.uan(),
                d.voicemail(),
            ]
            .into_iter()
            .flatten()
            .map(|t| compact(t.national_number().as_str()))
            .filter(|p| p != "NA")
            .collect();
            theirs != ours.iter().map(String::as_str).collect()
        });
        if Some(general.as_str()) != theirs["general"].as_str()
            || leading.as_deref() != theirs["leading"].as_str()
            || types_differ
        {
            differ.insert(code);
        }
    }
    differ
}

fn digits(rng: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

/// `digits` grouped the ways people type them.
fn typed(rng: &mut StdRng, digits: &str) -> String {
    let sep = [" ", ".", "-", "/", ""][rng.gen_range(0..5)];
    let mut groups = Vec::new();
    let mut rest = digits;
    while !rest.is_empty() {
        let n = rest.len().min(rng.gen_range(1..=3));
        groups.push(&rest[..n]);
        rest = &rest[n..];
    }
    groups.join(sep)
}

/// French national numbers: every leading digit, every length from 8 to 11 digits, in the
/// national, `+33`, `+33 (0)` and `0033` forms.
fn french(rng: &mut StdRng, out: &mut Vec<String>) {
    for _ in 0..3000 {
        let len = [9, 9, 9, 9, 8, 10][rng.gen_range(0..6)];
        let national = format!("{}{}", rng.gen_range(0..10), digits(rng, len - 1));
        let body = typed(rng, &national);
        out.push(match rng.gen_range(0..5) {
            0 | 1 => format!("0{body}"),
            2 => format!("+33 {body}"),
            3 => format!("+33 (0){body}"),
            _ => format!("0033{body}"),
        });
    }
}

/// Numbers of every country in libphonenumber's metadata: each example number of each type,
/// its last digits replaced at random, and random numbers of each possible length.
fn foreign(rng: &mut StdRng, out: &mut Vec<String>) {
    for meta in DATABASE.iter() {
        let code = meta.country_code();
        let d = meta.descriptors();
        let kinds = [
            Some(d.general()),
            d.fixed_line(),
            d.mobile(),
            d.toll_free(),
            d.premium_rate(),
            d.voip(),
            d.uan(),
        ];
        for descriptor in kinds.into_iter().flatten() {
            let example = descriptor.example().map(str::to_owned);
            for _ in 0..4 {
                let national = match &example {
                    Some(e) if rng.gen_bool(0.7) => {
                        let keep = e.len().saturating_sub(rng.gen_range(1..=4));
                        format!("{}{}", &e[..keep], digits(rng, e.len() - keep))
                    }
                    _ => {
                        let lengths = descriptor.possible_length();
                        let len = lengths
                            .get(rng.gen_range(0..lengths.len().max(1)))
                            .map_or(8, |l| usize::from(*l));
                        digits(rng, len)
                    }
                };
                let body = typed(rng, &national);
                out.push(if rng.gen_bool(0.8) {
                    format!("+{code} {body}")
                } else {
                    format!("00{code}{body}")
                });
            }
        }
    }
}

/// What operators' clients send besides clean numbers.
fn untidy(rng: &mut StdRng, out: &mut Vec<String>) {
    let fixed = [
        "06 12 34 56 78 x12",
        "0612345678 ext 12",
        "+33612345678;ext=1",
        "06 12 34 56 78 ext. 5",
        "06,12,34,56,78",
        "tel:+33612345678",
        "06 12 34 56 7a",
        "0000000000",
        "+999 1234567",
        "+33 (0) 1 23 45 67 89",
        "1-800-FLOWERS",
        "+1 800 FLOWERS",
        "06 12 34 56 78 #12",
        "33612345678",
        "  06 12 34 56 78  ",
        "+ 33 6 12 34 56 78",
        "(+33) 6 12 34 56 78",
        "06.12.34.56.78.",
        "++33612345678",
        "0612345678x",
    ];
    out.extend(fixed.iter().map(|s| (*s).to_owned()));
    for _ in 0..300 {
        let mut s = format!("0{}", digits(rng, 9));
        let at = rng.gen_range(0..s.len());
        let c = ['a', 'x', ',', ';', '*', '#', 'o', 'O', '_', '+'][rng.gen_range(0..10)];
        s.insert(at, c);
        out.push(s);
    }
}

/// The calling codes of France's overseas departments and collectivities.
const FRENCH_OVERSEAS: [&str; 8] = ["262", "269", "508", "590", "594", "596", "687", "689"];

#[test]
fn phones_agree_with_the_references_library() {
    let mut rng = StdRng::seed_from_u64(20_261_205);
    let mut inputs = Vec::new();
    french(&mut rng, &mut inputs);
    foreign(&mut rng, &mut inputs);
    untidy(&mut rng, &mut inputs);
    // The same numbers without their last two digits, as phone_trunc values.
    let truncated: Vec<String> = inputs
        .iter()
        .filter_map(|s| {
            let trimmed = s.trim_end();
            let (cut, _) = trimmed
                .char_indices()
                .rev()
                .filter(|(_, c)| c.is_ascii_digit())
                .nth(1)?;
            Some(trimmed[..cut].to_owned())
        })
        .collect();
    inputs.extend(truncated);

    let differ = plans_that_differ();
    // Where the plans are the same, the two must decide the same, both ways.
    assert!(!differ.contains("33"), "France's plan differs: {differ:?}");
    let under_differing_plan = |code: Option<&str>, ours: &Decision| {
        code.is_some_and(|c| differ.contains(c))
            || [&ours.phone, &ours.trunc]
                .into_iter()
                .flatten()
                .any(|e164| differ.iter().any(|c| e164[1..].starts_with(c.as_str())))
    };
    let mut disagreements = Vec::new();
    let (mut compared, mut accepted, mut overseas_lost) = (0, 0, Vec::new());
    for (input, (code, reference)) in inputs.iter().zip(reference(&inputs)) {
        let ours = ours(input);
        if under_differing_plan(code.as_deref(), &ours) {
            // Newer plans may differ; France's overseas plans only grew: nothing the
            // reference accepts there may be refused.
            let overseas = code
                .as_deref()
                .is_some_and(|c| FRENCH_OVERSEAS.contains(&c));
            let lost = (reference.phone.is_some() && reference.phone != ours.phone)
                || (reference.trunc.is_some() && reference.trunc != ours.trunc);
            if overseas && lost {
                overseas_lost.push(format!("{input:?}: ours {ours:?}, reference {reference:?}"));
            }
            continue;
        }
        compared += 1;
        accepted += usize::from(reference.phone.is_some());
        if ours != reference {
            disagreements.push(format!("{input:?}: ours {ours:?}, reference {reference:?}"));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {compared} inputs decided differently:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    assert!(
        overseas_lost.is_empty(),
        "French overseas numbers refused:\n{}",
        overseas_lost.join("\n")
    );
    // The generator must exercise both sides of the rule, on most of its inputs.
    assert!(
        compared > inputs.len() * 3 / 4,
        "{compared} of {}",
        inputs.len()
    );
    assert!(
        accepted > compared / 4 && accepted < compared * 3 / 4,
        "{accepted} of {compared}"
    );
}
