//! The registry's business rules as plain data and functions: no SQL, no HTTP.
//!
//! Start at [`validate_journey`] (payload → [`NewJourney`] or every violation), then
//! [`standalone_violations`] (terms of use) and [`JourneyStatus::compute`] (public status).
//! Every rule that depends on time takes `now` as a parameter. CEE applications are in [`cee`];
//! what happens after acquisition (checks, campaigns, funding calls) in [`lifecycle`].

pub mod cee;
mod journey;
pub mod lifecycle;
mod phone;
mod revise;
mod schema;
mod status;
mod terms;
mod validate;

pub use journey::{
    Cancel, Driver, Identity, IdentityKey, Incentive, NewJourney, OperatorClass, OperatorJourneyId,
    Passenger, Payment, TimeGeoPoint, TravelPass, is_siret,
};
pub use phone::{Phone, PhoneTrunc};
pub use revise::{StoredJourney, UPDATE_WINDOW, UpdateRefusal, revise};
pub use status::{AcquisitionStatus, CheckStatus, JourneyState, JourneyStatus};
pub use terms::{
    CLOSE_TRIPS_GAP, MAX_TRIPS_PER_DAY, MIN_DISTANCE_METRES, Neighbours, SEND_DEADLINE, TermsLabel,
    TermsWindows, neighbour_starts, paris_day, standalone_violations, violations,
};
pub use validate::{CLOCK_SKEW, validate_cancel, validate_journey, validate_patch};
