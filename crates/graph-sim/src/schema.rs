//! What Graph knows about users and groups: property names, which are writable, which are
//! read-only, which exist only in `/beta`, and the default property sets of plain reads.

use crate::error::{GraphError, GraphResult};
use serde_json::{Map, Value};

/// The API version a request came in on; `writebackConfiguration` exists only in beta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    V1,
    Beta,
}

impl ApiVersion {
    pub fn parse(segment: &str) -> Option<Self> {
        match segment {
            "v1.0" => Some(ApiVersion::V1),
            "beta" => Some(ApiVersion::Beta),
            _ => None,
        }
    }

    pub fn segment(self) -> &'static str {
        match self {
            ApiVersion::V1 => "v1.0",
            ApiVersion::Beta => "beta",
        }
    }
}

/// The kind of a directory object, and so its `@odata.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ObjectKind {
    User,
    Group,
    Device,
    OrgContact,
    ServicePrincipal,
}

impl ObjectKind {
    pub fn odata_type(self) -> &'static str {
        match self {
            ObjectKind::User => "#microsoft.graph.user",
            ObjectKind::Group => "#microsoft.graph.group",
            ObjectKind::Device => "#microsoft.graph.device",
            ObjectKind::OrgContact => "#microsoft.graph.orgContact",
            ObjectKind::ServicePrincipal => "#microsoft.graph.servicePrincipal",
        }
    }

    /// The entity type name used in Graph's error messages (`microsoft.graph.group`).
    pub fn type_name(self) -> &'static str {
        self.odata_type().trim_start_matches('#')
    }
}

const USER_WRITABLE: &[&str] = &[
    "accountEnabled",
    "displayName",
    "givenName",
    "surname",
    "userPrincipalName",
    "mail",
    "mailNickname",
    "jobTitle",
    "department",
    "companyName",
    "officeLocation",
    "mobilePhone",
    "businessPhones",
    "preferredLanguage",
    "usageLocation",
    "userType",
    "otherMails",
    "employeeId",
    "passwordProfile",
    "onPremisesImmutableId",
];

const USER_READ_ONLY: &[&str] = &[
    "id",
    "createdDateTime",
    "deletedDateTime",
    "proxyAddresses",
    "onPremisesSyncEnabled",
    "onPremisesSecurityIdentifier",
    "onPremisesDistinguishedName",
    "onPremisesSamAccountName",
    "onPremisesDomainName",
    "onPremisesUserPrincipalName",
    "onPremisesLastSyncDateTime",
];

/// Read-only user properties that `POST /users` accepts anyway: the seeding extension.
pub const USER_SEEDABLE: &[&str] = &[
    "onPremisesSyncEnabled",
    "onPremisesSecurityIdentifier",
    "onPremisesDistinguishedName",
    "onPremisesSamAccountName",
    "onPremisesDomainName",
    "onPremisesUserPrincipalName",
];

/// Properties `GET /users` returns when no `$select` is given (Graph's documented default set).
pub const USER_DEFAULT: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];

const GROUP_WRITABLE: &[&str] = &[
    "displayName",
    "description",
    "mailEnabled",
    "mailNickname",
    "securityEnabled",
    "groupTypes",
    "membershipRule",
    "membershipRuleProcessingState",
    "visibility",
    "classification",
    "isAssignableToRole",
];

const GROUP_READ_ONLY: &[&str] = &[
    "id",
    "mail",
    "proxyAddresses",
    "createdDateTime",
    "deletedDateTime",
    "renewedDateTime",
    "securityIdentifier",
    "onPremisesSyncEnabled",
    "onPremisesSecurityIdentifier",
    "onPremisesSamAccountName",
    "onPremisesDomainName",
    "onPremisesNetBiosName",
    "onPremisesLastSyncDateTime",
    "resourceProvisioningOptions",
];

/// Read-only group properties that `POST /groups` accepts anyway ("group synced from AD").
pub const GROUP_SEEDABLE: &[&str] = &["onPremisesSyncEnabled", "onPremisesSecurityIdentifier"];

pub const WRITEBACK: &str = "writebackConfiguration";

/// Device properties (Graph's `device` resource type), the ones a client may set.
const DEVICE_WRITABLE: &[&str] = &[
    "accountEnabled",
    "alternativeSecurityIds",
    "deviceId",
    "displayName",
    "operatingSystem",
    "operatingSystemVersion",
];

const DEVICE_READ_ONLY: &[&str] = &[
    "id",
    "deletedDateTime",
    "createdDateTime",
    "approximateLastSignInDateTime",
    "isCompliant",
    "isManaged",
    "trustType",
    "profileType",
    "onPremisesSyncEnabled",
    "onPremisesSecurityIdentifier",
    "onPremisesLastSyncDateTime",
];

/// Read-only device properties that `POST /devices` accepts anyway (the seeding
/// extension: a device synced from AD, e.g. hybrid-joined).
pub const DEVICE_SEEDABLE: &[&str] = &[
    "onPremisesSyncEnabled",
    "onPremisesSecurityIdentifier",
    "onPremisesLastSyncDateTime",
    "trustType",
];

const ON_PREM_GROUP_TYPES: &[&str] = &[
    "universalDistributionGroup",
    "universalSecurityGroup",
    "universalMailEnabledSecurityGroup",
];

/// Whether `name` is a (structural) property of `kind` in `version`.
pub fn is_property(kind: ObjectKind, version: ApiVersion, name: &str) -> bool {
    match kind {
        ObjectKind::User => USER_WRITABLE.contains(&name) || USER_READ_ONLY.contains(&name),
        ObjectKind::Group => {
            GROUP_WRITABLE.contains(&name)
                || GROUP_READ_ONLY.contains(&name)
                || (name == WRITEBACK && version == ApiVersion::Beta)
        }
        ObjectKind::Device => DEVICE_WRITABLE.contains(&name) || DEVICE_READ_ONLY.contains(&name),
        _ => matches!(name, "id" | "displayName" | "deletedDateTime"),
    }
}

/// Checks a `$select` list against the type; `navigations` are extra names allowed here
/// (`members` on group delta).
pub fn check_select(
    kind: ObjectKind,
    version: ApiVersion,
    select: &[String],
    navigations: &[&str],
) -> GraphResult<()> {
    for name in select {
        if !is_property(kind, version, name) && !navigations.contains(&name.as_str()) {
            return Err(GraphError::unknown_select(name, kind.type_name()));
        }
    }
    Ok(())
}

/// Whether a write is a create (POST) or an update (PATCH): the seeding extension is for
/// POST, and for PATCH only with the `X-Graph-Sim-Seed: true` header (`Seed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    Create,
    Update,
    Seed,
}

/// Checks a POST/PATCH body of a user or group as Graph does: unknown properties and
/// read-only properties are refused, `writebackConfiguration` is validated.
pub fn check_write(
    kind: ObjectKind,
    version: ApiVersion,
    mode: WriteMode,
    body: &Map<String, Value>,
) -> GraphResult<()> {
    let (writable, read_only, seedable) = match kind {
        ObjectKind::User => (USER_WRITABLE, USER_READ_ONLY, USER_SEEDABLE),
        ObjectKind::Device => (DEVICE_WRITABLE, DEVICE_READ_ONLY, DEVICE_SEEDABLE),
        _ => (GROUP_WRITABLE, GROUP_READ_ONLY, GROUP_SEEDABLE),
    };
    for (name, value) in body {
        if writable.contains(&name.as_str()) {
            continue;
        }
        if kind == ObjectKind::Group && version == ApiVersion::Beta && name == WRITEBACK {
            check_writeback(value)?;
            continue;
        }
        if kind == ObjectKind::Group
            && mode == WriteMode::Create
            && (name == "members@odata.bind" || name == "owners@odata.bind")
        {
            continue;
        }
        if mode != WriteMode::Update && seedable.contains(&name.as_str()) {
            continue;
        }
        if read_only.contains(&name.as_str()) {
            return Err(GraphError::read_only(name));
        }
        return Err(GraphError::unknown_property(name, kind.type_name()));
    }
    Ok(())
}

fn check_writeback(value: &Value) -> GraphResult<()> {
    let Some(obj) = value.as_object() else {
        return Err(GraphError::bad_request(
            "Invalid value specified for property 'writebackConfiguration' of resource 'Group'.",
        ));
    };
    for (name, v) in obj {
        match name.as_str() {
            "isEnabled" if v.is_boolean() || v.is_null() => {}
            "onPremisesGroupType"
                if v.is_null() || v.as_str().is_some_and(|t| ON_PREM_GROUP_TYPES.contains(&t)) => {}
            "isEnabled" | "onPremisesGroupType" => {
                return Err(GraphError::bad_request(format!(
                    "Invalid value specified for property '{name}' of resource 'GroupWritebackConfiguration'."
                )))
            }
            "@odata.type" => {}
            other => return Err(GraphError::unknown_property(other, "microsoft.graph.groupWritebackConfiguration")),
        }
    }
    Ok(())
}

/// Properties a create request must carry (Graph's documented required set).
pub fn required_on_create(kind: ObjectKind) -> &'static [&'static str] {
    match kind {
        ObjectKind::Device => &[
            "accountEnabled",
            "alternativeSecurityIds",
            "deviceId",
            "displayName",
            "operatingSystem",
            "operatingSystemVersion",
        ],
        ObjectKind::User => &[
            "accountEnabled",
            "displayName",
            "mailNickname",
            "passwordProfile",
            "userPrincipalName",
        ],
        _ => &[
            "displayName",
            "mailEnabled",
            "mailNickname",
            "securityEnabled",
        ],
    }
}

/// The `writebackConfiguration` Graph shows for a group that never had one set.
pub fn default_writeback() -> Value {
    serde_json::json!({"isEnabled": null, "onPremisesGroupType": null})
}

/// Whether a stored group is a Microsoft 365 group (`groupTypes` contains `Unified`).
pub fn is_unified(props: &Map<String, Value>) -> bool {
    has_group_type(props, "Unified")
}

pub fn has_group_type(props: &Map<String, Value>, wanted: &str) -> bool {
    props
        .get("groupTypes")
        .and_then(Value::as_array)
        .is_some_and(|types| types.iter().any(|t| t.as_str() == Some(wanted)))
}
