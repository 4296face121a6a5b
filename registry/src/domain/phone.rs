//! Phone numbers of drivers and passengers, normalised to E.164 (CONTRACT §7).
//!
//! Operators send numbers as people type them: `06 12 34 56 78`, `+33 (0)6…`, `0033…`,
//! `+32 470…`. [`Phone::parse`] accepts exactly the numbers the reference accepts, reading
//! national formats as French (rpc-behaviour §6 "phone"), and keeps only their E.164 form.
//! [`PhoneTrunc`] is the same number without its last two digits, for operators that do not
//! hold the full one. Length limits of the payload schema are checked by the validator, not here.
//!
//! **Which numbers are valid.** The reference validates with libphonenumber-js and its default
//! *min* metadata, which keeps number types (fixed line, mobile…) only where a calling code's
//! countries cannot be told apart by leading digits (+1's US and Canada, +44's GB, GG and JE,
//! +262, +590…). So:
//! - under the calling code of one country (+33, +32, +49…), a number is valid when its
//!   national number matches the country's *general* national-number pattern (which spells
//!   its lengths), whatever its type and whether its range is assigned today: a range opened
//!   tomorrow must not cost a proof today;
//! - under a shared calling code, the country is the first whose leading digits (or, without
//!   them, number types) match, else the code's main country; where that country keeps its
//!   types the number must be of one of them, else its general pattern decides.
//!
//! The rules read the metadata of the maintained `phonenumber` crate (libphonenumber's), whose
//! plans are newer than the reference's for a few calling codes (France's overseas plans only
//! grew; docs/compatibility.md lists them). `tests/tests/e2e/compat/phones.rs` checks every
//! decision against libphonenumber-js itself where the plans agree.
//!
//! Both types print as `<redacted>` in `Debug`: phone numbers never reach the logs.

use phonenumber::metadata::{DATABASE, Descriptor, Metadata};
use regex::Regex;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, RwLock};

/// A valid phone number in E.164 form (`+33612345678`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Phone(String);

/// A valid phone number in E.164 form, without its last two digits (`+336123456`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhoneTrunc(String);

impl Phone {
    /// The E.164 form of `s` when it is a valid number, national formats being French.
    ///
    /// Digits may be grouped with spaces, dots, dashes, slashes, brackets and tildes, and
    /// followed by an extension (`x12`, `ext. 12`, `;ext=12`), which is dropped as the
    /// reference drops it; letters elsewhere, commas and `tel:` URIs are refused.
    pub fn parse(s: &str) -> Option<Self> {
        let number = parse(s)?;
        is_valid(&number).then(|| Self(number.e164()))
    }

    /// The number in E.164 form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PhoneTrunc {
    /// The truncated E.164 form of `s` when `s` followed by `00` is a valid [`Phone`]: that
    /// phone's E.164 form without its last two digits, as the reference cuts it (so an
    /// extension at the end of `s` takes the `00`, and the cut takes two digits of the number).
    pub fn parse(s: &str) -> Option<Self> {
        let mut full = Phone::parse(&format!("{s}00"))?.0;
        full.truncate(full.len() - 2);
        Some(Self(full))
    }

    /// The number in E.164 form, without its last two digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A number read as libphonenumber-js reads it: its calling code and national significant
/// number, and the country whose rules apply when the number itself names none.
struct Parsed {
    code: u16,
    national: String,
}

impl Parsed {
    fn e164(&self) -> String {
        format!("+{}{}", self.code, self.national)
    }
}

/// libphonenumber-js's bounds on a national significant number.
const NSN_LENGTHS: std::ops::RangeInclusive<usize> = 2..=17;

/// Reads `s` as libphonenumber-js's `parsePhoneNumber(s, {defaultCountry: "FR", extract:
/// false})` does: an optional extension at the end is dropped; the rest must be a "viable"
/// number (an optional leading `+`, then at least three digits among punctuation), of which
/// only the digits and that `+` count; the calling code comes from the `+`, from France's
/// international prefix `00`, or from a leading `33` when that reads better; then the national
/// prefix is stripped by the numbering plan's rules.
///
/// The `phonenumber` crate's own parser is not used: it applies the default country's national
/// prefix to numbers written with another calling code (`+39 02…` loses Milan's `0`), anchors
/// its patterns at the start only, and reads `x` as a digit in places.
fn parse(s: &str) -> Option<Parsed> {
    let number = EXTENSION
        .find(s)
        .map_or(s, |extension| &s[..extension.start()]);
    if !VIABLE.is_match(number) {
        return None;
    }
    let plus = number.starts_with(['+', '＋']);
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    let france = DATABASE.by_id("FR")?;
    let (code, rest) = if plus {
        calling_code(&digits)?
    } else if let Some(after) = strip_international_prefix(france, &digits) {
        calling_code(after)?
    } else {
        calling_code_without_plus(france, &digits).unwrap_or((FRANCE, &digits))
    };
    let plan = main_country(code)?;
    let national = national_number(plan, rest);
    NSN_LENGTHS.contains(&national.len()).then_some(Parsed {
        code,
        national: national.into_owned(),
    })
}

const FRANCE: u16 = 33;

/// The calling code that `digits` (written after a `+`) starts with, and what follows it.
fn calling_code(digits: &str) -> Option<(u16, &str)> {
    if digits.starts_with('0') {
        return None;
    }
    (1..=3.min(digits.len())).find_map(|n| {
        let code: u16 = digits[..n].parse().ok()?;
        DATABASE.by_code(&code).map(|_| (code, &digits[n..]))
    })
}

/// `digits` without the country's international prefix (`00` in France) when it starts
/// with one that is not followed by a `0`.
fn strip_international_prefix<'a>(country: &Metadata, digits: &'a str) -> Option<&'a str> {
    let prefix = country.international_prefix()?;
    let found = prefix.find(digits).filter(|m| m.start() == 0)?;
    let after = &digits[found.end()..];
    (!after.starts_with('0')).then_some(after)
}

/// A number written with France's calling code but no `+` (`33612345678`): read as
/// international when the national reading does not match France's pattern and the
/// international one does, or when the national reading is too long.
fn calling_code_without_plus<'a>(france: &Metadata, digits: &'a str) -> Option<(u16, &'a str)> {
    let shorter = digits.strip_prefix("33")?;
    let as_national = national_number(france, digits);
    let general = france.descriptors().general();
    let better =
        !matches(general, &as_national) && matches(general, &national_number(france, shorter));
    (better || length(france, &as_national) == Length::TooLong).then_some((FRANCE, shorter))
}

/// The numbering plan libphonenumber-js selects for a calling code: its main country.
fn main_country(code: u16) -> Option<&'static Metadata> {
    let countries = DATABASE.by_code(&code)?;
    countries
        .iter()
        .find(|c| c.is_main_country_for_code())
        .or(countries.first())
        .copied()
}

/// `number` without the national prefix (and carrier code) that `plan` strips, unless
/// stripping makes a number that matched the plan's pattern stop matching it, or leaves a
/// number too short or of an impossible length (libphonenumber-js's `extractNationalNumber`).
fn national_number<'a>(plan: &Metadata, number: &'a str) -> std::borrow::Cow<'a, str> {
    use std::borrow::Cow;
    let Some(stripped) = strip_national_prefix(plan, number) else {
        return Cow::Borrowed(number);
    };
    let general = plan.descriptors().general();
    // Stripping must not turn a number that matched the pattern into one that does not.
    let kept_its_shape = !matches(general, number) || matches(general, &stripped);
    let possible = !matches!(length(plan, &stripped), Length::TooShort | Length::Invalid);
    if kept_its_shape && possible {
        stripped
    } else {
        Cow::Borrowed(number)
    }
}

/// `number` with the plan's national prefix for parsing removed, or rewritten by the plan's
/// transform rule when that prefix captures digits; `None` when the prefix is absent.
fn strip_national_prefix<'a>(
    plan: &Metadata,
    number: &'a str,
) -> Option<std::borrow::Cow<'a, str>> {
    use std::borrow::Cow;
    let pattern = match plan.national_prefix_for_parsing() {
        Some(p) => p.as_str().to_owned(),
        None => regex::escape(plan.national_prefix()?),
    };
    let prefix = compiled(&pattern, Anchor::Start);
    let captures = prefix.captures(number)?;
    let groups = captures.len() - 1;
    let captured = groups > 0 && captures.get(groups).is_some_and(|g| !g.is_empty());
    match plan.national_prefix_transform_rule() {
        Some(rule) if captured => {
            // Java's `$1` group references; digits follow groups, so spell them `${1}`.
            let mut transformed = String::new();
            captures.expand(&GROUP.replace_all(rule, "$${$1}"), &mut transformed);
            transformed.push_str(&number[captures.get(0)?.end()..]);
            Some(Cow::Owned(transformed))
        }
        _ => Some(Cow::Borrowed(&number[captures.get(0)?.end()..])),
    }
}

#[derive(Debug, PartialEq)]
enum Length {
    Possible,
    TooShort,
    TooLong,
    Invalid,
}

/// How the length of `national` compares with the plan's possible lengths (those of its
/// general descriptor: the union of its number types').
fn length(plan: &Metadata, national: &str) -> Length {
    let possible = possible_lengths(plan);
    let n = len(national);
    match (possible.first(), possible.last()) {
        (Some(&min), _) if n < min => Length::TooShort,
        (_, Some(&max)) if n > max => Length::TooLong,
        _ if possible.contains(&n) || possible.is_empty() => Length::Possible,
        _ => Length::Invalid,
    }
}

fn possible_lengths(plan: &Metadata) -> Vec<u16> {
    let d = plan.descriptors();
    if !d.general().possible_length().is_empty() {
        return d.general().possible_length().to_vec();
    }
    let mut lengths: Vec<u16> = types(plan)
        .flat_map(|t| t.possible_length().iter().copied())
        .collect();
    lengths.sort_unstable();
    lengths.dedup();
    lengths
}

/// Whether `number` is valid by the rule of the module's documentation.
fn is_valid(number: &Parsed) -> bool {
    let Some(countries) = DATABASE.by_code(&number.code) else {
        return false;
    };
    let national = number.national.as_str();
    let country = match countries.as_slice() {
        [only] => Some(*only),
        shared => shared.iter().copied().find(|c| {
            c.leading_digits().map_or_else(
                || has_a_type(c, national),
                |leading| leading.find(national).is_some_and(|m| m.start() == 0),
            )
        }),
    };
    let Some(country) = country.or_else(|| main_country(number.code)) else {
        return false;
    };
    if keeps_types(country, countries.len()) {
        has_a_type(country, national)
    } else {
        matches(country.descriptors().general(), national)
    }
}

/// Whether libphonenumber-js's min metadata keeps `country`'s number types: only where they
/// are needed to tell the countries of a calling code apart (a shared code, no leading digits
/// to do it), and for the non-geographic entities (+800, +882…).
fn keeps_types(country: &Metadata, sharing: usize) -> bool {
    country.id() == "001" || (sharing > 1 && country.leading_digits().is_none())
}

/// The number types of `plan`, in libphonenumber-js's order.
fn types(plan: &Metadata) -> impl Iterator<Item = &Descriptor> {
    let d = plan.descriptors();
    [
        d.fixed_line(),
        d.mobile(),
        d.premium_rate(),
        d.toll_free(),
        d.shared_cost(),
        d.voip(),
        d.personal_number(),
        d.pager(),
        d.uan(),
        d.voicemail(),
    ]
    .into_iter()
    .flatten()
}

/// Whether `national` matches `country`'s pattern and one of its number types' patterns
/// (libphonenumber-js's `getNumberType`).
fn has_a_type(country: &Metadata, national: &str) -> bool {
    matches(country.descriptors().general(), national)
        && types(country).any(|t| matches(t, national))
}

/// Whether `national` matches `descriptor`'s national-number pattern *entirely*. The crate's
/// own `Descriptor::is_match` only anchors the start, so `+687 268063 00` would pass New
/// Caledonia's six-digit pattern.
fn matches(descriptor: &Descriptor, national: &str) -> bool {
    compiled(descriptor.national_number().as_str(), Anchor::Both).is_match(national)
}

fn len(national: &str) -> u16 {
    u16::try_from(national.len()).unwrap_or(u16::MAX)
}

#[derive(Clone, Copy)]
enum Anchor {
    Start,
    Both,
}

/// A metadata pattern compiled once, anchored as asked (libphonenumber writes its patterns
/// with whitespace for reading, hence `ignore_whitespace`).
fn compiled(pattern: &str, anchor: Anchor) -> Arc<Regex> {
    let cache = match anchor {
        Anchor::Start => &ANCHORED_AT_START,
        Anchor::Both => &ANCHORED_AT_BOTH_ENDS,
    };
    // Looked up by `&str`: no allocation once a pattern is compiled.
    if let Some(regex) = cache.read().expect("phone patterns").get(pattern) {
        return regex.clone();
    }
    let source = match anchor {
        Anchor::Start => format!("^(?:{pattern})"),
        Anchor::Both => format!("^(?:{pattern})$"),
    };
    let regex = Arc::new(
        regex::RegexBuilder::new(&source)
            .ignore_whitespace(true)
            .build()
            .expect("libphonenumber's patterns compile"),
    );
    cache
        .write()
        .expect("phone patterns")
        .insert(pattern.to_owned(), regex.clone());
    regex
}

/// A group reference in a transform rule.
static GROUP: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\$(\d)").expect("group pattern"));

/// The metadata patterns compiled so far, by pattern: anchored at the start (national
/// prefixes), and at both ends (national-number patterns).
static ANCHORED_AT_START: LazyLock<RwLock<Compiled>> = LazyLock::new(Default::default);
static ANCHORED_AT_BOTH_ENDS: LazyLock<RwLock<Compiled>> = LazyLock::new(Default::default);

type Compiled = HashMap<String, Arc<Regex>>;

/// libphonenumber's extension syntax at the end of a number, as libphonenumber-js parses it:
/// `;ext=N`, an explicit label (`ext`, `extn`, `anexo`…) or an ambiguous one (`x`, `#`, `~`,
/// `int`), a `-`/space then up to six digits then `#`, `;` or `,,` (auto-dialling), commas.
static EXTENSION: LazyLock<Regex> = LazyLock::new(|| {
    let digits = |n: u8| format!("([0-9０-９٠-٩۰-۹]{{1,{n}}})");
    let before = "[ \u{00A0}\t,]*";
    let before_no_comma = "[ \u{00A0}\t]*";
    let after = "[:\\.．]?[ \u{00A0}\t,-]*";
    let alternatives = [
        format!(";ext={}", digits(20)),
        format!(
            "{before}(?:e?xt(?:ensi(?:ó?|ó))?n?|ｅ?ｘｔｎ?|доб|anexo){after}{}#?",
            digits(20)
        ),
        format!("{before}(?:[xｘ#＃~～]|int|ｉｎｔ){after}{}#?", digits(9)),
        format!("[- ]+{}#", digits(6)),
        format!("{before_no_comma}(?:,{{2}}|;){after}{}#?", digits(15)),
        format!("{before_no_comma}(?:,)+{after}{}#?", digits(9)),
    ];
    Regex::new(&format!("(?i)(?:{})$", alternatives.join("|"))).expect("extension pattern")
});

/// libphonenumber-js's `VALID_PHONE_NUMBER` without its extension: an optional plus, then at
/// least three digits among its punctuation (dashes, slashes, dots, spaces, brackets,
/// tildes); or exactly two digits.
static VIABLE: LazyLock<Regex> = LazyLock::new(|| {
    let punctuation = "\\-\u{2010}-\u{2015}\u{2212}\u{30FC}\u{FF0D}\u{FF0F}/\u{FF0E}. \u{00A0}\u{00AD}\u{200B}\u{2060}\u{3000}()\u{FF08}\u{FF09}\u{FF3B}\u{FF3D}\\[\\]~\u{2053}\u{223C}\u{FF5E}";
    let digits = "0-9";
    Regex::new(&format!(
        "^(?:[{digits}]{{2}}|[+＋]?(?:[{punctuation}]*[{digits}]){{3,}}[{punctuation}{digits}]*)$"
    ))
    .expect("viable number pattern")
});

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Phone(<redacted>)")
    }
}

impl fmt::Debug for PhoneTrunc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PhoneTrunc(<redacted>)")
    }
}

#[cfg(test)]
mod tests;
