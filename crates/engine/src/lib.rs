//! wb-engine: the rules of writeback (SPEC §2–§6) as a pure function from the cloud and AD
//! images to a [`Plan`]. No I/O, no async, no clock: it knows no LDAP and no HTTP.
//!
//! Layout: [`config`](EngineConfig) (settings and scope rules), `scope` ([`decide`]: is a
//! group written back, as what, where), [`naming`] (CN, RDN escaping, sAMAccountName, DN
//! comparison), `members` (member resolution), `diff` ([`plan`],
//! [`plan_groups`]), `touched` ([`touched_by`]: what a change since the last cycle touches), `lookups`
//! ([`lookups`] a plan consults; [`lookups_of`]: those the objects a delta touched can add).

mod config;
mod diff;
mod lookups;
mod member_delta;
mod members;
pub mod naming;
mod scope;
mod touched;

pub use config::{
    EngineConfig, Naming, Rule, RuleKind, RuleMatch, UnknownValue, M365_MEMBER_LIMIT,
    SECURITY_MEMBER_LIMIT,
};
pub use diff::{
    adoption_sids, plan, plan_groups, plan_groups_with, CloudChanges, Input, DESCRIPTION_MAX_CHARS,
    DESCRIPTION_MAX_UNITS, DISPLAY_NAME_MAX_UNITS,
};
pub use lookups::{lookups, lookups_of};
pub use members::{expected_class, DOMAIN_LOCAL_ERROR};
pub use scope::{decide, CLOUD_MANAGED, SECURITY_TYPE_ERROR};
pub use touched::{touched_by, touched_parts, Changes, Touched};
pub use wb_model::Plan;
