//! The phone rule, stated independently of the parser: generated numbers, typed every way
//! operators type them, are valid exactly when their national number matches the general
//! pattern of their country's plan (calling codes of one country), and come out in E.164.
//! `tests/tests/e2e/compat/phones.rs` checks the same inputs against libphonenumber-js.

use super::*;
use proptest::prelude::*;

/// A way of grouping digits: separator and group sizes.
fn typed(digits: &str, separator: &str, sizes: &[usize]) -> String {
    let mut groups = Vec::new();
    let mut rest = digits;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let n = rest.len().min(*sizes.next().unwrap_or(&2));
        groups.push(&rest[..n]);
        rest = &rest[n..];
    }
    groups.join(separator)
}

fn separator() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![" ", ".", "-", "/", "", "\u{a0}"])
}

fn sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..4, 1..4)
}

/// The calling codes of one country, with that country's plan.
fn single_country_plans() -> Vec<(u16, &'static Metadata)> {
    let mut plans: Vec<(u16, &'static Metadata)> = DATABASE
        .iter()
        .filter(|m| m.id() != "001")
        .filter(|m| {
            DATABASE
                .by_code(&m.country_code())
                .is_some_and(|c| c.len() == 1)
        })
        .map(|m| (m.country_code(), m))
        .collect();
    plans.sort_by_key(|(code, _)| *code);
    plans
}

/// The general pattern of `plan`, compiled here on its own, anchored at both ends.
fn general_rule(plan: &Metadata) -> Regex {
    let pattern: String = plan
        .descriptors()
        .general()
        .national_number()
        .as_str()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    Regex::new(&format!("^(?:{pattern})$")).expect("pattern")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Metropolitan and overseas French numbers in national form, whatever their range: nine
    /// digits after the trunk `0` are valid (the plan's pattern is `[1-9]\d{8}`), eight or
    /// ten are not. Written as `0…`, `+33 …`, `+33 (0)…` or `0033…`.
    #[test]
    fn french_numbers_follow_the_general_pattern(
        first in 1u8..10,
        rest in "[0-9]{6,10}",
        form in 0usize..4,
        separator in separator(),
        sizes in sizes(),
    ) {
        let national = format!("{first}{rest}");
        let body = typed(&national, separator, &sizes);
        let input = match form {
            0 => format!("0{body}"),
            1 => format!("+33 {body}"),
            2 => format!("+33 (0){body}"),
            _ => format!("0033{body}"),
        };
        let expected = (national.len() == 9).then(|| format!("+33{national}"));
        prop_assert_eq!(Phone::parse(&input).map(|p| p.0), expected, "{:?}", input);
    }

    /// A number written `+<code> <digits>` under a calling code of one country is valid
    /// exactly when its digits match that country's general pattern (digits that do not
    /// start with a `0`, so that no national prefix is involved).
    #[test]
    fn foreign_numbers_follow_their_countrys_general_pattern(
        which in any::<prop::sample::Index>(),
        national in "[1-9][0-9]{3,12}",
        separator in separator(),
        sizes in sizes(),
    ) {
        let plans = single_country_plans();
        let (code, plan) = plans[which.index(plans.len())];
        prop_assume!(strip_national_prefix(plan, &national).is_none());
        let input = format!("+{code} {}", typed(&national, separator, &sizes));
        let expected = general_rule(plan).is_match(&national).then(|| format!("+{code}{national}"));
        prop_assert_eq!(Phone::parse(&input).map(|p| p.0), expected, "{:?} ({})", input, plan.id());
    }

    /// A `phone_trunc` is valid exactly when it followed by `00` is a valid phone, and is that
    /// phone without its last two digits.
    #[test]
    fn truncated_phones_are_phones_without_two_digits(
        national in "[1-9][0-9]{6,8}",
        separator in separator(),
        sizes in sizes(),
    ) {
        let input = format!("0{}", typed(&national, separator, &sizes));
        let full = Phone::parse(&format!("{input}00")).map(|p| p.0);
        let trunc = PhoneTrunc::parse(&input).map(|p| p.0);
        prop_assert_eq!(trunc, full.map(|f| f[..f.len() - 2].to_owned()));
    }

    /// Letters are refused wherever they stand, but in an extension at the end.
    #[test]
    fn letters_are_refused(
        national in "[1-9][0-9]{8}",
        at in 0usize..10,
        letter in "[a-wyzA-WYZ]",
    ) {
        let mut input = format!("0{national}");
        input.insert_str(at.min(input.len() - 1), &letter);
        prop_assert_eq!(Phone::parse(&input).map(|p| p.0), None, "{:?}", input);
    }
}

#[test]
fn the_references_own_examples() {
    // From the reference's phoneCustomFormat.unit.spec.ts, and the refused journeys.
    let valid = [
        ("01 23 45 67 89", "+33123456789"),
        ("0800 45 67 89", "+33800456789"),
        ("01.23.45.67.89", "+33123456789"),
        ("01-23-45-67-89", "+33123456789"),
        ("01/23/45/67/89", "+33123456789"),
        ("+331.23.45.67.89", "+33123456789"),
        ("+33(0)123456789", "+33123456789"),
        ("+33 (0) 1 23 45 67 89", "+33123456789"),
        ("+3225138940", "+3225138940"),
        ("+590 590 82 09 30", "+590590820930"),
        ("+262 2 62 41 83 00", "+262262418300"),
        ("+594694021870", "+594694021870"),
        ("+596696739021", "+596696739021"),
        ("+262693054400", "+262693054400"),
        ("0033123456789", "+33123456789"),
        ("0701021870", "+33701021870"),
        ("04 05 90 86 12", "+33405908612"),
        ("+39 02 1234 5678", "+390212345678"),
        ("06 12 34 56 78 x12", "+33612345678"),
        ("+33612345678;ext=1", "+33612345678"),
        ("33612345678", "+33612345678"),
    ];
    for (input, e164) in valid {
        assert_eq!(
            Phone::parse(input).map(|p| p.0).as_deref(),
            Some(e164),
            "{input}"
        );
    }
    for input in [
        "01,23,45,67,89",
        "0000000000",
        "45 24 7000",
        "012345",
        "00331234567890",
        "tel:+33612345678",
        "+999 1234567",
        "(+33) 6 12 34 56 78",
        "1-800-FLOWERS",
    ] {
        assert_eq!(Phone::parse(input).map(|p| p.0), None, "{input}");
    }
    for (input, trunc) in [("+336908182", "+336908182"), ("+334059086", "+334059086")] {
        assert_eq!(
            PhoneTrunc::parse(input).map(|p| p.0).as_deref(),
            Some(trunc),
            "{input}"
        );
    }
}
