//! Permissions of AD objects: the binary self-relative SECURITY_DESCRIPTOR of
//! `nTSecurityDescriptor` ([MS-DTYP] 2.4.6) parsed into typed ACLs and ACEs and serialised
//! back, read and replaced DACL-only with the SD-flags control, and SDDL for the ACEs shown.
//!
//! Only what a grant needs is typed: allow/deny ACEs, plain (0x00/0x01) and object
//! (0x05/0x06). Every other ACE (audit, callback, …) is kept byte for byte, so a DACL read
//! and written back loses nothing.

use crate::values::{escape_text, first_binary, first_text};
use crate::{AdConnector, AdError, BindName};
use ldap3::controls::RawControl;
use ldap3::{Mod, Scope};
use std::collections::HashSet;
use std::fmt;
use uuid::Uuid;

/// LDAP_SERVER_SD_FLAGS_OID ([MS-ADTS] 3.1.1.3.4.1.11): which parts of a security
/// descriptor a search returns or a modify replaces.
pub const SD_FLAGS_OID: &str = "1.2.840.113556.1.4.801";
/// DACL_SECURITY_INFORMATION: the DACL only — owner, group and SACL are neither read
/// (no SeSecurityPrivilege needed) nor written.
pub const DACL_SECURITY_INFORMATION: u8 = 0x04;

/// schemaIDGUID of the `group` class (the same in every AD forest).
pub const GROUP_CLASS: Uuid = Uuid::from_u128(0xbf967a9c_0de6_11d0_a285_00aa003049e2);

/// Access mask bits of directory objects ([MS-ADTS] 5.1.3.2, ADS_RIGHTS_ENUM).
pub mod rights {
    pub const CREATE_CHILD: u32 = 0x0000_0001;
    pub const DELETE_CHILD: u32 = 0x0000_0002;
    pub const LIST_CHILDREN: u32 = 0x0000_0004;
    pub const SELF_WRITE: u32 = 0x0000_0008;
    pub const READ_PROPERTY: u32 = 0x0000_0010;
    pub const WRITE_PROPERTY: u32 = 0x0000_0020;
    pub const DELETE_TREE: u32 = 0x0000_0040;
    pub const LIST_OBJECT: u32 = 0x0000_0080;
    pub const CONTROL_ACCESS: u32 = 0x0000_0100;
    pub const DELETE: u32 = 0x0001_0000;
    pub const READ_CONTROL: u32 = 0x0002_0000;
    pub const WRITE_DAC: u32 = 0x0004_0000;
    pub const WRITE_OWNER: u32 = 0x0008_0000;
    pub const GENERIC_ALL: u32 = 0x1000_0000;
    pub const GENERIC_EXECUTE: u32 = 0x2000_0000;
    pub const GENERIC_WRITE: u32 = 0x4000_0000;
    pub const GENERIC_READ: u32 = 0x8000_0000;
}

/// ACE header flags ([MS-DTYP] 2.4.4.1).
pub mod ace_flags {
    pub const OBJECT_INHERIT: u8 = 0x01;
    pub const CONTAINER_INHERIT: u8 = 0x02;
    pub const NO_PROPAGATE_INHERIT: u8 = 0x04;
    pub const INHERIT_ONLY: u8 = 0x08;
    pub const INHERITED: u8 = 0x10;
    pub const SUCCESSFUL_ACCESS: u8 = 0x40;
    pub const FAILED_ACCESS: u8 = 0x80;
}

const SE_DACL_PRESENT: u16 = 0x0004;
const SE_SACL_PRESENT: u16 = 0x0010;
const SE_SELF_RELATIVE: u16 = 0x8000;

const ACCESS_ALLOWED: u8 = 0x00;
const ACCESS_DENIED: u8 = 0x01;
const ACCESS_ALLOWED_OBJECT: u8 = 0x05;
const ACCESS_DENIED_OBJECT: u8 = 0x06;
const OBJECT_TYPE_PRESENT: u32 = 0x1;
const INHERITED_OBJECT_TYPE_PRESENT: u32 = 0x2;

/// ACL_REVISION_DS: the ACL revision that allows object ACEs.
const ACL_REVISION_DS: u8 = 4;

/// Bytes that are not a well-formed security descriptor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed security descriptor: {0}")]
pub struct AclError(String);

fn malformed(what: impl Into<String>) -> AclError {
    AclError(what.into())
}

/// Little-endian reads that fail instead of panicking on short input.
struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&self, at: usize, n: usize) -> Result<&'a [u8], AclError> {
        at.checked_add(n)
            .and_then(|end| self.bytes.get(at..end))
            .ok_or_else(|| {
                malformed(format!(
                    "{}: {n} bytes at offset {at} past the end ({} bytes)",
                    self.what,
                    self.bytes.len()
                ))
            })
    }
    fn u8(&self, at: usize) -> Result<u8, AclError> {
        Ok(self.take(at, 1)?[0])
    }
    fn u16(&self, at: usize) -> Result<u16, AclError> {
        let b = self.take(at, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&self, at: usize) -> Result<u32, AclError> {
        let b = self.take(at, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn guid(&self, at: usize) -> Result<Uuid, AclError> {
        // GUIDs on the wire: first three fields little-endian, the last eight bytes as is.
        Uuid::from_slice_le(self.take(at, 16)?).map_err(|e| malformed(e.to_string()))
    }
}

/// A security identifier (`S-1-5-21-…`), [MS-DTYP] 2.4.2.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid {
    pub revision: u8,
    pub authority: [u8; 6],
    pub sub_authorities: Vec<u32>,
}

impl Sid {
    /// The SID at the start of `bytes`, and its length.
    fn read(bytes: &[u8]) -> Result<(Sid, usize), AclError> {
        let r = Reader { bytes, what: "SID" };
        let revision = r.u8(0)?;
        let count = usize::from(r.u8(1)?);
        if revision != 1 || count > 15 {
            return Err(malformed(format!(
                "SID revision {revision} with {count} sub-authorities"
            )));
        }
        let mut authority = [0u8; 6];
        authority.copy_from_slice(r.take(2, 6)?);
        let sub_authorities = (0..count)
            .map(|i| r.u32(8 + 4 * i))
            .collect::<Result<_, _>>()?;
        Ok((
            Sid {
                revision,
                authority,
                sub_authorities,
            },
            8 + 4 * count,
        ))
    }

    /// A binary SID (e.g. an `objectSid` value) that must be exactly one SID.
    pub fn from_bytes(bytes: &[u8]) -> Result<Sid, AclError> {
        let (sid, len) = Sid::read(bytes)?;
        if len != bytes.len() {
            return Err(malformed(format!(
                "SID of {len} bytes followed by {} more",
                bytes.len() - len
            )));
        }
        Ok(sid)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        self.write(&mut out);
        out
    }

    fn len(&self) -> usize {
        8 + 4 * self.sub_authorities.len()
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.push(self.revision);
        out.push(self.sub_authorities.len() as u8);
        out.extend_from_slice(&self.authority);
        for s in &self.sub_authorities {
            out.extend_from_slice(&s.to_le_bytes());
        }
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let authority = self
            .authority
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        write!(f, "S-{}-{authority}", self.revision)?;
        for s in &self.sub_authorities {
            write!(f, "-{s}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Sid {
    type Err = AclError;
    fn from_str(text: &str) -> Result<Sid, AclError> {
        let bytes = crate::values::sid_bytes(text)
            .ok_or_else(|| malformed(format!("{text:?} is not a SID")))?;
        Sid::from_bytes(&bytes)
    }
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AceKind {
    Allow,
    Deny,
}

/// The two GUIDs of an object ACE: which property, property set, extended right or child
/// class the rights are about (`object_type`), and which class of descendant inherits the
/// ACE (`inherited_object_type`). Either may be absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ObjectTypes {
    pub object_type: Option<Uuid>,
    pub inherited_object_type: Option<Uuid>,
}

/// An allow or deny ACE: ACCESS_ALLOWED / ACCESS_DENIED (`object` = None) or
/// ACCESS_ALLOWED_OBJECT / ACCESS_DENIED_OBJECT (`object` = Some).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccessAce {
    pub kind: AceKind,
    /// ACE header flags ([`ace_flags`]).
    pub flags: u8,
    /// Access mask ([`rights`]).
    pub mask: u32,
    pub object: Option<ObjectTypes>,
    pub sid: Sid,
}

/// One ACE of an ACL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ace {
    Access(AccessAce),
    /// Any other ACE (audit, alarm, callback, …, or one whose size has slack): kept as read.
    Other {
        ace_type: u8,
        flags: u8,
        body: Vec<u8>,
    },
}

impl Ace {
    pub fn flags(&self) -> u8 {
        match self {
            Ace::Access(a) => a.flags,
            Ace::Other { flags, .. } => *flags,
        }
    }

    /// Inherited from a parent (not set on this object itself).
    pub fn is_inherited(&self) -> bool {
        self.flags() & ace_flags::INHERITED != 0
    }

    fn is_explicit_deny(&self) -> bool {
        matches!(self, Ace::Access(a) if a.kind == AceKind::Deny) && !self.is_inherited()
    }

    /// The ACE at the start of `bytes`, and its size.
    fn read(bytes: &[u8]) -> Result<(Ace, usize), AclError> {
        let r = Reader { bytes, what: "ACE" };
        let ace_type = r.u8(0)?;
        let flags = r.u8(1)?;
        let size = usize::from(r.u16(2)?);
        if size < 4 || size % 4 != 0 {
            return Err(malformed(format!("ACE size {size}")));
        }
        let body = r.take(4, size - 4)?;
        let typed = match ace_type {
            ACCESS_ALLOWED | ACCESS_DENIED => Self::read_access(ace_type, flags, body).ok(),
            ACCESS_ALLOWED_OBJECT | ACCESS_DENIED_OBJECT => {
                Self::read_object(ace_type, flags, body).ok()
            }
            _ => None,
        };
        // An ACE is typed only when re-serialising it gives the same bytes; otherwise it is
        // carried as read.
        let ace = match typed {
            Some(a) if a.size() == size => Ace::Access(a),
            _ => Ace::Other {
                ace_type,
                flags,
                body: body.to_vec(),
            },
        };
        Ok((ace, size))
    }

    fn read_access(ace_type: u8, flags: u8, body: &[u8]) -> Result<AccessAce, AclError> {
        let r = Reader {
            bytes: body,
            what: "ACE",
        };
        let mask = r.u32(0)?;
        let sid = Sid::from_bytes(r.take(4, body.len().saturating_sub(4))?)?;
        Ok(AccessAce {
            kind: if ace_type == ACCESS_ALLOWED {
                AceKind::Allow
            } else {
                AceKind::Deny
            },
            flags,
            mask,
            object: None,
            sid,
        })
    }

    fn read_object(ace_type: u8, flags: u8, body: &[u8]) -> Result<AccessAce, AclError> {
        let r = Reader {
            bytes: body,
            what: "object ACE",
        };
        let mask = r.u32(0)?;
        let present = r.u32(4)?;
        if present & !(OBJECT_TYPE_PRESENT | INHERITED_OBJECT_TYPE_PRESENT) != 0 {
            return Err(malformed(format!("object ACE flags {present:#x}")));
        }
        let mut at = 8;
        let mut guid = |bit: u32| -> Result<Option<Uuid>, AclError> {
            if present & bit == 0 {
                return Ok(None);
            }
            let g = r.guid(at)?;
            at += 16;
            Ok(Some(g))
        };
        let object_type = guid(OBJECT_TYPE_PRESENT)?;
        let inherited_object_type = guid(INHERITED_OBJECT_TYPE_PRESENT)?;
        let sid = Sid::from_bytes(r.take(at, body.len().saturating_sub(at))?)?;
        Ok(AccessAce {
            kind: if ace_type == ACCESS_ALLOWED_OBJECT {
                AceKind::Allow
            } else {
                AceKind::Deny
            },
            flags,
            mask,
            object: Some(ObjectTypes {
                object_type,
                inherited_object_type,
            }),
            sid,
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Ace::Access(a) => a.write(out),
            Ace::Other {
                ace_type,
                flags,
                body,
            } => {
                out.push(*ace_type);
                out.push(*flags);
                out.extend_from_slice(&((body.len() + 4) as u16).to_le_bytes());
                out.extend_from_slice(body);
            }
        }
    }

    fn size(&self) -> usize {
        match self {
            Ace::Access(a) => a.size(),
            Ace::Other { body, .. } => 4 + body.len(),
        }
    }
}

impl AccessAce {
    fn ace_type(&self) -> u8 {
        match (self.kind, self.object.is_some()) {
            (AceKind::Allow, false) => ACCESS_ALLOWED,
            (AceKind::Deny, false) => ACCESS_DENIED,
            (AceKind::Allow, true) => ACCESS_ALLOWED_OBJECT,
            (AceKind::Deny, true) => ACCESS_DENIED_OBJECT,
        }
    }

    fn size(&self) -> usize {
        let guids = self.object.map_or(0, |o| {
            4 + 16
                * (usize::from(o.object_type.is_some())
                    + usize::from(o.inherited_object_type.is_some()))
        });
        4 + 4 + guids + self.sid.len()
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.push(self.ace_type());
        out.push(self.flags);
        out.extend_from_slice(&(self.size() as u16).to_le_bytes());
        out.extend_from_slice(&self.mask.to_le_bytes());
        if let Some(o) = self.object {
            let present = if o.object_type.is_some() {
                OBJECT_TYPE_PRESENT
            } else {
                0
            } | if o.inherited_object_type.is_some() {
                INHERITED_OBJECT_TYPE_PRESENT
            } else {
                0
            };
            out.extend_from_slice(&present.to_le_bytes());
            for g in [o.object_type, o.inherited_object_type]
                .into_iter()
                .flatten()
            {
                out.extend_from_slice(&g.to_bytes_le());
            }
        }
        self.sid.write(out);
    }

    /// Whether this ACE gives at least what `wanted` gives, in the same way: same kind,
    /// flags, object types and SID, and a mask that includes `wanted`'s.
    pub fn covers(&self, wanted: &AccessAce) -> bool {
        self.kind == wanted.kind
            && self.flags == wanted.flags
            && self.object == wanted.object
            && self.sid == wanted.sid
            && self.mask & wanted.mask == wanted.mask
    }

    /// The ACE in SDDL ([MS-DTYP] 2.5.1), SID in its `S-1-…` form:
    /// `(OA;CIIO;RPWP;;bf967a9c-0de6-11d0-a285-00aa003049e2;S-1-5-21-…)`.
    pub fn sddl(&self) -> String {
        let kind = match (self.kind, self.object.is_some()) {
            (AceKind::Allow, false) => "A",
            (AceKind::Deny, false) => "D",
            (AceKind::Allow, true) => "OA",
            (AceKind::Deny, true) => "OD",
        };
        let guid = |g: Option<Uuid>| g.map(|g| g.hyphenated().to_string()).unwrap_or_default();
        let (object, inherited) = self.object.map_or((String::new(), String::new()), |o| {
            (guid(o.object_type), guid(o.inherited_object_type))
        });
        format!(
            "({kind};{};{};{object};{inherited};{})",
            sddl_flags(self.flags),
            sddl_rights(self.mask),
            self.sid
        )
    }
}

impl fmt::Display for AccessAce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.sddl())
    }
}

fn sddl_flags(flags: u8) -> String {
    const NAMES: [(u8, &str); 7] = [
        (ace_flags::OBJECT_INHERIT, "OI"),
        (ace_flags::CONTAINER_INHERIT, "CI"),
        (ace_flags::NO_PROPAGATE_INHERIT, "NP"),
        (ace_flags::INHERIT_ONLY, "IO"),
        (ace_flags::INHERITED, "ID"),
        (ace_flags::SUCCESSFUL_ACCESS, "SA"),
        (ace_flags::FAILED_ACCESS, "FA"),
    ];
    // Windows writes the flags in this order (CI before IO: "CIIO").
    let order = [1usize, 0, 2, 3, 4, 5, 6];
    order
        .iter()
        .filter(|&&i| flags & NAMES[i].0 != 0)
        .map(|&i| NAMES[i].1)
        .collect()
}

fn sddl_rights(mask: u32) -> String {
    use rights::*;
    // The SDDL right codes of directory objects, in the order Samba and Windows print them.
    const NAMES: [(u32, &str); 17] = [
        (GENERIC_ALL, "GA"),
        (GENERIC_READ, "GR"),
        (GENERIC_WRITE, "GW"),
        (GENERIC_EXECUTE, "GX"),
        (READ_PROPERTY, "RP"),
        (WRITE_PROPERTY, "WP"),
        (CONTROL_ACCESS, "CR"),
        (CREATE_CHILD, "CC"),
        (DELETE_CHILD, "DC"),
        (LIST_CHILDREN, "LC"),
        (LIST_OBJECT, "LO"),
        (READ_CONTROL, "RC"),
        (WRITE_OWNER, "WO"),
        (WRITE_DAC, "WD"),
        (DELETE, "SD"),
        (DELETE_TREE, "DT"),
        (SELF_WRITE, "SW"),
    ];
    let named = NAMES.iter().fold(0, |acc, (bit, _)| acc | bit);
    if mask & !named != 0 {
        // A bit without a code: SDDL writes the whole mask as a number.
        return format!("{mask:#x}");
    }
    NAMES
        .iter()
        .filter(|(bit, _)| mask & bit != 0)
        .map(|(_, name)| *name)
        .collect()
}

/// An access control list ([MS-DTYP] 2.4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    pub revision: u8,
    pub aces: Vec<Ace>,
}

impl Acl {
    fn read(bytes: &[u8]) -> Result<Acl, AclError> {
        let r = Reader { bytes, what: "ACL" };
        let revision = r.u8(0)?;
        let size = usize::from(r.u16(2)?);
        let count = usize::from(r.u16(4)?);
        let body = r.take(0, size)?;
        if size < 8 {
            return Err(malformed(format!("ACL size {size}")));
        }
        let mut aces = Vec::with_capacity(count);
        let mut at = 8;
        for i in 0..count {
            let rest = body.get(at..).unwrap_or_default();
            let (ace, len) =
                Ace::read(rest).map_err(|e| malformed(format!("ACE {i} of {count}: {}", e.0)))?;
            aces.push(ace);
            at += len;
        }
        Ok(Acl { revision, aces })
    }

    fn size(&self) -> usize {
        8 + self.aces.iter().map(Ace::size).sum::<usize>()
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.push(self.revision);
        out.push(0);
        out.extend_from_slice(&(self.size() as u16).to_le_bytes());
        out.extend_from_slice(&(self.aces.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        for ace in &self.aces {
            ace.write(out);
        }
    }

    /// Whether an explicit ACE of this ACL already gives what `wanted` gives.
    pub fn grants(&self, wanted: &AccessAce) -> bool {
        self.aces.iter().any(|a| match a {
            Ace::Access(a) => a.flags & ace_flags::INHERITED == 0 && a.covers(wanted),
            Ace::Other { .. } => false,
        })
    }

    /// Adds an explicit ACE where canonical order puts it: explicit denies first, then
    /// explicit allows, then inherited ACEs. An allow goes after the last explicit ACE,
    /// a deny after the last explicit deny.
    pub fn insert_canonical(&mut self, ace: AccessAce) {
        let at = match ace.kind {
            AceKind::Deny => self
                .aces
                .iter()
                .position(|a| !a.is_explicit_deny())
                .unwrap_or(self.aces.len()),
            AceKind::Allow => self
                .aces
                .iter()
                .position(Ace::is_inherited)
                .unwrap_or(self.aces.len()),
        };
        if ace.object.is_some() {
            self.revision = self.revision.max(ACL_REVISION_DS);
        }
        self.aces.insert(at, Ace::Access(ace));
    }
}

/// The parts of a security descriptor, in the order their bytes follow the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    Owner,
    Group,
    Sacl,
    Dacl,
}

/// A self-relative security descriptor ([MS-DTYP] 2.4.6), as `nTSecurityDescriptor` holds it.
/// A part the server did not return (e.g. all but the DACL under the SD-flags control) is
/// `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityDescriptor {
    pub revision: u8,
    /// The resource-manager control byte (Sbz1).
    pub rm_control: u8,
    /// SECURITY_DESCRIPTOR_CONTROL flags (SE_DACL_PRESENT, SE_DACL_PROTECTED, …).
    pub control: u16,
    pub owner: Option<Sid>,
    pub group: Option<Sid>,
    pub sacl: Option<Acl>,
    pub dacl: Option<Acl>,
    /// The order the parts were found in, kept when serialising.
    layout: Vec<Part>,
}

impl SecurityDescriptor {
    /// An empty descriptor with an empty DACL.
    pub fn with_dacl(aces: Vec<Ace>) -> SecurityDescriptor {
        SecurityDescriptor {
            revision: 1,
            rm_control: 0,
            control: SE_SELF_RELATIVE | SE_DACL_PRESENT,
            owner: None,
            group: None,
            sacl: None,
            dacl: Some(Acl {
                revision: ACL_REVISION_DS,
                aces,
            }),
            layout: vec![Part::Dacl],
        }
    }

    /// Parses a self-relative security descriptor. Never panics on any input.
    pub fn parse(bytes: &[u8]) -> Result<SecurityDescriptor, AclError> {
        let r = Reader {
            bytes,
            what: "security descriptor",
        };
        let revision = r.u8(0)?;
        if revision != 1 {
            return Err(malformed(format!("revision {revision}")));
        }
        let rm_control = r.u8(1)?;
        let control = r.u16(2)?;
        if control & SE_SELF_RELATIVE == 0 {
            return Err(malformed("not self-relative"));
        }
        let offset = |at: usize| -> Result<usize, AclError> { Ok(r.u32(at)? as usize) };
        let (owner_at, group_at, sacl_at, dacl_at) =
            (offset(4)?, offset(8)?, offset(12)?, offset(16)?);
        let part = |at: usize| -> Result<&[u8], AclError> {
            if at < 20 {
                return Err(malformed(format!("part at offset {at}, inside the header")));
            }
            r.take(at, bytes.len().saturating_sub(at))
        };
        let sid_at = |at: usize| -> Result<Option<Sid>, AclError> {
            if at == 0 {
                return Ok(None);
            }
            Ok(Some(Sid::read(part(at)?)?.0))
        };
        let acl_at = |at: usize, present: u16| -> Result<Option<Acl>, AclError> {
            if at == 0 || control & present == 0 {
                return Ok(None);
            }
            Ok(Some(Acl::read(part(at)?)?))
        };
        let (owner, group) = (sid_at(owner_at)?, sid_at(group_at)?);
        let sacl = acl_at(sacl_at, SE_SACL_PRESENT)?;
        let dacl = acl_at(dacl_at, SE_DACL_PRESENT)?;
        // The layout lists the parts read, in their order: an offset whose part is absent
        // (a SACL offset without SE_SACL_PRESENT) is no part of the descriptor.
        let mut found: Vec<(usize, Part)> = [
            (owner_at, Part::Owner, owner.is_some()),
            (group_at, Part::Group, group.is_some()),
            (sacl_at, Part::Sacl, sacl.is_some()),
            (dacl_at, Part::Dacl, dacl.is_some()),
        ]
        .into_iter()
        .filter(|(_, _, read)| *read)
        .map(|(at, part, _)| (at, part))
        .collect();
        found.sort();
        Ok(SecurityDescriptor {
            revision,
            rm_control,
            control,
            owner,
            group,
            sacl,
            dacl,
            layout: found.into_iter().map(|(_, p)| p).collect(),
        })
    }

    /// The self-relative binary form: the header, then each present part in the order it
    /// was read (new parts last).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut order = self.layout.clone();
        for p in [Part::Owner, Part::Group, Part::Sacl, Part::Dacl] {
            if !order.contains(&p) {
                order.push(p);
            }
        }
        let mut body = Vec::new();
        let mut offsets = [0u32; 4];
        for p in order {
            let at = (20 + body.len()) as u32;
            let wrote = match p {
                Part::Owner => self.owner.as_ref().map(|s| s.write(&mut body)),
                Part::Group => self.group.as_ref().map(|s| s.write(&mut body)),
                Part::Sacl => self.sacl.as_ref().map(|a| a.write(&mut body)),
                Part::Dacl => self.dacl.as_ref().map(|a| a.write(&mut body)),
            };
            if wrote.is_some() {
                offsets[p as usize] = at;
            }
        }
        let mut out = Vec::with_capacity(20 + body.len());
        out.push(self.revision);
        out.push(self.rm_control);
        out.extend_from_slice(&(self.control | SE_SELF_RELATIVE).to_le_bytes());
        for o in offsets {
            out.extend_from_slice(&o.to_le_bytes());
        }
        out.extend_from_slice(&body);
        out
    }
}

/// The ACEs writeback's service account needs on a managed OU — the group-writeback grant
/// of Microsoft's `Set-ADSyncUnifiedGroupWritebackPermissions`, kept to what writeback uses:
/// - create and delete `group` objects in the OU (`(OA;;CCDC;<group>;;SID)`), which also
///   covers moving a group between two managed OUs;
/// - read and write all properties of the `group` objects below it, inherited to them only
///   (`(OA;CIIO;RPWP;;<group>;SID)`): attributes, members, and renames (Write `name` and
///   `cn` are properties too).
pub fn group_writeback_aces(sid: &Sid) -> Vec<AccessAce> {
    vec![
        AccessAce {
            kind: AceKind::Allow,
            flags: 0,
            mask: rights::CREATE_CHILD | rights::DELETE_CHILD,
            object: Some(ObjectTypes {
                object_type: Some(GROUP_CLASS),
                inherited_object_type: None,
            }),
            sid: sid.clone(),
        },
        AccessAce {
            kind: AceKind::Allow,
            flags: ace_flags::CONTAINER_INHERIT | ace_flags::INHERIT_ONLY,
            mask: rights::READ_PROPERTY | rights::WRITE_PROPERTY,
            object: Some(ObjectTypes {
                object_type: None,
                inherited_object_type: Some(GROUP_CLASS),
            }),
            sid: sid.clone(),
        },
    ]
}

/// A security principal found by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub dn: String,
    pub sid: Sid,
}

/// The SD-flags control asking for (or replacing) the DACL only.
fn dacl_only() -> RawControl {
    // SDFlagsRequestValue ::= SEQUENCE { Flags INTEGER }
    RawControl {
        ctype: SD_FLAGS_OID.to_string(),
        crit: true,
        val: Some(vec![0x30, 0x03, 0x02, 0x01, DACL_SECURITY_INFORMATION]),
    }
}

const NO_SUCH_OBJECT: u32 = 32;

impl AdConnector {
    /// The DACL of the object at `dn` (the descriptor as the DC returns it under the SD-flags
    /// control: DACL only); `None` when there is no such object.
    pub async fn read_dacl(&mut self, dn: &str) -> Result<Option<SecurityDescriptor>, AdError> {
        const OPERATION: &str = "read permissions";
        let timeout = self.timeout;
        self.searches += 1;
        let result = self
            .ldap
            .with_timeout(timeout)
            .with_controls(dacl_only())
            .search(
                dn,
                Scope::Base,
                "(objectClass=*)",
                vec!["nTSecurityDescriptor"],
            )
            .await
            .map_err(|e| AdError::from_ldap(OPERATION, dn, e))?;
        let (entries, res) = (result.0, result.1);
        match res.rc {
            0 => {}
            NO_SUCH_OBJECT => return Ok(None),
            _ => return Err(AdError::from_result(OPERATION, dn, res)),
        }
        let Some(entry) = entries
            .into_iter()
            .filter(|e| !e.is_ref())
            .map(ldap3::SearchEntry::construct)
            .next()
        else {
            return Ok(None);
        };
        let value_error = |message: String| AdError::Value {
            operation: OPERATION.into(),
            dn: dn.to_string(),
            attr: "nTSecurityDescriptor".into(),
            message,
        };
        let bytes = first_binary(&entry, "nTSecurityDescriptor").ok_or_else(|| {
            value_error("not returned: the bind account cannot read the permissions".into())
        })?;
        SecurityDescriptor::parse(&bytes)
            .map(Some)
            .map_err(|e| value_error(e.to_string()))
    }

    /// Replaces the DACL of the object at `dn` with `sd`'s: a modify `replace
    /// nTSecurityDescriptor` under the SD-flags control (DACL only), so the owner, group and
    /// SACL stay as they are.
    pub async fn write_dacl(&mut self, dn: &str, sd: &SecurityDescriptor) -> Result<(), AdError> {
        const OPERATION: &str = "write permissions";
        let value = HashSet::from([sd.to_bytes()]);
        let timeout = self.timeout;
        let result = self
            .ldap
            .with_timeout(timeout)
            .with_controls(dacl_only())
            .modify(
                dn,
                vec![Mod::Replace(b"nTSecurityDescriptor".to_vec(), value)],
            )
            .await
            .map_err(|e| AdError::from_ldap(OPERATION, dn, e))?;
        if result.rc != 0 {
            return Err(AdError::from_result(OPERATION, dn, result));
        }
        self.writes += 1;
        Ok(())
    }

    /// The security principals (objects with an objectSid) under the base DN that `account`
    /// names: a DN; a UPN (`userPrincipalName`, else — as AD's bind does — the implicit
    /// `sAMAccountName@<domain DNS name>`); `DOMAIN\name` or a bare `sAMAccountName`.
    /// Empty when none; more than one when the name is ambiguous.
    pub async fn find_principals(&mut self, account: &str) -> Result<Vec<Principal>, AdError> {
        const OPERATION: &str = "find the account";
        let account = account.trim();
        let attrs = ["objectSid"];
        let by =
            |attr: &str, value: &str| format!("(&(objectSid=*)({attr}={}))", escape_text(value));
        let entries = match BindName::parse(account) {
            Some(BindName::Dn(dn)) => self
                .base_entry(dn, "(objectSid=*)", &attrs, OPERATION)
                .await?
                .into_iter()
                .collect(),
            Some(BindName::Upn { user, suffix }) => {
                let found = self
                    .subtree(&by("userPrincipalName", account), &attrs, OPERATION)
                    .await?;
                let implicit =
                    suffix.eq_ignore_ascii_case(&crate::identity::dns_name(&self.base_dn));
                if found.is_empty() && implicit {
                    self.subtree(&by("sAMAccountName", user), &attrs, OPERATION)
                        .await?
                } else {
                    found
                }
            }
            Some(BindName::DownLevel { user, .. }) => {
                self.subtree(&by("sAMAccountName", user), &attrs, OPERATION)
                    .await?
            }
            None if !account.is_empty() && !account.contains(['@', '\\', '=', ',']) => {
                self.subtree(&by("sAMAccountName", account), &attrs, OPERATION)
                    .await?
            }
            None => Vec::new(),
        };
        entries
            .into_iter()
            .map(|e| {
                let bytes = first_binary(&e, "objectSid").unwrap_or_default();
                let sid = Sid::from_bytes(&bytes).map_err(|err| AdError::Value {
                    operation: OPERATION.into(),
                    dn: e.dn.clone(),
                    attr: "objectSid".into(),
                    message: err.to_string(),
                })?;
                Ok(Principal { dn: e.dn, sid })
            })
            .collect()
    }

    /// The object's `uSNChanged`, when it exists.
    pub async fn usn_changed(&mut self, dn: &str) -> Result<Option<u64>, AdError> {
        Ok(self
            .base_entry(dn, "(objectClass=*)", &["uSNChanged"], "read uSNChanged")
            .await?
            .and_then(|e| first_text(&e, "uSNChanged"))
            .and_then(|u| u.parse().ok()))
    }

    async fn subtree(
        &mut self,
        filter: &str,
        attrs: &[&str],
        operation: &str,
    ) -> Result<Vec<ldap3::SearchEntry>, AdError> {
        let base = self.base_dn.clone();
        self.paged_search(&base, Scope::Subtree, filter, attrs, operation)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_offset_without_its_present_flag_is_no_part_of_the_descriptor() {
        // Found by the `ad_values` fuzz target: a SACL offset without SE_SACL_PRESENT was
        // kept in the layout, so the descriptor did not equal itself after a round trip.
        let mut bytes = vec![1u8, 0];
        bytes.extend_from_slice(&SE_SELF_RELATIVE.to_le_bytes());
        for offset in [0u32, 0, 20, 0] {
            bytes.extend_from_slice(&offset.to_le_bytes());
        }
        bytes.extend_from_slice(&[4, 0, 8, 0, 0, 0, 0, 0]);
        let sd = SecurityDescriptor::parse(&bytes).unwrap();
        assert_eq!(sd.sacl, None);
        let again = SecurityDescriptor::parse(&sd.to_bytes()).unwrap();
        assert_eq!(again, sd);
    }

    fn sid(text: &str) -> Sid {
        text.parse().expect("a SID")
    }

    const SVC: &str = "S-1-5-21-918875236-3096034218-2029155553-1104";

    #[test]
    fn the_writeback_aces_in_sddl() {
        let aces = group_writeback_aces(&sid(SVC));
        let sddl: Vec<String> = aces.iter().map(AccessAce::sddl).collect();
        assert_eq!(
            sddl,
            [
                format!("(OA;;CCDC;bf967a9c-0de6-11d0-a285-00aa003049e2;;{SVC})"),
                format!("(OA;CIIO;RPWP;;bf967a9c-0de6-11d0-a285-00aa003049e2;{SVC})"),
            ]
        );
    }

    #[test]
    fn an_object_ace_has_its_documented_binary_form() {
        let ace = &group_writeback_aces(&sid("S-1-5-11"))[1];
        let mut bytes = Vec::new();
        ace.write(&mut bytes);
        let expected: Vec<u8> = [
            // type 0x05, flags CI|IO, size 4+4+4+16+12 = 40
            &[0x05, 0x0a, 40, 0][..],
            // mask RP|WP
            &[0x30, 0, 0, 0],
            // ACE_INHERITED_OBJECT_TYPE_PRESENT
            &[0x02, 0, 0, 0],
            // bf967a9c-0de6-11d0-a285-00aa003049e2, first three fields little-endian
            &[
                0x9c, 0x7a, 0x96, 0xbf, 0xe6, 0x0d, 0xd0, 0x11, 0xa2, 0x85, 0x00, 0xaa, 0x00, 0x30,
                0x49, 0xe2,
            ],
            // S-1-5-11
            &[1, 1, 0, 0, 0, 0, 0, 5, 11, 0, 0, 0],
        ]
        .concat();
        assert_eq!(bytes, expected);
        let (back, len) = Ace::read(&bytes).expect("parses");
        assert_eq!(len, 40);
        assert_eq!(back, Ace::Access(ace.clone()));
    }

    #[test]
    fn a_descriptor_round_trips_and_keeps_its_layout() {
        let mut sd = SecurityDescriptor::with_dacl(vec![Ace::Access(AccessAce {
            kind: AceKind::Allow,
            flags: 0,
            mask: rights::READ_PROPERTY | rights::LIST_CHILDREN | rights::READ_CONTROL,
            object: None,
            sid: sid("S-1-5-11"),
        })]);
        sd.owner = Some(sid("S-1-5-32-544"));
        sd.group = Some(sid("S-1-5-32-544"));
        let bytes = sd.to_bytes();
        let back = SecurityDescriptor::parse(&bytes).expect("parses");
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!(back.owner, sd.owner);
        assert_eq!(back.dacl, sd.dacl);
        // DACL first, then owner and group: as they were laid out.
        assert_eq!(back.layout, vec![Part::Dacl, Part::Owner, Part::Group]);
    }

    #[test]
    fn allows_go_before_inherited_aces_and_denies_first() {
        let s = sid(SVC);
        let inherited = Ace::Access(AccessAce {
            kind: AceKind::Allow,
            flags: ace_flags::INHERITED,
            mask: rights::READ_PROPERTY,
            object: None,
            sid: sid("S-1-5-11"),
        });
        let deny = Ace::Access(AccessAce {
            kind: AceKind::Deny,
            flags: 0,
            mask: rights::DELETE,
            object: None,
            sid: sid("S-1-1-0"),
        });
        let allow = Ace::Access(AccessAce {
            kind: AceKind::Allow,
            flags: 0,
            mask: rights::READ_CONTROL,
            object: None,
            sid: sid("S-1-5-18"),
        });
        let mut acl = Acl {
            revision: 2,
            aces: vec![deny.clone(), allow.clone(), inherited.clone()],
        };
        let [cc, rp] = <[AccessAce; 2]>::try_from(group_writeback_aces(&s)).expect("two");
        acl.insert_canonical(cc.clone());
        acl.insert_canonical(rp.clone());
        assert_eq!(
            acl.aces,
            vec![deny, allow, Ace::Access(cc), Ace::Access(rp), inherited]
        );
        assert_eq!(acl.revision, ACL_REVISION_DS, "object ACEs need revision 4");
    }

    #[test]
    fn an_ace_present_with_more_rights_is_not_added_again() {
        let s = sid(SVC);
        let wanted = group_writeback_aces(&s);
        let mut broader = wanted[1].clone();
        broader.mask |= rights::CONTROL_ACCESS;
        let acl = Acl {
            revision: 4,
            aces: vec![Ace::Access(wanted[0].clone()), Ace::Access(broader)],
        };
        assert!(wanted.iter().all(|w| acl.grants(w)));
        // An inherited copy, another SID, other flags or another object type: not the same.
        let mut inherited = wanted[0].clone();
        inherited.flags |= ace_flags::INHERITED;
        let mut other_sid = wanted[0].clone();
        other_sid.sid = sid("S-1-5-11");
        let mut other_flags = wanted[1].clone();
        other_flags.flags = ace_flags::CONTAINER_INHERIT;
        let mut other_type = wanted[1].clone();
        other_type.object = Some(ObjectTypes::default());
        for ace in [inherited, other_sid, other_flags, other_type] {
            let acl = Acl {
                revision: 4,
                aces: vec![Ace::Access(ace)],
            };
            assert!(
                !acl.grants(&wanted[0]) && !acl.grants(&wanted[1]),
                "{acl:?}"
            );
        }
    }

    #[test]
    fn rights_without_an_sddl_code_are_a_number() {
        assert_eq!(sddl_rights(rights::CREATE_CHILD | 0x0100_0000), "0x1000001");
        assert_eq!(sddl_rights(rights::GENERIC_ALL), "GA");
        assert_eq!(sddl_flags(0x1a), "CIIOID");
    }

    #[test]
    fn truncated_or_lying_descriptors_are_errors() {
        let sd = SecurityDescriptor::with_dacl(
            group_writeback_aces(&sid(SVC))
                .into_iter()
                .map(Ace::Access)
                .collect(),
        );
        let bytes = sd.to_bytes();
        for n in 0..bytes.len() {
            assert!(SecurityDescriptor::parse(&bytes[..n]).is_err(), "{n} bytes");
        }
        let mut lying = bytes.clone();
        lying[16] = 0xff; // DACL offset past the end
        assert!(SecurityDescriptor::parse(&lying).is_err());
    }

    fn arb_sid() -> impl Strategy<Value = Sid> {
        (
            any::<[u8; 6]>(),
            proptest::collection::vec(any::<u32>(), 0..=15),
        )
            .prop_map(|(authority, sub_authorities)| Sid {
                revision: 1,
                authority,
                sub_authorities,
            })
    }

    fn arb_guid() -> impl Strategy<Value = Option<Uuid>> {
        proptest::option::of(any::<u128>().prop_map(Uuid::from_u128))
    }

    fn arb_ace() -> impl Strategy<Value = Ace> {
        let access = (
            any::<bool>(),
            any::<u8>(),
            any::<u32>(),
            proptest::option::of((arb_guid(), arb_guid())),
            arb_sid(),
        )
            .prop_map(|(allow, flags, mask, object, sid)| {
                Ace::Access(AccessAce {
                    kind: if allow { AceKind::Allow } else { AceKind::Deny },
                    flags,
                    mask,
                    object: object.map(|(object_type, inherited_object_type)| ObjectTypes {
                        object_type,
                        inherited_object_type,
                    }),
                    sid,
                })
            });
        let other = (
            (0x02u8..=0x14).prop_filter("not an access ACE", |t| *t != 5 && *t != 6),
            any::<u8>(),
            proptest::collection::vec(any::<[u8; 4]>(), 0..8),
        )
            .prop_map(|(ace_type, flags, words)| Ace::Other {
                ace_type,
                flags,
                body: words.concat(),
            });
        prop_oneof![4 => access, 1 => other]
    }

    fn arb_acl() -> impl Strategy<Value = Acl> {
        (
            prop_oneof![Just(2u8), Just(4u8)],
            proptest::collection::vec(arb_ace(), 0..12),
        )
            .prop_map(|(revision, aces)| Acl { revision, aces })
    }

    proptest! {
        #[test]
        fn generated_descriptors_round_trip(
            owner in proptest::option::of(arb_sid()),
            group in proptest::option::of(arb_sid()),
            sacl in proptest::option::of(arb_acl()),
            dacl in proptest::option::of(arb_acl()),
            rm_control in any::<u8>(),
            protected in any::<bool>(),
        ) {
            let mut control = SE_SELF_RELATIVE | if protected { 0x1000 } else { 0 };
            if dacl.is_some() { control |= SE_DACL_PRESENT; }
            if sacl.is_some() { control |= SE_SACL_PRESENT; }
            let sd = SecurityDescriptor {
                revision: 1, rm_control, control, owner, group, sacl, dacl,
                layout: vec![Part::Owner, Part::Group, Part::Sacl, Part::Dacl],
            };
            let bytes = sd.to_bytes();
            let back = SecurityDescriptor::parse(&bytes).expect("a generated descriptor parses");
            prop_assert_eq!(&back.to_bytes(), &bytes);
            prop_assert_eq!(back.owner, sd.owner);
            prop_assert_eq!(back.group, sd.group);
            prop_assert_eq!(back.sacl, sd.sacl);
            prop_assert_eq!(back.dacl, sd.dacl);
        }

        #[test]
        fn any_bytes_parse_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = SecurityDescriptor::parse(&bytes);
        }
    }
}
