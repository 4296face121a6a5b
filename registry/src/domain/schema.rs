//! A small JSON-schema walker that reports violations the way the reference's AJV does:
//! `"<json path>: <message>"`, every violation at once (`allErrors`).
//!
//! It is not a general JSON-schema engine: [`super::validate`] spells the journey schema out as
//! calls on a [`Checker`]. Each extractor returns `None` when the value is absent or invalid
//! (having recorded why), so callers build their types only when [`Checker::finish`] is clean.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::fmt::{self, Display};
use std::rc::Rc;

/// Collects violations while a payload is walked.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    errors: Vec<String>,
}

/// A value found (or not) at a JSON path.
#[derive(Debug, Clone)]
pub(crate) struct Field<'a> {
    pub(crate) value: Option<&'a Value>,
    pub(crate) path: Path,
}

/// A field's JSON path, spelt out only when a violation is reported: its object's path and
/// its own key or index. Walking a valid payload formats one path per object, not per field.
#[derive(Debug, Clone)]
pub(crate) struct Path {
    parent: Rc<str>,
    last: Step,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    /// The parent path is the whole path (the root, or a path given whole).
    Whole,
    Key(&'static str),
    Index(usize),
}

impl Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.parent)?;
        match self.last {
            Step::Whole => Ok(()),
            Step::Key(key) => write!(f, "/{key}"),
            Step::Index(i) => write!(f, "/{i}"),
        }
    }
}

/// An object whose shape was checked; absent or mistyped objects yield absent fields.
#[derive(Debug, Clone)]
pub(crate) struct Obj<'a> {
    map: Option<&'a Map<String, Value>>,
    path: Rc<str>,
}

impl<'a> Field<'a> {
    /// The document itself, at path `""`.
    pub(crate) fn root(value: &'a Value) -> Self {
        Self::at("", value)
    }

    /// `value`, found at `path`.
    pub(crate) fn at(path: &str, value: &'a Value) -> Self {
        Self {
            value: Some(value),
            path: Path {
                parent: path.into(),
                last: Step::Whole,
            },
        }
    }
}

impl<'a> Obj<'a> {
    /// The member `key` of this object.
    pub(crate) fn field(&self, key: &'static str) -> Field<'a> {
        Field {
            value: self.map.and_then(|m| m.get(key)),
            path: Path {
                parent: self.path.clone(),
                last: Step::Key(key),
            },
        }
    }

    /// Whether the object is present and has member `key` (even `null`).
    pub(crate) fn has(&self, key: &str) -> bool {
        self.map.is_some_and(|m| m.contains_key(key))
    }
}

impl Checker {
    /// Records one violation at `path`.
    pub(crate) fn fail(&mut self, path: impl Display, message: impl Display) {
        self.errors.push(format!("{path}: {message}"));
    }

    /// Every violation so far, or `Ok` when there is none.
    pub(crate) fn finish(self) -> Result<(), Vec<String>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }

    /// An object with `required` members and no members outside `required` and `optional`.
    pub(crate) fn object<'a>(
        &mut self,
        field: Field<'a>,
        required: &[&str],
        optional: &[&str],
    ) -> Obj<'a> {
        let map = match field.value {
            None => None,
            Some(Value::Object(map)) => Some(map),
            Some(_) => {
                self.fail(&field.path, "must be object");
                None
            }
        };
        if let Some(map) = map {
            for key in required {
                if !map.contains_key(*key) {
                    self.fail(&field.path, format!("must have required property '{key}'"));
                }
            }
            for key in map.keys() {
                if !required.contains(&key.as_str()) && !optional.contains(&key.as_str()) {
                    self.fail(
                        &field.path,
                        format!("must NOT have additional properties ('{key}')"),
                    );
                }
            }
        }
        let path = match field.path.last {
            Step::Whole => field.path.parent,
            _ => field.path.to_string().into(),
        };
        Obj { map, path }
    }

    /// A string of `min..=max` characters.
    pub(crate) fn string(&mut self, field: &Field<'_>, min: usize, max: usize) -> Option<String> {
        let value = field.value?;
        let Some(s) = value.as_str() else {
            self.fail(&field.path, "must be string");
            return None;
        };
        let len = s.chars().count();
        if len < min {
            self.fail(
                &field.path,
                format!("must NOT have fewer than {min} characters"),
            );
            None
        } else if len > max {
            self.fail(
                &field.path,
                format!("must NOT have more than {max} characters"),
            );
            None
        } else {
            Some(s.to_owned())
        }
    }

    /// A string accepted by `matches`, described to the client as `pattern`.
    pub(crate) fn pattern(
        &mut self,
        field: &Field<'_>,
        pattern: &str,
        matches: fn(&str) -> bool,
    ) -> Option<String> {
        let s = self.string(field, 0, usize::MAX)?;
        if matches(&s) {
            Some(s)
        } else {
            self.fail(&field.path, format!("must match pattern \"{pattern}\""));
            None
        }
    }

    /// An integral number in `min..=max` (`1.0` counts, as in JavaScript).
    pub(crate) fn integer(&mut self, field: &Field<'_>, min: i64, max: i64) -> Option<i64> {
        let value = field.value?;
        let integral = value.as_i64().or_else(|| {
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        });
        let Some(n) = integral else {
            self.fail(&field.path, "must be integer");
            return None;
        };
        self.in_range(field, n, min, max)
    }

    /// A number in `min..=max`.
    pub(crate) fn number(&mut self, field: &Field<'_>, min: f64, max: f64) -> Option<f64> {
        let value = field.value?;
        let Some(n) = value.as_f64() else {
            self.fail(&field.path, "must be number");
            return None;
        };
        self.in_range(field, n, min, max)
    }

    fn in_range<N: PartialOrd + Display>(
        &mut self,
        field: &Field<'_>,
        n: N,
        min: N,
        max: N,
    ) -> Option<N> {
        if n < min {
            self.fail(&field.path, format!("must be >= {min}"));
            None
        } else if n > max {
            self.fail(&field.path, format!("must be <= {max}"));
            None
        } else {
            Some(n)
        }
    }

    /// One of the `allowed` strings.
    pub(crate) fn one_of(
        &mut self,
        field: &Field<'_>,
        allowed: &[&'static str],
    ) -> Option<&'static str> {
        let value = field.value?;
        let found = value
            .as_str()
            .and_then(|s| allowed.iter().copied().find(|a| *a == s));
        if found.is_none() {
            self.fail(&field.path, "must be equal to one of the allowed values");
        }
        found
    }

    /// `true`, `false` or `null` (`null` and absence both give `None`).
    pub(crate) fn boolean_or_null(&mut self, field: &Field<'_>) -> Option<bool> {
        match field.value? {
            Value::Null => None,
            Value::Bool(b) => Some(*b),
            _ => {
                self.fail(&field.path, "must be boolean");
                None
            }
        }
    }

    /// A string of `min..=max` characters that `parse` accepts, described to the client as
    /// `format`: what `parse` made of it.
    ///
    /// A string of the wrong length is reported once, for its length (AJV would also report
    /// the format).
    pub(crate) fn format<T>(
        &mut self,
        field: &Field<'_>,
        min: usize,
        max: usize,
        format: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let s = self.string(field, min, max)?;
        let parsed = parse(&s);
        if parsed.is_none() {
            self.fail(&field.path, format!("must match format \"{format}\""));
        }
        parsed
    }

    /// An RFC 3339 date-time with an explicit offset, at most 64 characters.
    pub(crate) fn datetime(&mut self, field: &Field<'_>) -> Option<DateTime<Utc>> {
        self.format(field, 0, 64, "date-time", |s| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|dt| dt.with_timezone(&Utc))
        })
    }

    /// The items of an array of at most `max_items`.
    pub(crate) fn array<'a>(&mut self, field: Field<'a>, max_items: usize) -> Vec<Field<'a>> {
        self.array_within(field, 0, max_items)
    }

    /// The items of an array of `min_items..=max_items` (all of them, even when too many, so
    /// that each is checked too).
    pub(crate) fn array_within<'a>(
        &mut self,
        field: Field<'a>,
        min_items: usize,
        max_items: usize,
    ) -> Vec<Field<'a>> {
        let Some(value) = field.value else {
            return Vec::new();
        };
        let Some(items) = value.as_array() else {
            self.fail(&field.path, "must be array");
            return Vec::new();
        };
        if items.len() < min_items {
            self.fail(
                &field.path,
                format!("must NOT have fewer than {min_items} items"),
            );
        }
        if items.len() > max_items {
            self.fail(
                &field.path,
                format!("must NOT have more than {max_items} items"),
            );
        }
        let parent: Rc<str> = field.path.to_string().into();
        items
            .iter()
            .enumerate()
            .map(|(i, item)| Field {
                value: Some(item),
                path: Path {
                    parent: parent.clone(),
                    last: Step::Index(i),
                },
            })
            .collect()
    }
}
