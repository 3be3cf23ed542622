//! The AD image kept between cycles: every group of the managed OUs (and the joined ones
//! outside them) with its members, and the member-resolution cache. After one full read, a
//! cycle reads only what changed — objects whose `uSNChanged` is above the USN the image
//! reflects, and the objects deleted since — so its cost follows the change, not the
//! directory. Another DC, a restored DC (invocationId), a USN that went backwards, a
//! configuration that changes what the image covers, or a full round: read everything.

use crate::config::Config;
use crate::cycle::CycleError;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use tracing::{debug, info};
use wb_ad::{AdConnector, ChangedObject, DcState};
use wb_engine::naming::{dn_key, is_at_or_under, is_under};
use wb_model::{AdClass, AdGroup, AdSchema, AdSnapshot, CloudSnapshot, GroupAttr, Joins, Lookup};

/// Above this many changed groups, the managed OUs are read again in one paged search
/// rather than group by group.
const BULK_REREAD: usize = 500;

/// What a stored AD image reflects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMeta {
    pub dc: DcState,
    /// The configuration that decides what the image covers (domain, managed OUs).
    pub scope: String,
    pub schema: AdSchema,
}

/// The AD image of one cycle and what changed in it (to be committed).
pub struct AdImage {
    pub meta: ImageMeta,
    pub snapshot: AdSnapshot,
    pub changes: ImageChanges,
    /// SIDs (upper-case) of the AD groups cloud-managed groups name: read wherever they
    /// are, kept in the image while they are candidates for adoption.
    pub adoption_sids: BTreeSet<String>,
}

/// Rows of the stored image to rewrite.
#[derive(Debug, Default)]
pub struct ImageChanges {
    /// The image was read in full: replace the stored one.
    pub replaced: bool,
    pub groups_upsert: BTreeSet<String>,
    pub groups_remove: BTreeSet<String>,
    pub lookups_upsert: BTreeSet<Lookup>,
    pub lookups_remove: BTreeSet<Lookup>,
    /// How the image was brought up to date, for logs and the run message.
    pub how: String,
}

/// The part of the configuration an image is valid for.
pub fn image_scope(cfg: &Config) -> String {
    let mut ous: Vec<String> = cfg.engine.managed_ous().iter().map(|o| dn_key(o)).collect();
    ous.sort();
    // `v2`: groups carry isCriticalSystemObject / adminCount (images before lack them).
    format!(
        "v2|{}|{}|{}",
        dn_key(&cfg.ad.base_dn),
        cfg.ad.url.to_ascii_lowercase(),
        ous.join(";")
    )
}

/// Every managed OU with the configuration key that names it.
fn managed_ou_keys(cfg: &Config) -> Vec<(String, String)> {
    let mut out = vec![("ad.ou".to_string(), cfg.engine.default_ou.to_string())];
    for (i, rule) in cfg.engine.rules.iter().enumerate() {
        if let Some(ou) = &rule.ou {
            out.push((format!("writeback.rule[{i}].ou"), ou.to_string()));
        }
    }
    out
}

/// The managed OUs to read: an OU nested in another is read once, through its parent.
pub fn read_bases(cfg: &Config) -> Vec<String> {
    let mut ous = cfg.engine.managed_ous();
    ous.sort_by_key(|o| o.len());
    let mut bases: Vec<String> = Vec::new();
    for ou in ous {
        if !bases.iter().any(|r| is_at_or_under(&ou, r)) {
            bases.push(ou);
        }
    }
    bases
}

fn in_managed_ou(cfg: &Config, dn: &str) -> bool {
    cfg.engine.managed_ous().iter().any(|ou| is_under(dn, ou))
}

/// `s` in lower case, copied only when it has upper-case letters (objectGUIDs are kept in
/// lower case: most need no copy).
pub(crate) fn lower(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(s.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// The lookups a cycle needs: all of them, or those the objects it touched can add.
struct Wanted {
    lookups: BTreeSet<Lookup>,
    complete: bool,
}

/// What a delta cycle's import touched (group, user and device ids) and the cloud image
/// before it: the lookups this cycle can add are those of the touched objects (of a group
/// written back before too, its new members).
pub struct Delta<'a> {
    pub before: &'a CloudSnapshot,
    pub ids: [&'a HashSet<String>; 3],
}

/// Brings the image up to date: from `stored` by USN when it can, else by a full read.
/// Every managed OU must exist (a missing one is a configuration error naming its key).
/// `delta`: the only cloud objects changed since the stored image was taken, when the
/// caller knows them — new lookups come from those alone, and lookups no longer needed
/// stay cached until a cycle that looks at everything.
pub async fn refresh(
    ad: &mut AdConnector,
    cfg: &Config,
    cloud: &CloudSnapshot,
    joins: &Joins,
    stored: Option<(ImageMeta, AdSnapshot)>,
    force_full: bool,
    delta: Option<Delta<'_>>,
) -> Result<AdImage, CycleError> {
    for (key, ou) in managed_ou_keys(cfg) {
        if !ad.ou_exists(&ou).await? {
            return Err(crate::config::ConfigError {
                key,
                problem: format!(
                    "the OU {ou} does not exist in AD (create it, or correct the setting); \
                     nothing was written"
                ),
            }
            .into());
        }
    }
    let dc = ad.dc_state().await?;
    let scope = image_scope(cfg);
    let adoption = wb_engine::adoption_sids(cloud, &cfg.engine);
    let usable = stored.filter(|(meta, _)| {
        let ok = !force_full && meta.scope == scope && dc.continues(&meta.dc);
        if !ok && !force_full {
            info!(
                stored_dc = %meta.dc.service, stored_usn = meta.dc.highest_usn,
                dc = %dc.service, usn = dc.highest_usn,
                "the stored AD image does not continue on this DC or configuration: reading AD in full"
            );
        }
        ok
    });
    let mut image = match usable {
        Some((meta, snapshot)) => {
            let wanted = match delta {
                Some(Delta {
                    before,
                    ids: [groups, users, devices],
                }) => Wanted {
                    lookups: wb_engine::lookups_of(
                        cloud,
                        Some(before),
                        &cfg.engine,
                        groups,
                        users,
                        devices,
                    ),
                    complete: false,
                },
                None => Wanted {
                    lookups: wb_engine::lookups(cloud, &cfg.engine),
                    complete: true,
                },
            };
            incremental(ad, cfg, joins, meta, snapshot, dc, &wanted, &adoption).await?
        }
        None => {
            let wanted = wb_engine::lookups(cloud, &cfg.engine);
            full(ad, cfg, joins, dc, scope, &wanted).await?
        }
    };
    read_adoption_candidates(ad, &mut image, &adoption).await?;
    image.adoption_sids = adoption;
    Ok(image)
}

/// Reads the AD groups that cloud-managed groups name by SID and the image lacks, wherever
/// they are in the domain (the engine adopts them in place, or says why not).
async fn read_adoption_candidates(
    ad: &mut AdConnector,
    image: &mut AdImage,
    sids: &BTreeSet<String>,
) -> Result<(), CycleError> {
    let have: BTreeSet<String> = image
        .snapshot
        .groups
        .iter()
        .filter_map(|g| g.sid.as_deref().map(|s| s.to_ascii_uppercase()))
        .collect();
    for sid in sids.iter().filter(|s| !have.contains(*s)) {
        if let Some(g) = ad.read_group_by_sid(sid, &image.snapshot.schema).await? {
            let guid = g.guid.to_ascii_lowercase();
            if image
                .snapshot
                .groups
                .iter()
                .any(|x| x.guid.eq_ignore_ascii_case(&guid))
            {
                continue;
            }
            info!(sid = %sid, dn = %g.dn, "the AD group of a cloud-managed group");
            image.snapshot.groups.push(g);
            image.changes.groups_upsert.insert(guid);
        }
    }
    Ok(())
}

async fn full(
    ad: &mut AdConnector,
    cfg: &Config,
    joins: &Joins,
    dc: DcState,
    scope: String,
    wanted: &BTreeSet<Lookup>,
) -> Result<AdImage, CycleError> {
    let schema = ad.detect_schema().await?;
    let mut groups = Vec::new();
    let mut seen = BTreeSet::new();
    for ou in read_bases(cfg) {
        for g in ad.read_groups(&ou, &schema).await? {
            if seen.insert(g.guid.to_ascii_lowercase()) {
                groups.push(g);
            }
        }
    }
    for join in joins.values() {
        if seen.contains(&join.guid.to_ascii_lowercase()) {
            continue;
        }
        if let Some(g) = ad.read_group(&join.guid, &schema).await? {
            info!(group = %join.group, dn = %g.dn, "a group writeback made is outside the managed OUs");
            seen.insert(g.guid.to_ascii_lowercase());
            groups.push(g);
        }
    }
    let resolutions = ad.resolve(wanted).await?;
    let changes = ImageChanges {
        replaced: true,
        how: format!("AD read in full ({} groups)", groups.len()),
        ..Default::default()
    };
    Ok(AdImage {
        meta: ImageMeta {
            dc,
            scope,
            schema: schema.clone(),
        },
        snapshot: AdSnapshot {
            schema,
            groups,
            resolutions,
        },
        changes,
        adoption_sids: BTreeSet::new(),
    })
}

#[allow(clippy::too_many_arguments)]
async fn incremental(
    ad: &mut AdConnector,
    cfg: &Config,
    joins: &Joins,
    meta: ImageMeta,
    mut snapshot: AdSnapshot,
    dc: DcState,
    wanted: &Wanted,
    adoption: &BTreeSet<String>,
) -> Result<AdImage, CycleError> {
    let mut changes = ImageChanges::default();
    let since = meta.dc.highest_usn;
    let all = if dc.highest_usn > since {
        ad.changes_since(since).await?
    } else {
        Vec::new()
    };
    let (n_changed, n_deleted) = (
        all.iter().filter(|c| !c.deleted).count(),
        all.iter().filter(|c| c.deleted).count(),
    );
    let reread =
        apply_ad_changes(ad, cfg, joins, adoption, &mut snapshot, all, &mut changes).await?;

    let new_lookups: BTreeSet<Lookup> = wanted
        .lookups
        .iter()
        .filter(|l| !snapshot.resolutions.asked.contains(*l))
        .cloned()
        .collect();
    if !new_lookups.is_empty() {
        let found = ad.resolve(&new_lookups).await?;
        for l in &new_lookups {
            snapshot.resolutions.asked.insert(l.clone());
            if let Some(o) = found.found.get(l) {
                snapshot.resolutions.found.insert(l.clone(), o.clone());
            }
            changes.lookups_upsert.insert(l.clone());
        }
    }
    // Lookups no cloud member needs any more leave the cache (known only when `wanted`
    // is every lookup).
    let unused: Vec<Lookup> = if wanted.complete {
        snapshot
            .resolutions
            .asked
            .iter()
            .filter(|l| !wanted.lookups.contains(*l))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    for l in unused {
        snapshot.resolutions.asked.remove(&l);
        snapshot.resolutions.found.remove(&l);
        changes.lookups_upsert.remove(&l);
        changes.lookups_remove.insert(l);
    }
    changes.how = format!(
        "AD changes since USN {since}: {n_changed} objects changed, {n_deleted} deleted, {reread} groups re-read, {} new lookups",
        new_lookups.len()
    );
    debug!(how = %changes.how, "AD image brought up to date");
    Ok(AdImage {
        meta: ImageMeta { dc, ..meta },
        snapshot,
        changes,
        adoption_sids: BTreeSet::new(),
    })
}

/// Whether any AD change since `since` concerns writeback: a group in a managed OU, one of
/// the AD image or of the joins, or an object a member lookup found or would now find.
/// Changes elsewhere in the domain (logons, other OUs' groups) leave a cycle quiet.
pub async fn changes_concern_us(
    ad: &mut AdConnector,
    cfg: &Config,
    store: &wb_store::Store,
    interest: &mut Option<Interest>,
    since: u64,
) -> Result<bool, CycleError> {
    let changes = ad.changes_since(since).await?;
    if changes.is_empty() {
        return Ok(false);
    }
    let interest = match interest {
        Some(i) => i,
        None => interest.insert(Interest::read(store)?),
    };
    Ok(changes.iter().any(|c| {
        let guid = c.object.guid.to_ascii_lowercase();
        (c.object.class == AdClass::Group && in_managed_ou(cfg, &c.object.dn))
            || interest.guids.contains(&guid)
            || interest.found.contains(&guid)
            || keys_of(c)
                .iter()
                .any(|k| interest.asked.contains(&canonical(k)))
    }))
}

/// What AD objects concern writeback, as the store has it: read once by a Syncer's quiet
/// cycles (a daemon whose domain changes every second does not re-read it each cycle) and
/// forgotten when a cycle commits a new image.
#[derive(Debug, Default)]
pub struct Interest {
    /// objectGUIDs (lower-case) of the AD image's groups and of the joins.
    guids: HashSet<String>,
    /// Every lookup of the resolution cache, canonical.
    asked: HashSet<Lookup>,
    /// objectGUIDs (lower-case) the lookups found.
    found: HashSet<String>,
}

impl Interest {
    fn read(store: &wb_store::Store) -> Result<Interest, CycleError> {
        let stored = store.ad_interest()?;
        Ok(Interest {
            asked: stored.lookups.iter().map(|(l, _)| canonical(l)).collect(),
            found: stored
                .lookups
                .iter()
                .filter_map(|(_, o)| o.as_ref().map(|o| o.guid.to_ascii_lowercase()))
                .collect(),
            guids: stored.guids.into_iter().collect(),
        })
    }
}

/// Brings `snapshot` along with AD changes: groups changed in the managed OUs (or joined)
/// are read again, groups deleted or moved away leave it, and the resolution cache follows
/// the users, computers and groups that changed. Returns how many groups were read again.
async fn apply_ad_changes(
    ad: &mut AdConnector,
    cfg: &Config,
    joins: &Joins,
    adoption: &BTreeSet<String>,
    snapshot: &mut AdSnapshot,
    all: Vec<ChangedObject>,
    changes: &mut ImageChanges,
) -> Result<usize, CycleError> {
    let (deleted, changed): (Vec<ChangedObject>, Vec<ChangedObject>) =
        all.into_iter().partition(|c| c.deleted);
    // Needed only when a group changed.
    let joined: HashSet<std::borrow::Cow<str>> =
        if changed.iter().any(|c| c.object.class == AdClass::Group) {
            joins.values().map(|j| lower(&j.guid)).collect()
        } else {
            HashSet::new()
        };
    // Groups: re-read those changed in the managed OUs or joined; drop those gone.
    let mut reread_guids: Vec<String> = Vec::new();
    let mut dropped: BTreeSet<String> = deleted
        .iter()
        .map(|d| d.object.guid.to_ascii_lowercase())
        .collect();
    for c in changed.iter().filter(|c| c.object.class == AdClass::Group) {
        let guid = c.object.guid.to_ascii_lowercase();
        let candidate = c
            .sid
            .as_deref()
            .is_some_and(|s| adoption.contains(&s.to_ascii_uppercase()));
        if in_managed_ou(cfg, &c.object.dn) || joined.contains(guid.as_str()) || candidate {
            reread_guids.push(guid);
        } else {
            // Moved out of the managed OUs and not writeback's: no longer in the image.
            dropped.insert(guid);
        }
    }
    let mut fresh: HashMap<String, AdGroup> = HashMap::new();
    let reread = reread_guids.len();
    if reread > BULK_REREAD {
        // Many groups changed (e.g. right after a first export): one paged read of the
        // managed OUs costs less than a read per group.
        for ou in read_bases(cfg) {
            for g in ad.read_groups(&ou, &snapshot.schema).await? {
                fresh.insert(g.guid.to_ascii_lowercase(), g);
            }
        }
        for guid in &reread_guids {
            if !fresh.contains_key(guid) {
                if let Some(g) = ad.read_group(guid, &snapshot.schema).await? {
                    fresh.insert(guid.clone(), g);
                }
            }
        }
        let present: BTreeSet<String> = fresh.keys().cloned().collect();
        for g in &snapshot.groups {
            let guid = lower(&g.guid);
            let candidate = g
                .sid
                .as_deref()
                .is_some_and(|s| adoption.contains(&s.to_ascii_uppercase()));
            if !present.contains(guid.as_ref()) && !joined.contains(&guid) && !candidate {
                dropped.insert(guid.into_owned());
            }
        }
    } else {
        for guid in &reread_guids {
            match ad.read_group(guid, &snapshot.schema).await? {
                Some(g) => {
                    fresh.insert(guid.clone(), g);
                }
                None => {
                    dropped.insert(guid.clone());
                }
            }
        }
    }
    for guid in &dropped {
        fresh.remove(guid);
    }
    if !dropped.is_empty() || !fresh.is_empty() {
        snapshot.groups.retain_mut(|g| {
            let (drop, new) = {
                let guid = lower(&g.guid);
                (dropped.contains(guid.as_ref()), fresh.remove(guid.as_ref()))
            };
            if drop {
                changes.groups_remove.insert(g.guid.to_ascii_lowercase());
                return false;
            }
            if let Some(new) = new {
                if *g != new {
                    *g = new;
                    changes.groups_upsert.insert(g.guid.to_ascii_lowercase());
                }
            }
            true
        });
    }
    for (guid, g) in fresh {
        snapshot.groups.push(g);
        changes.groups_upsert.insert(guid);
    }

    // Member resolutions: what changed or vanished in AD.
    let renamed = update_resolutions(snapshot, &changed, &deleted, changes);
    for (old, new) in &renamed {
        rewrite_member_values(snapshot, old, new.as_deref(), changes);
    }
    Ok(reread)
}

/// After an export: the image follows what the DC acknowledged (writeback's own renames,
/// attribute and member changes, deletes) without reading those groups again; groups it
/// created, operations that failed, and whatever else changed meanwhile are read; and the
/// image's USN moves past this cycle's own writes, so the next cycle does not read them
/// back. (A hand change made to a group in the very instant writeback wrote it is seen at
/// the next full reconcile.)
pub async fn after_export(
    ad: &mut AdConnector,
    cfg: &Config,
    joins: &Joins,
    image: &mut AdImage,
    done: &[(wb_model::Action, wb_ad::Applied)],
    unsure: &BTreeSet<String>,
) -> Result<(), CycleError> {
    use wb_model::Action;
    let (service, usn_now) = ad.root_usn().await?;
    if !service.eq_ignore_ascii_case(&image.meta.dc.service) {
        return Ok(());
    }
    let since = image.meta.dc.highest_usn;
    let all = ad.changes_since(since).await?;
    let snapshot = &mut image.snapshot;
    let changes = &mut image.changes;
    let mut written: BTreeSet<String> = BTreeSet::new();
    let mut index: HashMap<String, usize> = snapshot
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| (g.guid.to_ascii_lowercase(), i))
        .collect();
    let mut renamed: Vec<(String, Option<String>)> = Vec::new();
    for (action, applied) in done {
        if let Action::Create { attrs, members, .. } = action {
            // What writeback created is what it sent, less the member values refused.
            let Some(guid) = applied.guid.clone() else {
                continue;
            };
            let refused: BTreeSet<String> = applied
                .member_errors
                .iter()
                .map(|e| dn_key(&e.member))
                .collect();
            let mut g = AdGroup {
                dn: applied.dn.clone(),
                guid: guid.clone(),
                sid: applied.sid.clone(),
                cn: attrs
                    .get("cn")
                    .and_then(|v| v.first().cloned())
                    .unwrap_or_default(),
                sam_account_name: applied.sam_account_name.clone(),
                ..AdGroup::default()
            };
            for (attr, values) in attrs {
                set_attr(&mut g, attr, values);
            }
            g.sam_account_name = applied.sam_account_name.clone();
            let mut seen = BTreeSet::new();
            g.members = members
                .iter()
                .filter(|m| {
                    let k = dn_key(m);
                    !refused.contains(&k) && seen.insert(k)
                })
                .cloned()
                .collect();
            // A new objectGUID: not in the image yet.
            let guid = guid.to_ascii_lowercase();
            index.insert(guid.clone(), snapshot.groups.len());
            snapshot.groups.push(g);
            written.insert(guid.clone());
            changes.groups_upsert.insert(guid);
            continue;
        }
        let guid = match action {
            Action::Create { .. } => continue,
            Action::AddMembers { guid: None, .. } => continue,
            Action::AddMembers { guid: Some(g), .. }
            | Action::Rename { guid: g, .. }
            | Action::Modify { guid: g, .. }
            | Action::RemoveMembers { guid: g, .. }
            | Action::Delete { guid: g, .. } => g.to_ascii_lowercase(),
        };
        if unsure.contains(&guid) {
            continue;
        }
        let Some(&i) = index.get(&guid) else {
            continue;
        };
        let refused: BTreeSet<String> = applied
            .member_errors
            .iter()
            .map(|e| dn_key(&e.member))
            .collect();
        let g = &mut snapshot.groups[i];
        match action {
            Action::Rename { new_dn, .. } => {
                renamed.push((g.dn.clone(), Some(new_dn.clone())));
                g.cn = wb_engine::naming::cn_of_dn(new_dn).unwrap_or_else(|| g.cn.clone());
                g.dn = new_dn.clone();
            }
            Action::Modify { changes: attrs, .. } => {
                for c in attrs {
                    set_attr(g, &c.attr, &c.after);
                }
            }
            Action::AddMembers { members, .. } => added_values(g, members, &refused),
            Action::RemoveMembers { members, .. } => removed_values(g, members, &refused),
            Action::Delete { .. } => {
                renamed.push((g.dn.clone(), None));
                changes.groups_upsert.remove(&guid);
                changes.groups_remove.insert(guid.clone());
            }
            Action::Create { .. } => {}
        }
        written.insert(guid.clone());
        if !matches!(action, Action::Delete { .. }) {
            changes.groups_upsert.insert(guid);
        }
    }
    // Deleted groups leave the image; AD itself brings member values along renames.
    let removed: BTreeSet<String> = changes.groups_remove.iter().cloned().collect();
    if !removed.is_empty() {
        snapshot
            .groups
            .retain(|g| !removed.contains(&g.guid.to_ascii_lowercase()));
        index.clear();
    }
    for (old, new) in &renamed {
        rewrite_member_values(snapshot, old, new.as_deref(), changes);
    }
    let mut highest = usn_now;
    let others: Vec<ChangedObject> = all
        .into_iter()
        .inspect(|c| highest = highest.max(c.usn))
        .filter(|c| !written.contains(&c.object.guid.to_ascii_lowercase()))
        .collect();
    let n_others = others.len();
    let adoption = image.adoption_sids.clone();
    let reread = apply_ad_changes(ad, cfg, joins, &adoption, snapshot, others, changes).await?;
    for guid in unsure {
        if let Some(g) = ad.read_group(guid, &snapshot.schema).await? {
            snapshot
                .groups
                .retain(|x| !x.guid.eq_ignore_ascii_case(guid));
            snapshot.groups.push(g);
            changes.groups_upsert.insert(guid.clone());
        }
    }
    debug!(
        written = written.len(),
        others = n_others,
        reread,
        usn = highest,
        "AD image brought along with the export"
    );
    image.meta.dc.highest_usn = highest;
    Ok(())
}

/// The image group after the DC took `members` as new values of its `member`, less those it
/// refused (by key) and those the group had: one key per value of the group is computed,
/// none kept (a group may hold 250,000).
fn added_values(g: &mut AdGroup, members: &[Arc<str>], refused: &BTreeSet<String>) {
    let keyed: Vec<(String, &Arc<str>)> = members
        .iter()
        .map(|m| (dn_key(m), m))
        .filter(|(k, _)| !refused.contains(k))
        .collect();
    let mut new: HashSet<&str> = keyed.iter().map(|(k, _)| k.as_str()).collect();
    for m in &g.members {
        if new.is_empty() {
            break;
        }
        new.remove(dn_key(m).as_str());
    }
    for (k, m) in &keyed {
        if new.remove(k.as_str()) {
            g.members.push(Arc::clone(m));
        }
    }
}

/// The image group after the DC removed `members` from its `member`, less those it refused.
/// The engine removes values as the image holds them: they are found as they are, without a
/// key per value of the group; by key only when one is not (a DN spelt otherwise).
fn removed_values(g: &mut AdGroup, members: &[Arc<str>], refused: &BTreeSet<String>) {
    let mut gone = BTreeSet::new();
    let mut exact = HashSet::new();
    for m in members {
        let k = dn_key(m);
        if !refused.contains(&k) {
            exact.insert(&**m);
            gone.insert(k);
        }
    }
    let before = g.members.len();
    g.members.retain(|m| !exact.contains(&**m));
    if before - g.members.len() < gone.len() {
        g.members.retain(|m| !gone.contains(&dn_key(m)));
    }
}

/// Sets one managed attribute of an image group as a modify left it.
fn set_attr(g: &mut AdGroup, attr: &str, values: &[String]) {
    if let Some(attr) = GroupAttr::parse(attr) {
        attr.set(g, values);
    }
}

/// The lookup keys an AD object answers.
fn keys_of(c: &ChangedObject) -> Vec<Lookup> {
    let mut keys = vec![Lookup::Dn(c.object.dn.clone())];
    if let Some(sid) = &c.sid {
        keys.push(Lookup::Sid(sid.clone()));
    }
    for bytes in &c.immutable_ids {
        keys.push(Lookup::ImmutableId(
            base64::engine::general_purpose::STANDARD.encode(bytes),
        ));
    }
    keys
}

/// A lookup in the form two spellings of it compare equal (DNs as AD compares them,
/// immutable ids by their bytes, SIDs case-insensitively).
fn canonical(l: &Lookup) -> Lookup {
    match l {
        Lookup::Dn(dn) => Lookup::Dn(dn_key(dn)),
        Lookup::Sid(s) => Lookup::Sid(s.trim().to_ascii_uppercase()),
        Lookup::ImmutableId(b64) => {
            match base64::engine::general_purpose::STANDARD.decode(b64.trim()) {
                Ok(bytes) => {
                    Lookup::ImmutableId(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
                Err(_) => l.clone(),
            }
        }
    }
}

/// Updates the cache for changed and deleted objects. Returns the DNs that objects the
/// cache knew had and no longer have (old DN → new DN, or `None` when deleted), so member
/// values naming them can be brought along as AD itself does.
fn update_resolutions(
    snapshot: &mut AdSnapshot,
    changed: &[ChangedObject],
    deleted: &[ChangedObject],
    changes: &mut ImageChanges,
) -> Vec<(String, Option<String>)> {
    if changed.is_empty() && deleted.is_empty() {
        return Vec::new();
    }
    let res = &mut snapshot.resolutions;
    // The cache holds a lookup per member (250,000 for one big group) and a cycle brings a
    // few changed objects: index only the entries those objects concern, and compare
    // without allocating where the stored text is already in canonical form.
    let keys: HashSet<Lookup> = changed
        .iter()
        .flat_map(keys_of)
        .map(|k| canonical(&k))
        .collect();
    let sids: HashSet<&str> = keys
        .iter()
        .filter_map(|k| match k {
            Lookup::Sid(s) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    let guids: HashSet<String> = changed
        .iter()
        .chain(deleted)
        .map(|c| c.object.guid.to_ascii_lowercase())
        .collect();
    let mut by_key: HashMap<Lookup, Vec<Lookup>> = HashMap::new();
    for l in &res.asked {
        let concerned = match l {
            // A SID without lower-case letters is its own canonical form (trimmed).
            Lookup::Sid(s) if !s.bytes().any(|b| b.is_ascii_lowercase()) => sids.contains(s.trim()),
            _ => keys.contains(&canonical(l)),
        };
        if concerned {
            by_key.entry(canonical(l)).or_default().push(l.clone());
        }
    }
    let mut by_guid: HashMap<String, Vec<Lookup>> = HashMap::new();
    for (l, o) in &res.found {
        let concerned = if o.guid.bytes().any(|b| b.is_ascii_uppercase()) {
            guids.contains(&o.guid.to_ascii_lowercase())
        } else {
            guids.contains(o.guid.as_str())
        };
        if concerned {
            by_guid
                .entry(o.guid.to_ascii_lowercase())
                .or_default()
                .push(l.clone());
        }
    }
    let mut renamed = Vec::new();
    for c in changed {
        let guid = c.object.guid.to_ascii_lowercase();
        let keys: BTreeSet<Lookup> = keys_of(c).iter().map(canonical).collect();
        // Entries that found this object: still answered by it, or no longer.
        for l in by_guid.get(&guid).into_iter().flatten() {
            if let Some(before) = res.found.get(l) {
                if dn_key(&before.dn) != dn_key(&c.object.dn) {
                    renamed.push((before.dn.clone(), Some(c.object.dn.clone())));
                }
            }
            if keys.contains(&canonical(l)) {
                res.found.insert(l.clone(), c.object.clone());
            } else {
                res.found.remove(l);
            }
            changes.lookups_upsert.insert(l.clone());
        }
        // Lookups this object now answers (e.g. a user created or renamed into place).
        for k in &keys {
            for l in by_key.get(k).into_iter().flatten() {
                res.found.insert(l.clone(), c.object.clone());
                changes.lookups_upsert.insert(l.clone());
            }
        }
    }
    for d in deleted {
        let guid = d.object.guid.to_ascii_lowercase();
        for l in by_guid.get(&guid).into_iter().flatten() {
            if let Some(before) = res.found.remove(l) {
                renamed.push((before.dn, None));
                changes.lookups_upsert.insert(l.clone());
            }
        }
    }
    renamed.sort();
    renamed.dedup();
    renamed
}

/// AD keeps `member` values pointing at an object through its renames and drops them when
/// it is deleted, without a change to the group: bring the image along.
fn rewrite_member_values(
    snapshot: &mut AdSnapshot,
    old: &str,
    new: Option<&str>,
    changes: &mut ImageChanges,
) {
    let old_key = dn_key(old);
    for g in &mut snapshot.groups {
        let before = g.members.len();
        let mut touched = false;
        g.members.retain_mut(|m| {
            if dn_key(m) != old_key {
                return true;
            }
            touched = true;
            match new {
                Some(n) => {
                    *m = Arc::from(n);
                    true
                }
                None => false,
            }
        });
        if touched || g.members.len() != before {
            changes.groups_upsert.insert(g.guid.to_ascii_lowercase());
        }
    }
}

/// What the stored image reflects, when there is an image this version can use.
pub fn stored_meta(meta_json: Option<&str>) -> Option<ImageMeta> {
    let json = meta_json?;
    let meta = serde_json::from_str::<ImageMeta>(json).ok();
    if meta.is_none() {
        info!("the stored AD image is from another version: reading AD in full");
    }
    meta
}

/// The stored image, from the store's rows and what they reflect ([`stored_meta`]).
pub fn from_rows(meta: ImageMeta, rows: wb_store::AdImageRows) -> (ImageMeta, AdSnapshot) {
    let schema = meta.schema.clone();
    (
        meta,
        AdSnapshot {
            schema,
            groups: rows.groups,
            resolutions: rows.resolutions,
        },
    )
}

impl AdImage {
    /// The commit fields that store this image's changes.
    pub fn fill_commit<'a>(&'a self, commit: &mut wb_store::Commit<'a>) {
        let c = &self.changes;
        commit.replace_ad = c.replaced;
        let by_guid: BTreeMap<String, &AdGroup> = self
            .snapshot
            .groups
            .iter()
            .map(|g| (g.guid.to_ascii_lowercase(), g))
            .collect();
        commit.ad_groups_upsert = if c.replaced {
            self.snapshot.groups.iter().collect()
        } else {
            c.groups_upsert
                .iter()
                .filter_map(|g| by_guid.get(g).copied())
                .collect()
        };
        commit.ad_groups_remove = c.groups_remove.iter().cloned().collect();
        let res = &self.snapshot.resolutions;
        let lookups: Vec<&Lookup> = if c.replaced {
            res.asked.iter().collect()
        } else {
            c.lookups_upsert.iter().collect()
        };
        commit.ad_lookups_upsert = lookups.into_iter().map(|l| (l, res.found.get(l))).collect();
        commit.ad_lookups_remove = c.lookups_remove.iter().collect();
        commit.ad_image = serde_json::to_string(&self.meta).ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wb_model::AdObjectRef;

    fn user(dn: &str, guid: &str, sid: &str) -> ChangedObject {
        ChangedObject {
            object: AdObjectRef {
                dn: dn.into(),
                guid: guid.into(),
                group_type: None,
                class: AdClass::User,
            },
            sid: Some(sid.into()),
            immutable_ids: vec![],
            usn: 1,
            deleted: false,
        }
    }

    fn group_of(members: &[&str]) -> AdGroup {
        AdGroup {
            members: members.iter().map(|m| Arc::from(*m)).collect(),
            ..AdGroup::default()
        }
    }

    fn values(members: &[&str]) -> Vec<Arc<str>> {
        members.iter().map(|m| Arc::from(*m)).collect()
    }

    /// After an export, the image group loses the values removed — as the image holds them,
    /// or spelt otherwise (found by key) — and keeps those the DC refused.
    #[test]
    fn removed_values_leave_the_image_group_by_value_or_by_key() {
        let refused = BTreeSet::from([dn_key("CN=Kept,OU=U,DC=t")]);
        let mut g = group_of(&["CN=A,OU=U,DC=t", "CN=B,OU=U,DC=t", "CN=Kept,OU=U,DC=t"]);
        removed_values(
            &mut g,
            &values(&["CN=A,OU=U,DC=t", "CN=Kept,OU=U,DC=t"]),
            &refused,
        );
        assert_eq!(g.members, values(&["CN=B,OU=U,DC=t", "CN=Kept,OU=U,DC=t"]));
        // Spelt otherwise than the image holds it: found by its key.
        removed_values(&mut g, &values(&["cn=b, ou=U,DC=T"]), &BTreeSet::new());
        assert_eq!(g.members, values(&["CN=Kept,OU=U,DC=t"]));
        // A value the group no longer has: nothing else goes.
        removed_values(&mut g, &values(&["CN=Gone,OU=U,DC=t"]), &BTreeSet::new());
        assert_eq!(g.members, values(&["CN=Kept,OU=U,DC=t"]));
    }

    /// After an export, the image group gains the values added, once each by key, except
    /// those the DC refused and those it had.
    #[test]
    fn added_values_join_the_image_group_once_each() {
        let refused = BTreeSet::from([dn_key("CN=No,OU=U,DC=t")]);
        let mut g = group_of(&["CN=A,OU=U,DC=t"]);
        added_values(
            &mut g,
            &values(&[
                "cn=a,ou=u,dc=t",
                "CN=B,OU=U,DC=t",
                "CN=No,OU=U,DC=t",
                "cn=B,OU=U,DC=t",
            ]),
            &refused,
        );
        assert_eq!(g.members, values(&["CN=A,OU=U,DC=t", "CN=B,OU=U,DC=t"]));
    }

    fn snapshot_with(lookups: &[(Lookup, Option<AdObjectRef>)], members: &[&str]) -> AdSnapshot {
        let mut s = AdSnapshot::default();
        for (l, o) in lookups {
            s.resolutions.asked.insert(l.clone());
            if let Some(o) = o {
                s.resolutions.found.insert(l.clone(), o.clone());
            }
        }
        s.groups.push(AdGroup {
            dn: "CN=G,OU=W,DC=t".into(),
            guid: "g-1".into(),
            members: members.iter().map(|m| Arc::from(*m)).collect(),
            ..AdGroup::default()
        });
        s
    }

    #[test]
    fn a_user_appearing_in_ad_resolves_a_lookup_asked_before() {
        let sid = Lookup::Sid("S-1-5-21-1-2-3-1105".into());
        let mut s = snapshot_with(&[(sid.clone(), None)], &[]);
        let mut ch = ImageChanges::default();
        update_resolutions(
            &mut s,
            &[user("CN=New,OU=P,DC=t", "u-1", "S-1-5-21-1-2-3-1105")],
            &[],
            &mut ch,
        );
        assert_eq!(s.resolutions.found[&sid].dn, "CN=New,OU=P,DC=t");
        assert!(ch.lookups_upsert.contains(&sid));
    }

    #[test]
    fn a_change_concerns_only_the_lookups_of_its_own_objects_however_spelt() {
        // The cache holds one entry per member (250,000 for one big group): a cycle indexes
        // only the entries of the objects that changed, and must still find those written
        // in another case (a lower-case SID asked, an upper-case objectGUID stored).
        let other = AdObjectRef {
            dn: "CN=Other,OU=P,DC=t".into(),
            guid: "U-9".into(),
            group_type: None,
            class: AdClass::User,
        };
        let mut lookups: Vec<(Lookup, Option<AdObjectRef>)> = (0..1000)
            .map(|i| {
                let o = AdObjectRef {
                    guid: format!("u-{}", 1000 + i),
                    ..other.clone()
                };
                (Lookup::Sid(format!("S-1-5-21-1-2-3-{}", 2000 + i)), Some(o))
            })
            .collect();
        let lower = Lookup::Sid("s-1-5-21-1-2-3-1105".into());
        let moved = Lookup::Sid("S-1-5-21-1-2-3-1106".into());
        lookups.push((lower.clone(), None));
        lookups.push((moved.clone(), Some(other)));
        let mut s = snapshot_with(&lookups, &[]);
        let mut ch = ImageChanges::default();
        update_resolutions(
            &mut s,
            &[
                user("CN=New,OU=P,DC=t", "u-1", "S-1-5-21-1-2-3-1105"),
                user("CN=Moved,OU=Q,DC=t", "u-9", "S-1-5-21-1-2-3-1106"),
            ],
            &[],
            &mut ch,
        );
        assert_eq!(s.resolutions.found[&lower].dn, "CN=New,OU=P,DC=t");
        assert_eq!(s.resolutions.found[&moved].dn, "CN=Moved,OU=Q,DC=t");
        assert_eq!(
            ch.lookups_upsert,
            [lower, moved].into_iter().collect(),
            "only the changed objects' entries are rewritten"
        );
        assert_eq!(s.resolutions.found.len(), 1002);
        // Nothing changed: nothing to do.
        let mut ch = ImageChanges::default();
        assert!(update_resolutions(&mut s, &[], &[], &mut ch).is_empty());
        assert!(ch.lookups_upsert.is_empty());
    }

    #[test]
    fn a_renamed_user_keeps_its_sid_lookup_and_member_values_follow() {
        let sid = Lookup::Sid("S-1-5-21-1-2-3-1105".into());
        let dn_lookup = Lookup::Dn("CN=Old,OU=P,DC=t".into());
        let old = AdObjectRef {
            dn: "CN=Old,OU=P,DC=t".into(),
            guid: "u-1".into(),
            group_type: None,
            class: AdClass::User,
        };
        let mut s = snapshot_with(
            &[
                (sid.clone(), Some(old.clone())),
                (dn_lookup.clone(), Some(old)),
            ],
            &["CN=Old,OU=P,DC=t"],
        );
        let mut ch = ImageChanges::default();
        let renamed = update_resolutions(
            &mut s,
            &[user("CN=New,OU=P,DC=t", "U-1", "S-1-5-21-1-2-3-1105")],
            &[],
            &mut ch,
        );
        assert_eq!(s.resolutions.found[&sid].dn, "CN=New,OU=P,DC=t");
        assert!(
            !s.resolutions.found.contains_key(&dn_lookup),
            "the old DN finds nothing"
        );
        for (o, n) in &renamed {
            rewrite_member_values(&mut s, o, n.as_deref(), &mut ch);
        }
        assert_eq!(s.groups[0].members, vec![Arc::from("CN=New,OU=P,DC=t")]);
        assert!(ch.groups_upsert.contains("g-1"));
    }

    #[test]
    fn a_deleted_user_is_no_longer_found_and_leaves_member_values() {
        let sid = Lookup::Sid("S-1-5-21-1-2-3-1105".into());
        let old = AdObjectRef {
            dn: "CN=Old,OU=P,DC=t".into(),
            guid: "u-1".into(),
            group_type: None,
            class: AdClass::User,
        };
        let mut s = snapshot_with(&[(sid.clone(), Some(old))], &["cn=old,ou=p,dc=t"]);
        let mut ch = ImageChanges::default();
        let renamed = update_resolutions(
            &mut s,
            &[],
            &[ChangedObject {
                deleted: true,
                ..user(
                    "CN=Old\\0ADEL:u-1,CN=Deleted Objects,DC=t",
                    "u-1",
                    "S-1-5-21-1-2-3-1105",
                )
            }],
            &mut ch,
        );
        assert!(!s.resolutions.found.contains_key(&sid));
        assert!(s.resolutions.asked.contains(&sid));
        for (o, n) in &renamed {
            rewrite_member_values(&mut s, o, n.as_deref(), &mut ch);
        }
        assert!(s.groups[0].members.is_empty());
    }
}
