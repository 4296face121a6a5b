//! The operator request bodies on journeys (rpc-behaviour §5-6, CONTRACT §7), spelled out on a
//! [`Checker`].
//!
//! [`validate_journey`] turns a parsed JSON body into a [`NewJourney`] or lists every
//! violation; [`validate_patch`] checks a PATCH body with the same sub-schemas (the caller
//! merges it into the stored journey and validates the result again); [`validate_cancel`]
//! reads a cancel request. Chronology (start after end, end in the future) is checked here
//! too, against an injected clock, since it is answered the same way (400, invalid params).

use super::journey::{
    Cancel, Driver, Identity, IdentityKey, Incentive, NewJourney, OperatorClass, OperatorJourneyId,
    Passenger, Payment, TimeGeoPoint, TravelPass, is_siret,
};
use super::phone::{Phone, PhoneTrunc};
use super::schema::{Checker, Field, Obj};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

/// How far in the future a journey may end, for clock skew between operator and registry.
pub const CLOCK_SKEW: TimeDelta = TimeDelta::minutes(5);

const VARCHAR: usize = 256;
const SERIAL_MAX: i64 = 2_147_483_647;
const SIRET_PATTERN: &str = "^[0-9]{14}$";
const IDENTITY_KEY_PATTERN: &str = "^[a-f0-9]{64}$";
const CANCEL_CODE_PATTERN: &str = "^[0-9A-Za-z_-]{0,32}$";

/// Validates `payload` as a journey received at `now`; `Err` lists every violation as
/// `"<json path>: <message>"`.
pub fn validate_journey(payload: &Value, now: DateTime<Utc>) -> Result<NewJourney, Vec<String>> {
    let mut c = Checker::default();
    let root = c.object(
        Field::root(payload),
        &[
            "operator_journey_id",
            "operator_trip_id",
            "incentives",
            "operator_class",
            "start",
            "end",
            "distance",
            "driver",
            "passenger",
        ],
        &["licence_plate", "operator_id", "incentive_counterparts"],
    );
    let operator_journey_id = c
        .string(
            &root.field("operator_journey_id"),
            1,
            OperatorJourneyId::MAX_CHARS,
        )
        .and_then(|s| OperatorJourneyId::parse(&s));
    let members = patchable(&mut c, &root, now);
    let licence_plate = c.string(&root.field("licence_plate"), 1, VARCHAR);
    let driver = driver(&mut c, root.field("driver"));
    let passenger = passenger(&mut c, root.field("passenger"));

    let journey = (|| {
        Some(NewJourney {
            declared_operator_id: members.declared_operator_id,
            operator_journey_id: operator_journey_id?,
            operator_trip_id: members.operator_trip_id?,
            operator_class: members.operator_class?,
            incentives: members.incentives?,
            licence_plate,
            start: members.start?,
            end: members.end?,
            distance: members.distance?,
            driver: driver?,
            passenger: passenger?,
        })
    })();
    c.finish()?;
    journey.ok_or_else(|| vec![": must be a journey".to_owned()])
}

/// Validates `payload` as the body of `PATCH /journeys/{id}` received at `now` (schema
/// `journey.patch`); `Err` lists every violation as `"<json path>: <message>"`.
pub fn validate_patch(payload: &Value, now: DateTime<Utc>) -> Result<(), Vec<String>> {
    let mut c = Checker::default();
    let root = c.object(
        Field::root(payload),
        &["incentives", "operator_class", "start", "end", "distance"],
        &["operator_trip_id", "operator_id", "incentive_counterparts"],
    );
    patchable(&mut c, &root, now);
    c.finish()
}

/// Validates `payload` as the body of `POST /journeys/{id}/cancel`; `Err` lists every
/// violation as `"<json path>: <message>"`.
pub fn validate_cancel(payload: &Value) -> Result<Cancel, Vec<String>> {
    let mut c = Checker::default();
    let root = c.object(Field::root(payload), &["code"], &["message"]);
    let code = c.pattern(&root.field("code"), CANCEL_CODE_PATTERN, is_cancel_code);
    let message = c.string(&root.field("message"), 0, 512);
    c.finish()?;
    let code = code.ok_or_else(|| vec![": must be a cancel request".to_owned()])?;
    Ok(Cancel { code, message })
}

/// The members a PATCH may replace, checked the same way in a journey and in a PATCH body.
/// `incentive_counterparts` is accepted anywhere and ignored.
struct Patchable {
    declared_operator_id: Option<i64>,
    operator_trip_id: Option<String>,
    operator_class: Option<OperatorClass>,
    incentives: Option<Vec<Incentive>>,
    start: Option<TimeGeoPoint>,
    end: Option<TimeGeoPoint>,
    distance: Option<i64>,
}

fn patchable(c: &mut Checker, root: &Obj<'_>, now: DateTime<Utc>) -> Patchable {
    let declared_operator_id = c.integer(&root.field("operator_id"), 1, SERIAL_MAX);
    let operator_trip_id = c.string(&root.field("operator_trip_id"), 1, VARCHAR);
    let operator_class = c
        .one_of(&root.field("operator_class"), &["A", "B", "C"])
        .and_then(OperatorClass::parse);
    let incentives: Vec<Option<Incentive>> = c
        .array(root.field("incentives"), 20)
        .into_iter()
        .map(|f| incentive(c, f))
        .collect();
    let start = time_geopoint(c, root.field("start"));
    let end = time_geopoint(c, root.field("end"));
    let distance = c.integer(&root.field("distance"), 1, 1_000_000);
    if let (Some(start), Some(end)) = (&start, &end) {
        if start.datetime > end.datetime {
            c.fail("/start/datetime", "must not be after /end/datetime");
        }
        if end.datetime > now + CLOCK_SKEW {
            c.fail("/end/datetime", "must not be in the future");
        }
    }
    Patchable {
        declared_operator_id,
        operator_trip_id,
        operator_class,
        incentives: incentives.into_iter().collect(),
        start,
        end,
        distance,
    }
}

fn incentive(c: &mut Checker, field: Field<'_>) -> Option<Incentive> {
    let o = c.object(field, &["index", "amount", "siret"], &[]);
    let index = c.integer(&o.field("index"), 0, 19);
    let amount = c.integer(&o.field("amount"), 0, 100_000);
    let siret = c.pattern(&o.field("siret"), SIRET_PATTERN, is_siret);
    Some(Incentive {
        index: index?,
        siret: siret?,
        amount: amount?,
    })
}

fn payment(c: &mut Checker, field: Field<'_>) -> Option<Payment> {
    let o = c.object(field, &["index", "siret", "type", "amount"], &[]);
    let index = c.integer(&o.field("index"), 0, 19);
    let siret = c.pattern(&o.field("siret"), SIRET_PATTERN, is_siret);
    let kind = c.string(&o.field("type"), 1, VARCHAR);
    let amount = c.integer(&o.field("amount"), 0, 100_000);
    Some(Payment {
        index: index?,
        siret: siret?,
        kind: kind?,
        amount: amount?,
    })
}

fn time_geopoint(c: &mut Checker, field: Field<'_>) -> Option<TimeGeoPoint> {
    let o = c.object(field, &["datetime", "lat", "lon"], &[]);
    let datetime = c.datetime(&o.field("datetime"));
    let lat = c.number(&o.field("lat"), -90.0, 90.0);
    let lon = c.number(&o.field("lon"), -180.0, 180.0);
    Some(TimeGeoPoint {
        datetime: datetime?,
        lat: lat?,
        lon: lon?,
    })
}

fn driver(c: &mut Checker, field: Field<'_>) -> Option<Driver> {
    let o = c.object(field, &["identity", "revenue"], &[]);
    let identity = identity(c, o.field("identity"));
    let revenue = c.integer(&o.field("revenue"), 0, 1_000_000);
    Some(Driver {
        identity: identity?,
        revenue: revenue?,
    })
}

fn passenger(c: &mut Checker, field: Field<'_>) -> Option<Passenger> {
    let o = c.object(field, &["identity", "contribution"], &["payments", "seats"]);
    let identity = identity(c, o.field("identity"));
    let contribution = c.integer(&o.field("contribution"), 0, 1_000_000);
    let payments: Vec<Option<Payment>> = c
        .array(o.field("payments"), 20)
        .into_iter()
        .map(|f| payment(c, f))
        .collect();
    let seats = if o.has("seats") {
        c.integer(&o.field("seats"), 1, 8)?
    } else {
        1
    };
    Some(Passenger {
        identity: identity?,
        contribution: contribution?,
        payments: payments.into_iter().collect::<Option<Vec<_>>>()?,
        seats,
    })
}

fn identity(c: &mut Checker, field: Field<'_>) -> Option<Identity> {
    let o = c.object(
        field,
        &["identity_key", "operator_user_id"],
        &[
            "phone",
            "phone_trunc",
            "over_18",
            "travel_pass",
            "firstname",
            "lastname",
            "company",
            "email",
        ],
    );
    let identity_key = c
        .pattern(
            &o.field("identity_key"),
            IDENTITY_KEY_PATTERN,
            IdentityKey::is_valid,
        )
        .and_then(|s| IdentityKey::parse(&s));
    let operator_user_id = c.string(&o.field("operator_user_id"), 1, VARCHAR);
    let phone = c.format(&o.field("phone"), 10, 20, "phone", Phone::parse);
    let phone_trunc = c.format(
        &o.field("phone_trunc"),
        8,
        20,
        "phonetrunc",
        PhoneTrunc::parse,
    );
    let over_18 = c.boolean_or_null(&o.field("over_18"));
    let travel_pass = travel_pass(c, o.field("travel_pass"));
    for ignored in ["firstname", "lastname", "company"] {
        c.string(&o.field(ignored), 1, VARCHAR);
    }
    c.format(&o.field("email"), 5, VARCHAR, "email", |s| {
        is_email(s).then_some(())
    });
    Some(Identity {
        identity_key: identity_key?,
        operator_user_id: operator_user_id?,
        phone,
        phone_trunc,
        over_18,
        travel_pass,
    })
}

fn travel_pass(c: &mut Checker, field: Field<'_>) -> Option<TravelPass> {
    let o = c.object(field, &["name", "user_id"], &[]);
    let name = c.one_of(&o.field("name"), &["navigo"]);
    let user_id = c.string(&o.field("user_id"), 1, VARCHAR);
    Some(TravelPass {
        name: name?.to_owned(),
        user_id: user_id?,
    })
}

/// ajv-formats' `email`: dot-separated atoms, `@`, then two or more DNS labels.
fn is_email(s: &str) -> bool {
    const ATOM_SYMBOLS: &[u8] = b"!#$%&'*+/=?^_`{|}~-";
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let atom = |a: &str| {
        !a.is_empty()
            && a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || ATOM_SYMBOLS.contains(&b))
    };
    let label = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    local.split('.').all(atom) && domain.contains('.') && domain.split('.').all(label)
}

/// Whether `s` is a cancel code: up to 32 of `[0-9A-Za-z_-]`.
fn is_cancel_code(s: &str) -> bool {
    s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
pub(crate) mod tests;
