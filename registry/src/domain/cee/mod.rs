//! CEE applications (energy-saving certificates, CONTRACT §8, rpc-behaviour §9): the rules, as
//! plain data and functions. No SQL, no HTTP, no files.
//!
//! Start at [`validate_registration`] and [`validate_simulation`] (payload → request or every
//! violation; [`validate_import`] and [`validate_identity_import`] for the operator's history),
//! then [`short_eligibility`] and [`long_dates`] (which journeys and dates may be
//! claimed), [`first_conflict`] (the cool-downs between two applications of one person) and
//! [`CeeSigner`] (the token an accepted application gets). [`France`] says whether a point is
//! in France, from the boundary shipped in `registry/data/`.

mod france;
mod import;
mod request;
mod rules;
mod token;

pub use france::{Area, France};
pub use import::{
    IdentityImport, MAX_IMPORT_ITEMS, SpecificOperation, validate_identity_import, validate_import,
};
pub use request::{
    ApplicationKind, DrivingLicence, JourneyType, LastNameTrunc, Person, Registration,
    RegistrationKind, Simulation, validate_registration, validate_simulation,
};
pub use rules::{
    Campaign, ClaimedJourney, DateRefusal, Ineligibility, LONG_COOLDOWN_YEARS,
    MAX_SHORT_DISTANCE_METRES, SHORT_COOLDOWN_YEARS, SPECIFIC_LONG_COOLDOWN_YEARS,
    SPECIFIC_SHORT_COOLDOWN_YEARS, StoredApplication, application_timestamp, cooldown_start,
    first_conflict, long_dates, short_eligibility,
};
pub use token::{CeeSigner, KeyError, iso_millis, token_message};
