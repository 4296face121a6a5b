//! The registry's business rules as plain data and functions: no SQL, no HTTP.
//!
//! Start at [`validate_journey`] (payload → [`NewJourney`] or every violation), then
//! [`standalone_violations`] (terms of use) and [`JourneyStatus::compute`] (public status).
//! Every rule that depends on time takes `now` as a parameter.

mod journey;
mod schema;
mod status;
mod terms;
mod validate;

pub use journey::{
    Driver, Identity, IdentityKey, Incentive, NewJourney, OperatorClass, OperatorJourneyId,
    Passenger, Payment, TimeGeoPoint, TravelPass, is_siret,
};
pub use status::{AcquisitionStatus, CheckStatus, JourneyState, JourneyStatus};
pub use terms::{MIN_DISTANCE_METRES, SEND_DEADLINE, TermsLabel, standalone_violations};
pub use validate::{CLOCK_SKEW, validate_journey};
