//! Incentive campaigns (`POST /admin/campaigns`) and what they pay for a journey.
//!
//! A campaign pays `amount_per_km` cents per kilometre declared, for journeys that start
//! inside its dates, have one of its operator classes, are at least `min_distance` long
//! (kilometres beyond `max_distance` are not paid) and, when it has an `area`, start or end
//! inside it. The beneficiary is the driver. What is paid is then capped by the driver's
//! daily and monthly caps (Paris day and month of the journey's start) and by what is left of
//! the budget. See docs/lifecycle.md.

use super::super::cee::Area;
use super::super::journey::OperatorClass;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

/// Largest amount per kilometre accepted, in cents (100 €/km: anything above is a typo).
pub const MAX_AMOUNT_PER_KM: i64 = 10_000;

/// A campaign as an admin defines it.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub name: String,
    /// Journeys starting in `[start, end]` are eligible.
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub operator_classes: Vec<OperatorClass>,
    /// Cents per km.
    pub amount_per_km: i64,
    /// Metres.
    pub min_distance: i64,
    pub max_distance: i64,
    /// The GeoJSON geometry as sent, and its parsed shape.
    pub area: Option<(Value, Area)>,
    /// Cents.
    pub max_per_person_per_day: Option<i64>,
    pub max_per_person_per_month: Option<i64>,
    pub budget: Option<i64>,
}

/// A stored campaign.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub rules: NewCampaign,
}

impl Campaign {
    /// The campaign as the admin routes show it.
    pub fn to_json(&self) -> Value {
        let r = &self.rules;
        let iso = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        json!({
            "id": self.id,
            "name": r.name,
            "start": iso(r.start),
            "end": iso(r.end),
            "operator_classes": r.operator_classes.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            "amount_per_km": r.amount_per_km,
            "min_distance": r.min_distance,
            "max_distance": r.max_distance,
            "area": r.area.as_ref().map(|(geometry, _)| geometry),
            "max_per_person_per_day": r.max_per_person_per_day,
            "max_per_person_per_month": r.max_per_person_per_month,
            "budget": r.budget,
            "created_at": iso(self.created_at),
        })
    }
}

/// The body of `POST /admin/campaigns`, or every problem with it as `"<path>: <message>"`.
pub fn validate_campaign(body: &Value) -> Result<NewCampaign, Vec<String>> {
    let Some(object) = body.as_object() else {
        return Err(vec![": must be object".to_owned()]);
    };
    let mut errors = Vec::new();
    const KNOWN: [&str; 11] = [
        "name",
        "start",
        "end",
        "operator_classes",
        "amount_per_km",
        "min_distance",
        "max_distance",
        "area",
        "max_per_person_per_day",
        "max_per_person_per_month",
        "budget",
    ];
    for key in object.keys().filter(|k| !KNOWN.contains(&k.as_str())) {
        errors.push(format!(": must NOT have additional properties ('{key}')"));
    }
    let mut f = Fields {
        object,
        errors: &mut errors,
    };
    let name = f.required("name", |v| {
        v.as_str()
            .filter(|s| (1..=256).contains(&s.chars().count()))
            .map(str::to_owned)
            .ok_or("must be a string of 1 to 256 characters")
    });
    let date = |v: &Value| {
        v.as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
            .ok_or("must match format \"date-time\"")
    };
    let start = f.required("start", date);
    let end = f.required("end", date);
    let operator_classes = f.required("operator_classes", |v| {
        let classes = v
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or("must be a non-empty array of \"A\", \"B\" or \"C\"")?;
        let mut parsed: Vec<OperatorClass> = Vec::new();
        for c in classes {
            let class = c
                .as_str()
                .and_then(OperatorClass::parse)
                .ok_or("must be a non-empty array of \"A\", \"B\" or \"C\"")?;
            if !parsed.contains(&class) {
                parsed.push(class);
            }
        }
        Ok(parsed)
    });
    let cents = |max: i64| {
        move |v: &Value| {
            v.as_i64()
                .filter(|n| (0..=max).contains(n))
                .ok_or("must be a non-negative integer in range")
        }
    };
    let amount_per_km = f.required("amount_per_km", cents(MAX_AMOUNT_PER_KM));
    let min_distance = f.required("min_distance", cents(1_000_000));
    let max_distance = f.required("max_distance", cents(1_000_000));
    let area = f.optional("area", |v| {
        Area::from_geometry(v)
            .map(|a| (v.clone(), a))
            .map_err(|_| "must be a GeoJSON Polygon or MultiPolygon geometry")
    });
    let max_per_person_per_day = f.optional("max_per_person_per_day", cents(i64::MAX));
    let max_per_person_per_month = f.optional("max_per_person_per_month", cents(i64::MAX));
    let budget = f.optional("budget", cents(i64::MAX));
    if let (Some(s), Some(e)) = (start, end)
        && s >= e
    {
        errors.push("/start: must be before /end".to_owned());
    }
    if let (Some(lo), Some(hi)) = (min_distance, max_distance)
        && lo > hi
    {
        errors.push("/min_distance: must not exceed /max_distance".to_owned());
    }
    match (
        name,
        start,
        end,
        operator_classes,
        amount_per_km,
        min_distance,
        max_distance,
    ) {
        (Some(name), Some(start), Some(end), Some(classes), Some(per_km), Some(lo), Some(hi))
            if errors.is_empty() =>
        {
            Ok(NewCampaign {
                name,
                start,
                end,
                operator_classes: classes,
                amount_per_km: per_km,
                min_distance: lo,
                max_distance: hi,
                area: area.flatten(),
                max_per_person_per_day: max_per_person_per_day.flatten(),
                max_per_person_per_month: max_per_person_per_month.flatten(),
                budget: budget.flatten(),
            })
        }
        _ => Err(errors),
    }
}

/// Reads fields of a JSON object, collecting errors.
struct Fields<'a> {
    object: &'a Map<String, Value>,
    errors: &'a mut Vec<String>,
}

impl Fields<'_> {
    fn required<T>(
        &mut self,
        key: &str,
        parse: impl Fn(&Value) -> Result<T, &'static str>,
    ) -> Option<T> {
        match self.object.get(key) {
            None => {
                self.errors
                    .push(format!(": must have required property '{key}'"));
                None
            }
            Some(v) => parse(v)
                .map_err(|m| self.errors.push(format!("/{key}: {m}")))
                .ok(),
        }
    }

    /// `Some(None)` when absent or null, `None` when invalid.
    fn optional<T>(
        &mut self,
        key: &str,
        parse: impl Fn(&Value) -> Result<T, &'static str>,
    ) -> Option<Option<T>> {
        match self.object.get(key) {
            None | Some(Value::Null) => Some(None),
            Some(_) => self.required(key, parse).map(Some),
        }
    }
}

/// What an incentive needs to know of a journey.
#[derive(Debug, Clone, Copy)]
pub struct Trip {
    pub operator_class: OperatorClass,
    pub start: DateTime<Utc>,
    /// Metres declared.
    pub distance: i64,
    /// `(lat, lon)`.
    pub start_point: (f64, f64),
    pub end_point: (f64, f64),
}

/// What the campaign already pays, in cents, counting every journey not canceled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spent {
    /// To this driver for journeys starting that Paris day.
    pub person_day: i64,
    /// To this driver for journeys starting that Paris month.
    pub person_month: i64,
    /// In all.
    pub campaign: i64,
}

impl NewCampaign {
    /// Whether the campaign covers `trip` at all.
    pub fn covers(&self, trip: &Trip) -> bool {
        let in_area = |(lat, lon): (f64, f64)| {
            self.area
                .as_ref()
                .is_none_or(|(_, area)| area.contains(lat, lon))
        };
        trip.start >= self.start
            && trip.start <= self.end
            && self.operator_classes.contains(&trip.operator_class)
            && trip.distance >= self.min_distance
            && (in_area(trip.start_point) || in_area(trip.end_point))
    }

    /// The amount before caps: `amount_per_km` per declared km, up to `max_distance`,
    /// rounded down to the cent.
    pub fn base_amount(&self, trip: &Trip) -> i64 {
        let paid = trip.distance.min(self.max_distance);
        self.amount_per_km.saturating_mul(paid) / 1_000
    }

    /// What the campaign pays for `trip` given what it already pays (0: nothing).
    pub fn incentive(&self, trip: &Trip, spent: &Spent) -> i64 {
        if !self.covers(trip) {
            return 0;
        }
        let left = |cap: Option<i64>, used: i64| cap.map_or(i64::MAX, |c| (c - used).max(0));
        self.base_amount(trip)
            .min(left(self.max_per_person_per_day, spent.person_day))
            .min(left(self.max_per_person_per_month, spent.person_month))
            .min(left(self.budget, spent.campaign))
    }
}

#[cfg(test)]
mod tests;
