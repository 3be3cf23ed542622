//! The member lists of big groups, kept in chunk rows of their own.
//!
//! A group row holds its whole JSON, members included, up to [`CHUNKED_FROM`] members.
//! From there the row holds the group without its members, and the members sit in
//! chunk rows (`cloud_group_chunks` by group id, `ad_group_chunks` by objectGUID), each
//! a JSON array of a run of the list, in order, with a fingerprint of its content. So a
//! cycle that changes one member of a 250,000-member group rewrites one chunk of a few
//! thousand members, not the group's 15 MB row (ARCHITECTURE.md, "Invariants").
//!
//! Chunks are cut by content: a chunk ends after a member whose hash has its low bits
//! zero (or at [`MAX_CHUNK`] members). A member added or removed changes the chunk it
//! falls in, and the chunks around it keep their boundaries and their fingerprints. How
//! the chunks are cut matters only for how much a commit writes: reading concatenates
//! whatever chunks a group has, in order, and a commit compares fingerprints and rewrites
//! every chunk whose content differs.

use crate::{decode_with, encode, sql, text, StoreError};
use rusqlite::{params, Connection, Transaction};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

/// A group with at least this many members keeps them in chunk rows.
pub(crate) const CHUNKED_FROM: usize = 4096;
/// A chunk ends after a member whose hash has these bits zero: 2,048 members on average.
const BOUNDARY_MASK: u64 = 0x7ff;
/// … or at this many members.
const MAX_CHUNK: usize = 16_384;

/// A table of chunk rows and the words its errors use.
pub(crate) struct ChunkTable {
    pub name: &'static str,
    pub key: &'static str,
    /// What a chunk's owner is called in errors ("cloud group", "AD group").
    pub what: &'static str,
}

impl ChunkTable {
    pub const CLOUD_GROUPS: ChunkTable = ChunkTable {
        name: "cloud_group_chunks",
        key: "id",
        what: "cloud group",
    };
    pub const AD_GROUPS: ChunkTable = ChunkTable {
        name: "ad_group_chunks",
        key: "guid",
        what: "AD group",
    };
}

/// [`CHUNKED_FROM`], unless `WRITEBACK_STORE_CHUNKED_FROM` says otherwise: the end-to-end
/// tests set it low, so the cycles they run keep groups of a few members in chunk rows.
fn chunked_from() -> usize {
    static FROM: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *FROM.get_or_init(|| {
        std::env::var("WRITEBACK_STORE_CHUNKED_FROM")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or(CHUNKED_FROM)
    })
}

fn hash_of<T: Hash + ?Sized>(item: &T) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    item.hash(&mut h);
    h.finish()
}

/// `items` cut into chunks by content, each with its fingerprint (a hash of its members'
/// hashes, in order).
pub(crate) fn cut<'a, T: Hash + 'a>(
    items: impl IntoIterator<Item = &'a T>,
) -> Vec<(i64, Vec<&'a T>)> {
    let mut out = Vec::new();
    let mut chunk = Vec::new();
    let mut fingerprint = std::collections::hash_map::DefaultHasher::new();
    for item in items {
        let h = hash_of(item);
        chunk.push(item);
        fingerprint.write_u64(h);
        if h & BOUNDARY_MASK == 0 || chunk.len() >= MAX_CHUNK {
            fingerprint.write_usize(chunk.len());
            out.push((fingerprint.finish() as i64, std::mem::take(&mut chunk)));
            fingerprint = std::collections::hash_map::DefaultHasher::new();
        }
    }
    if !chunk.is_empty() {
        fingerprint.write_usize(chunk.len());
        out.push((fingerprint.finish() as i64, chunk));
    }
    out
}

/// Writes the member list of the group `key`: into chunk rows when it has
/// [`CHUNKED_FROM`] members or more (rewriting only the chunks whose fingerprint changed;
/// returns `true`: the group's row then holds no members), else removes any chunk rows
/// the group had (returns `false`: its row holds its members).
pub(crate) fn write<'a, T: Hash + Serialize + 'a>(
    tx: &Transaction<'_>,
    table: &ChunkTable,
    key: &str,
    members: impl ExactSizeIterator<Item = &'a T>,
) -> Result<bool, StoreError> {
    if members.len() < chunked_from() {
        remove(tx, table, key)?;
        return Ok(false);
    }
    let ChunkTable {
        name,
        key: col,
        what,
    } = table;
    let stored: BTreeMap<i64, i64> = {
        let mut stmt = tx
            .prepare_cached(&format!("SELECT chunk, fp FROM {name} WHERE {col} = ?1"))
            .map_err(sql("read member chunks"))?;
        let rows = stmt
            .query_map([key], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql("read member chunks"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("read member chunks"))?
    };
    let chunks = cut(members);
    let mut put = tx
        .prepare_cached(&format!(
            "INSERT INTO {name} ({col}, chunk, fp, json) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT({col}, chunk) DO UPDATE SET fp = excluded.fp, json = excluded.json"
        ))
        .map_err(sql("write member chunk"))?;
    for (n, (fp, chunk)) in chunks.iter().enumerate() {
        let n = n as i64;
        if stored.get(&n) == Some(fp) {
            continue;
        }
        let json = encode(&format!("{what} {key} member chunk {n}"), chunk)?;
        put.execute(params![key, n, fp, json])
            .map_err(sql("write member chunk"))?;
    }
    tx.prepare_cached(&format!(
        "DELETE FROM {name} WHERE {col} = ?1 AND chunk >= ?2"
    ))
    .and_then(|mut s| s.execute(params![key, chunks.len() as i64]))
    .map_err(sql("remove member chunks"))?;
    Ok(true)
}

/// Removes the chunk rows of the group `key`.
pub(crate) fn remove(
    tx: &Transaction<'_>,
    table: &ChunkTable,
    key: &str,
) -> Result<(), StoreError> {
    let ChunkTable { name, key: col, .. } = table;
    tx.prepare_cached(&format!("DELETE FROM {name} WHERE {col} = ?1"))
        .and_then(|mut s| s.execute([key]))
        .map_err(sql("remove member chunks"))?;
    Ok(())
}

/// Every group's chunked members, by key, each list in order.
pub(crate) fn read_all<T: DeserializeOwned>(
    conn: &Connection,
    table: &ChunkTable,
) -> Result<BTreeMap<String, Vec<T>>, StoreError> {
    let ChunkTable {
        name,
        key: col,
        what,
    } = table;
    let read = "read member chunks";
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {col}, chunk, json FROM {name} ORDER BY {col}, chunk"
        ))
        .map_err(sql(read))?;
    let mut rows = stmt.query([]).map_err(sql(read))?;
    let mut out: BTreeMap<String, Vec<T>> = BTreeMap::new();
    while let Some(row) = rows.next().map_err(sql(read))? {
        let k = text(row, 0).map_err(sql(read))?;
        let n: i64 = row.get(1).map_err(sql(read))?;
        let json = text(row, 2).map_err(sql(read))?;
        let chunk: Vec<T> = decode_with(|| format!("{what} {k} member chunk {n}"), json)?;
        match out.get_mut(k) {
            Some(list) => list.extend(chunk),
            None => {
                out.insert(k.to_string(), chunk);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: std::ops::Range<usize>) -> Vec<String> {
        n.map(|i| format!("member-{i:07}")).collect()
    }

    #[test]
    fn chunks_cover_the_list_in_order() {
        let list = ids(0..50_000);
        let chunks = cut(&list);
        assert!(chunks.len() > 5, "{} chunks", chunks.len());
        let back: Vec<&String> = chunks.iter().flat_map(|(_, c)| c.iter().copied()).collect();
        assert_eq!(back, list.iter().collect::<Vec<_>>());
        assert!(chunks
            .iter()
            .all(|(_, c)| !c.is_empty() && c.len() <= MAX_CHUNK));
    }

    #[test]
    fn one_member_in_or_out_changes_one_chunk() {
        let list = ids(0..50_000);
        let before = cut(&list);
        let fps = |c: &[(i64, Vec<&String>)]| c.iter().map(|(f, _)| *f).collect::<Vec<_>>();
        // A member that ends no chunk (a boundary member in or out joins or splits two
        // chunks, and the chunks after it are numbered anew).
        let inner = |m: &String| hash_of(m) & BOUNDARY_MASK != 0;
        let gone = (31_415..).find(|&i| inner(&list[i])).unwrap();
        let new = (0..)
            .map(|k| format!("member-0026999-{k}"))
            .find(inner)
            .unwrap();
        let mut removed = list.clone();
        removed.remove(gone);
        let mut added = list.clone();
        added.insert(27_000, new);
        for changed in [removed, added] {
            let after = cut(&changed);
            let (b, a) = (fps(&before), fps(&after));
            assert_eq!(a.len(), b.len());
            let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
            assert_eq!(differ, 1);
        }
    }
}
