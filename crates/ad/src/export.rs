//! Export: executes one plan `Action` as LDAP writes — add, modifyDN, modify, member
//! add/remove in permissive chunks with per-value fallback, delete — and counts the writes;
//! reads back the identity of the groups created, all at once after the creates.

use crate::values::{first_binary, guid_text, sid_text};
use crate::{AdConnector, AdError};
use ldap3::controls::RawControl;
use ldap3::{Mod, Scope};
use std::collections::HashSet;
use std::sync::Arc;
use wb_model::{Action, AttrChange, GroupAttr};

/// Member values per modify (and inline in an add).
const CHUNK: usize = 1000;
/// LDAP_SERVER_PERMISSIVE_MODIFY_OID: adding a present value / removing an absent one is
/// not an error. Sent non-critical so servers without it still process the modify.
const PERMISSIVE_MODIFY: &str = "1.2.840.113556.1.4.1413";

const NO_SUCH_ATTRIBUTE: u32 = 16;
const CONSTRAINT_VIOLATION: u32 = 19;
const VALUE_EXISTS: u32 = 20;
const INVALID_SYNTAX: u32 = 21;
const NO_SUCH_OBJECT: u32 = 32;
const INVALID_DN_SYNTAX: u32 = 34;
const UNWILLING: u32 = 53;
const ALREADY_EXISTS: u32 = 68;
/// AD's extended error for "sAMAccountName already in use" (rc 68).
const SAM_TAKEN: &str = "00002071";

/// What `apply` did: the DN the object has now, its identity when known, and the member
/// values the server refused one by one (the other values were applied).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub dn: String,
    /// The objectGUID; `None` after a create (the DC does not say: read the created groups
    /// back together afterwards, [`AdConnector::read_back_created`]).
    pub guid: Option<String>,
    pub sid: Option<String>,
    pub member_errors: Vec<MemberError>,
    /// For a create: the sAMAccountName the object got (a fallback when the first was taken).
    pub sam_account_name: Option<String>,
}

/// A member value the server refused, e.g. a DN that does not exist (32).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberError {
    pub member: String,
    pub code: u32,
    pub message: String,
}

/// Where a run of creates starts: the DC's highest committed USN before the first of
/// them. Every object created (or changed) after it carries a higher `uSNChanged`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateMark {
    usn: u64,
}

/// The identity the DC gave a group: where it is, its objectGUID and objectSid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedGroup {
    pub dn: String,
    pub guid: String,
    pub sid: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Add,
    Remove,
}

impl Direction {
    fn operation(self) -> &'static str {
        match self {
            Direction::Add => "add members",
            Direction::Remove => "remove members",
        }
    }
    /// Results that mean "already as wanted" on a member value.
    fn is_idempotent_result(self, code: u32) -> bool {
        match self {
            Direction::Add => matches!(code, ALREADY_EXISTS | VALUE_EXISTS),
            Direction::Remove => matches!(code, UNWILLING | NO_SUCH_ATTRIBUTE),
        }
    }
}

/// Codes the server gives for one bad member value (as opposed to the whole operation).
fn is_value_refusal(code: u32) -> bool {
    matches!(
        code,
        NO_SUCH_OBJECT
            | INVALID_DN_SYNTAX
            | INVALID_SYNTAX
            | CONSTRAINT_VIOLATION
            | UNWILLING
            | ALREADY_EXISTS
            | VALUE_EXISTS
            | NO_SUCH_ATTRIBUTE
    )
}

impl AdConnector {
    /// Executes one action. Every action on an existing object is addressed by its
    /// objectGUID (`<GUID=…>`, which AD accepts as the DN of every operation): the write
    /// lands on the object the caller checked, even if something else now holds its old DN
    /// or it moved since it was read. Errors name the operation, the DN and the server's
    /// code and text.
    pub async fn apply(&mut self, action: &Action) -> Result<Applied, AdError> {
        match action {
            Action::Create {
                dn,
                attrs,
                members,
                sam_account_name_fallbacks,
            } => {
                self.create(dn, attrs, members, sam_account_name_fallbacks)
                    .await
            }
            Action::Rename {
                dn,
                guid,
                new_rdn,
                new_parent,
                new_dn,
            } => {
                let target = Target::guid(guid, dn);
                // With a `<GUID=…>` DN the server cannot derive the parent from the name:
                // always say where the object goes (its parent stays unless it moves).
                let parent = match new_parent {
                    Some(p) => p.clone(),
                    None => parent_of(new_dn, new_rdn).ok_or_else(|| AdError::Value {
                        operation: "rename".into(),
                        dn: dn.clone(),
                        attr: "new DN".into(),
                        message: format!("{new_dn} does not start with {new_rdn}"),
                    })?,
                };
                let result = self
                    .op()
                    .modifydn(&target.wire, new_rdn, true, Some(parent.as_str()))
                    .await;
                check("rename", dn, result)?;
                self.writes += 1;
                Ok(Applied {
                    dn: new_dn.clone(),
                    guid: Some(guid.clone()),
                    ..Default::default()
                })
            }
            Action::Modify { dn, guid, changes } => {
                self.modify_attrs(&Target::guid(guid, dn), changes).await?;
                Ok(Applied {
                    dn: dn.clone(),
                    guid: Some(guid.clone()),
                    ..Default::default()
                })
            }
            Action::AddMembers { dn, guid, members } => {
                let target = match guid {
                    Some(g) => Target::guid(g, dn),
                    None => Target::dn(dn),
                };
                let member_errors = self
                    .change_members(&target, members, Direction::Add)
                    .await?;
                Ok(Applied {
                    dn: dn.clone(),
                    guid: guid.clone(),
                    member_errors,
                    ..Default::default()
                })
            }
            Action::RemoveMembers { dn, guid, members } => {
                let member_errors = self
                    .change_members(&Target::guid(guid, dn), members, Direction::Remove)
                    .await?;
                Ok(Applied {
                    dn: dn.clone(),
                    guid: Some(guid.clone()),
                    member_errors,
                    ..Default::default()
                })
            }
            Action::Delete { dn, guid } => {
                let target = Target::guid(guid, dn);
                check("delete", dn, self.op().delete(&target.wire).await)?;
                self.writes += 1;
                Ok(Applied {
                    dn: dn.clone(),
                    guid: Some(guid.clone()),
                    ..Default::default()
                })
            }
        }
    }

    /// Marks the start of a run of creates (one rootDSE read), for
    /// [`Self::read_back_created`].
    pub async fn mark_creates(&mut self) -> Result<CreateMark, AdError> {
        let (_, usn) = self.root_usn().await?;
        Ok(CreateMark { usn })
    }

    /// The groups directly under `parent` created or changed since `mark`, with their
    /// objectGUID and objectSid: one paged one-level search however many were created
    /// (`uSNChanged` is indexed). An add does not return the identity it gave and Samba
    /// does not implement the post-read control (RFC 4527), so this replaces one base
    /// search per created group. The caller matches the DNs it created.
    pub async fn read_back_created(
        &mut self,
        parent: &str,
        mark: CreateMark,
    ) -> Result<Vec<CreatedGroup>, AdError> {
        let filter = format!(
            "(&(objectClass=group)(uSNChanged>={}))",
            mark.usn.saturating_add(1)
        );
        let entries = self
            .paged_search(
                parent,
                Scope::OneLevel,
                &filter,
                &["objectGUID", "objectSid"],
                "read back created groups",
            )
            .await?;
        Ok(entries
            .into_iter()
            .filter_map(|e| {
                let guid = first_binary(&e, "objectGUID").and_then(|b| guid_text(&b))?;
                Some(CreatedGroup {
                    sid: first_binary(&e, "objectSid").and_then(|b| sid_text(&b)),
                    guid,
                    dn: e.dn,
                })
            })
            .collect())
    }

    /// The identity of the group at `dn` (one base search): for a created group the DN
    /// comparison does not find among [`Self::read_back_created`]'s (the server may spell
    /// an unusual name otherwise than it was sent). `None` when nothing is there.
    pub async fn read_created(&mut self, dn: &str) -> Result<Option<CreatedGroup>, AdError> {
        let entry = self
            .base_entry(
                dn,
                "(objectClass=group)",
                &["objectGUID", "objectSid"],
                "read back created group",
            )
            .await?;
        Ok(entry.and_then(|e| {
            Some(CreatedGroup {
                guid: first_binary(&e, "objectGUID").and_then(|b| guid_text(&b))?,
                sid: first_binary(&e, "objectSid").and_then(|b| sid_text(&b)),
                dn: dn.to_string(),
            })
        }))
    }

    async fn create(
        &mut self,
        dn: &str,
        attrs: &std::collections::BTreeMap<std::borrow::Cow<'static, str>, wb_model::AttrValues>,
        members: &[Arc<str>],
        sam_fallbacks: &[String],
    ) -> Result<Applied, AdError> {
        let (inline, rest) = members.split_at(members.len().min(CHUNK));
        let mut attrs = attrs.clone();
        // sAMAccountNames tried so far, for the error when every candidate is taken.
        let mut tried: Vec<String> = attrs
            .get(GroupAttr::SamAccountName.name())
            .map(|v| v.to_vec())
            .unwrap_or_default();
        let mut fallbacks = sam_fallbacks.iter();
        let mut with_inline = !inline.is_empty();
        loop {
            let mut entry: Vec<(String, HashSet<String>)> = attrs
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_string(), v.iter().cloned().collect()))
                .collect();
            if with_inline {
                entry.push((
                    "member".to_string(),
                    inline.iter().map(|m| m.to_string()).collect(),
                ));
            }
            match check("create", dn, self.op().add(dn, entry).await) {
                Ok(()) => {
                    self.writes += 1;
                    break;
                }
                Err(AdError::Ldap {
                    operation,
                    dn: failed_dn,
                    code: ALREADY_EXISTS,
                    message,
                }) if message.contains(SAM_TAKEN) => match fallbacks.next() {
                    Some(next) => {
                        tracing::info!(dn, next, "sAMAccountName taken, trying the next candidate");
                        attrs.insert(GroupAttr::SamAccountName.name().into(), next.clone().into());
                        tried.push(next.clone());
                    }
                    None => {
                        return Err(AdError::Ldap {
                            operation,
                            dn: failed_dn,
                            code: ALREADY_EXISTS,
                            message: format!(
                                "{message} (every sAMAccountName candidate is taken: {})",
                                tried.join(", ")
                            ),
                        })
                    }
                },
                // A bad inline member value fails the whole add: add the group bare, then
                // the members value by value below, so only the bad ones are refused.
                Err(AdError::Ldap { code, .. })
                    if with_inline && is_member_value_code(code) && !self.exists(dn).await? =>
                {
                    with_inline = false;
                }
                Err(e) => return Err(e),
            }
        }
        let pending = if with_inline { rest } else { members };
        let member_errors = self
            .change_members(&Target::dn(dn), pending, Direction::Add)
            .await?;
        // No read-back here: the identity of every group created is read in one search
        // after the creates (`read_back_created`).
        Ok(Applied {
            dn: dn.to_string(),
            guid: None,
            sid: None,
            member_errors,
            sam_account_name: attrs
                .get(GroupAttr::SamAccountName.name())
                .and_then(|v| v.first().cloned()),
        })
    }

    async fn exists(&mut self, dn: &str) -> Result<bool, AdError> {
        Ok(self
            .base_entry(dn, "(objectClass=*)", &["objectClass"], "check object")
            .await?
            .is_some())
    }

    /// Empty `after` removes the attribute (replace with no values: ignored when absent,
    /// RFC 4511 §4.6); anything else replaces it.
    async fn modify_attrs(
        &mut self,
        target: &Target,
        changes: &[AttrChange],
    ) -> Result<(), AdError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mods: Vec<Mod<String>> = changes
            .iter()
            .map(|c| Mod::Replace(c.attr.clone(), c.after.iter().cloned().collect()))
            .collect();
        let dn = target.dn.as_str();
        match check("modify", dn, self.op().modify(&target.wire, mods).await) {
            Ok(()) => {
                self.writes += 1;
                Ok(())
            }
            Err(AdError::Ldap {
                code: NO_SUCH_ATTRIBUTE,
                ..
            }) => {
                // A server that insists on 16 for removing an absent attribute: send the
                // changes one by one and let that one pass.
                for change in changes {
                    let m =
                        Mod::Replace(change.attr.clone(), change.after.iter().cloned().collect());
                    match check("modify", dn, self.op().modify(&target.wire, vec![m]).await) {
                        Ok(()) => self.writes += 1,
                        Err(AdError::Ldap {
                            code: NO_SUCH_ATTRIBUTE,
                            ..
                        }) if change.after.is_empty() => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Adds or removes member values in chunks with the permissive-modify control; a chunk
    /// the server refuses is retried value by value, and refused values are reported.
    async fn change_members(
        &mut self,
        target: &Target,
        members: &[Arc<str>],
        direction: Direction,
    ) -> Result<Vec<crate::MemberError>, AdError> {
        let mut refused = Vec::new();
        for chunk in members.chunks(CHUNK) {
            match self.member_modify(target, chunk, direction).await {
                Ok(()) => {}
                Err(AdError::Ldap { code, .. })
                    if direction.is_idempotent_result(code) && chunk.len() == 1 => {}
                Err(AdError::Ldap { code, .. })
                    if is_value_refusal(code)
                        && (code != NO_SUCH_OBJECT || self.exists(&target.wire).await?) =>
                {
                    for value in chunk {
                        match self
                            .member_modify(target, std::slice::from_ref(value), direction)
                            .await
                        {
                            Ok(()) => {}
                            Err(AdError::Ldap { code, .. })
                                if direction.is_idempotent_result(code) => {}
                            Err(AdError::Ldap { code, message, .. }) if is_value_refusal(code) => {
                                refused.push(crate::MemberError {
                                    member: value.to_string(),
                                    code,
                                    message,
                                });
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(refused)
    }

    async fn member_modify(
        &mut self,
        target: &Target,
        values: &[Arc<str>],
        direction: Direction,
    ) -> Result<(), AdError> {
        let set: HashSet<String> = values.iter().map(|v| v.to_string()).collect();
        let m = match direction {
            Direction::Add => Mod::Add("member".to_string(), set),
            Direction::Remove => Mod::Delete("member".to_string(), set),
        };
        let timeout = self.timeout;
        let result = if self.permissive_modify {
            let control = RawControl {
                ctype: PERMISSIVE_MODIFY.to_string(),
                crit: false,
                val: None,
            };
            self.ldap
                .with_timeout(timeout)
                .with_controls(control)
                .modify(&target.wire, vec![m])
                .await
        } else {
            self.ldap
                .with_timeout(timeout)
                .modify(&target.wire, vec![m])
                .await
        };
        check(direction.operation(), &target.dn, result)?;
        self.writes += 1;
        Ok(())
    }
}

/// The parent in `new_dn` = `new_rdn,parent`.
fn parent_of(new_dn: &str, new_rdn: &str) -> Option<String> {
    new_dn
        .strip_prefix(new_rdn)
        .and_then(|rest| rest.strip_prefix(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
}

/// Where a write goes on the wire, and the DN that messages show.
struct Target {
    wire: String,
    dn: String,
}

impl Target {
    /// An existing object, by objectGUID.
    fn guid(guid: &str, dn: &str) -> Target {
        Target {
            wire: format!("<GUID={guid}>"),
            dn: dn.to_string(),
        }
    }
    /// An object addressed by its DN (only one this export just created).
    fn dn(dn: &str) -> Target {
        Target {
            wire: dn.to_string(),
            dn: dn.to_string(),
        }
    }
}

/// Member-value codes that may come from a bad inline member of an add.
fn is_member_value_code(code: u32) -> bool {
    matches!(
        code,
        NO_SUCH_OBJECT | INVALID_DN_SYNTAX | INVALID_SYNTAX | CONSTRAINT_VIOLATION | UNWILLING
    )
}

fn check(
    operation: &str,
    dn: &str,
    result: ldap3::result::Result<ldap3::LdapResult>,
) -> Result<(), AdError> {
    let result = result.map_err(|e| AdError::from_ldap(operation, dn, e))?;
    if result.rc == 0 {
        Ok(())
    } else {
        Err(AdError::from_result(operation, dn, result))
    }
}
