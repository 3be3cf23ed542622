//! Drift: a change made by hand in AD to a group writeback writes, found by a cycle and put
//! back. A typed vocabulary, so logs, history and metrics count kinds, not strings.

use crate::ObjectId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What was changed by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DriftKind {
    /// A member added by hand (removed again).
    MemberAdded,
    /// A member removed by hand (put back).
    MemberRemoved,
    /// The CN changed by hand (renamed back).
    Renamed,
    /// Moved by hand to another OU (moved back).
    Moved,
    /// groupType changed by hand (put back).
    Retyped,
    /// An anchor attribute cleared by hand (put back).
    AnchorCleared,
    /// An anchor attribute set to another value by hand (put back).
    AnchorChanged,
    /// Another managed attribute (displayName, description, …) changed by hand (put back).
    AttributeChanged,
    /// The group deleted by hand (created again: new objectGUID and objectSid).
    Deleted,
}

impl DriftKind {
    pub const ALL: [DriftKind; 9] = [
        DriftKind::MemberAdded,
        DriftKind::MemberRemoved,
        DriftKind::Renamed,
        DriftKind::Moved,
        DriftKind::Retyped,
        DriftKind::AnchorCleared,
        DriftKind::AnchorChanged,
        DriftKind::AttributeChanged,
        DriftKind::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::MemberAdded => "member-added",
            DriftKind::MemberRemoved => "member-removed",
            DriftKind::Renamed => "renamed",
            DriftKind::Moved => "moved",
            DriftKind::Retyped => "retyped",
            DriftKind::AnchorCleared => "anchor-cleared",
            DriftKind::AnchorChanged => "anchor-changed",
            DriftKind::AttributeChanged => "attribute-changed",
            DriftKind::Deleted => "deleted",
        }
    }
}

impl fmt::Display for DriftKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One drift found in one group: the attribute, its values as found in AD (`before`) and
/// as writeback puts them back (`after`), and the fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftEvent {
    /// Cloud object id of the group.
    pub group: ObjectId,
    /// Its display name.
    pub name: String,
    /// The AD group's DN (as found).
    pub dn: String,
    pub kind: DriftKind,
    pub attribute: String,
    pub before: Vec<String>,
    pub after: Vec<String>,
    /// What writeback did about it (or why it did not).
    pub fix: String,
}

impl DriftEvent {
    /// One line: `member-added on SG-X: member CN=a → (none); removed`.
    pub fn detail(&self) -> String {
        let values = |v: &[String]| {
            if v.is_empty() {
                "(none)".to_string()
            } else {
                v.join(" | ")
            }
        };
        format!(
            "{} {}: {} → {}; {}",
            self.kind,
            self.attribute,
            values(&self.before),
            values(&self.after),
            self.fix
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_as_kebab_words_in_text_and_json() {
        for k in DriftKind::ALL {
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::Value::String(k.to_string())
            );
        }
        assert_eq!(DriftKind::AnchorCleared.to_string(), "anchor-cleared");
    }

    #[test]
    fn the_detail_names_attribute_values_and_fix() {
        let e = DriftEvent {
            group: "g".into(),
            name: "SG-X".into(),
            dn: "CN=SG-X,OU=G".into(),
            kind: DriftKind::MemberAdded,
            attribute: "member".into(),
            before: vec!["CN=a".into()],
            after: vec![],
            fix: "removed".into(),
        };
        assert_eq!(e.detail(), "member-added member: CN=a → (none); removed");
    }
}
