//! Generated malformed Graph pages (issue 12, "hostile input"): valid group-delta, user-delta
//! and writebackConfiguration pages mutated at random — fields dropped, types changed
//! (string ↔ number ↔ null ↔ array ↔ object, huge numbers), wrong nesting, bogus links, cut
//! text, invalid UTF-16 escapes — and parsed as the client parses them (`wb_graph::pages`).
//! Each page is accepted exactly when Graph's documented shape allows it (the model below,
//! written from SPEC §1, not from the parser), and a refused page names the object (its id,
//! when it has one) and the property. Never a panic.
//!
//! Seeded: `WB_SEED=<n>` replays a run; every failure prints its seed and case.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

const CASES: usize = 3000;

fn seed() -> u64 {
    std::env::var("WB_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(12)
        })
}

fn guid(rng: &mut StdRng) -> String {
    let b: [u8; 16] = rng.gen();
    uuid::Uuid::from_bytes(b).to_string()
}

/// What a group property may hold on a delta page (SPEC §1; `None`: not a property writeback
/// reads, anything goes).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    Text,
    Flag,
    Texts,
    Writeback,
    MemberDelta,
}

fn group_shape(key: &str) -> Option<Shape> {
    Some(match key {
        "displayName"
        | "description"
        | "mail"
        | "mailNickname"
        | "onPremisesSecurityIdentifier" => Shape::Text,
        "mailEnabled" | "securityEnabled" | "onPremisesSyncEnabled" => Shape::Flag,
        "groupTypes" | "proxyAddresses" => Shape::Texts,
        "writebackConfiguration" => Shape::Writeback,
        "members@delta" | "owners@delta" => Shape::MemberDelta,
        _ => return None,
    })
}

fn user_shape(key: &str) -> Option<Shape> {
    Some(match key {
        "userPrincipalName"
        | "displayName"
        | "onPremisesSecurityIdentifier"
        | "onPremisesImmutableId"
        | "onPremisesDistinguishedName"
        | "onPremisesSamAccountName"
        | "onPremisesDomainName" => Shape::Text,
        "onPremisesSyncEnabled" => Shape::Flag,
        _ => return None,
    })
}

fn is_id(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::String(s)) if !s.is_empty())
}

/// Whether `v` fits `shape` (null always does: a cleared property).
fn fits(shape: Shape, v: &Value) -> bool {
    let opt_str = |x: Option<&Value>| matches!(x, None | Some(Value::Null | Value::String(_)));
    let opt_bool = |x: Option<&Value>| matches!(x, None | Some(Value::Null | Value::Bool(_)));
    match (shape, v) {
        (_, Value::Null) => true,
        (Shape::Text, Value::String(_)) | (Shape::Flag, Value::Bool(_)) => true,
        (Shape::Texts, Value::Array(items)) => items.iter().all(Value::is_string),
        (Shape::Writeback, Value::Object(o)) => {
            opt_bool(o.get("isEnabled")) && opt_str(o.get("onPremisesGroupType"))
        }
        (Shape::MemberDelta, Value::Array(entries)) => entries.iter().all(|e| match e {
            Value::Object(e) => {
                is_id(e.get("id"))
                    && matches!(e.get("@odata.type"), None | Some(Value::String(_)))
                    && matches!(e.get("@removed"), None | Some(Value::Object(_)))
            }
            _ => false,
        }),
        _ => false,
    }
}

/// What a refusal must name: every word of `all` and, when `any` is not empty, one of `any`
/// (two properties may be wrong at once; the parser names the first it reads).
#[derive(Debug)]
struct Words {
    all: Vec<String>,
    any: Vec<String>,
}

fn words(all: &[&str]) -> Words {
    Words {
        all: all.iter().map(|w| w.to_string()).collect(),
        any: Vec::new(),
    }
}

/// The model's verdict on one page item: `Ok` or what the error must name.
fn item_verdict(item: &Value, shape_of: fn(&str) -> Option<Shape>) -> Result<(), Words> {
    let Value::Object(o) = item else {
        return Err(words(&["object"]));
    };
    if !is_id(o.get("id")) {
        return Err(words(&["id"]));
    }
    let id = o["id"].as_str().unwrap_or_default();
    match o.get("@removed") {
        None => {}
        Some(Value::Object(r)) => {
            return match r.get("reason") {
                None | Some(Value::Null | Value::String(_)) => Ok(()),
                Some(_) => Err(words(&[id, "@removed"])),
            }
        }
        Some(_) => return Err(words(&[id, "@removed"])),
    }
    let wrong: Vec<String> = o
        .iter()
        .filter(|(k, v)| shape_of(k).is_some_and(|shape| !fits(shape, v)))
        .map(|(k, _)| k.clone())
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(Words {
            all: vec![id.to_string()],
            any: wrong,
        })
    }
}

/// The model's verdict on a whole page.
fn page_verdict(page: &Value, kind: Kind) -> Result<(), Words> {
    let Value::Object(p) = page else {
        return Err(words(&["object"]));
    };
    for link in ["@odata.nextLink", "@odata.deltaLink"] {
        if !matches!(p.get(link), None | Some(Value::Null | Value::String(_))) {
            return Err(words(&[link]));
        }
    }
    let Some(Value::Array(items)) = p.get("value") else {
        return Err(words(&["value"]));
    };
    for item in items {
        match kind {
            Kind::Groups => item_verdict(item, group_shape)?,
            Kind::Users => item_verdict(item, user_shape)?,
            Kind::Writeback => {
                let Value::Object(o) = item else {
                    return Err(words(&["object"]));
                };
                if !is_id(o.get("id")) {
                    return Err(words(&["id"]));
                }
                let wb = o.get("writebackConfiguration").unwrap_or(&Value::Null);
                if !fits(Shape::Writeback, wb) {
                    let id = o["id"].as_str().unwrap_or_default();
                    return Err(words(&[id, "writebackConfiguration"]));
                }
            }
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Groups,
    Users,
    Writeback,
}

fn member(rng: &mut StdRng) -> Value {
    let ty = ["user", "group", "device", "orgContact", "servicePrincipal"][rng.gen_range(0..5)];
    let mut m = json!({"@odata.type": format!("#microsoft.graph.{ty}"), "id": guid(rng)});
    if rng.gen_bool(0.3) {
        m["@removed"] = json!({"reason": "deleted"});
    }
    m
}

fn valid_page(rng: &mut StdRng, kind: Kind) -> Value {
    let n = rng.gen_range(1..4);
    let items: Vec<Value> = (0..n)
        .map(|_| match kind {
            Kind::Groups if rng.gen_bool(0.1) => {
                let reason = ["changed", "deleted"][rng.gen_range(0..2)];
                json!({"id": guid(rng), "@removed": {"reason": reason}})
            }
            Kind::Groups => {
                let members: Vec<Value> = (0..rng.gen_range(0..4)).map(|_| member(rng)).collect();
                json!({
                    "id": guid(rng),
                    "displayName": "Sales, EMEA \"Partners\"",
                    "description": null,
                    "groupTypes": ["Unified"],
                    "mailEnabled": true,
                    "securityEnabled": false,
                    "mail": "sales@contoso.example",
                    "mailNickname": "sales",
                    "proxyAddresses": ["SMTP:sales@contoso.example"],
                    "onPremisesSyncEnabled": null,
                    "onPremisesSecurityIdentifier": null,
                    "writebackConfiguration": {"isEnabled": true, "onPremisesGroupType": "universalDistributionGroup"},
                    "members@delta": members,
                })
            }
            Kind::Users => json!({
                "id": guid(rng),
                "userPrincipalName": "ada@contoso.example",
                "displayName": "Ada",
                "onPremisesSyncEnabled": true,
                "onPremisesSecurityIdentifier": "S-1-5-21-1-2-3-1104",
                "onPremisesImmutableId": "AAAAAAAAAAAAAAAAAAAAAA==",
                "onPremisesDistinguishedName": "CN=Ada,OU=People,DC=corp,DC=example",
                "onPremisesSamAccountName": "ada",
                "onPremisesDomainName": "corp.example",
            }),
            Kind::Writeback => json!({
                "id": guid(rng),
                "writebackConfiguration": {"isEnabled": null, "onPremisesGroupType": null},
            }),
        })
        .collect();
    let link = "https://graph.microsoft.com/beta/groups/delta?$deltatoken=abc";
    if rng.gen_bool(0.5) {
        json!({"@odata.context": "https://graph.microsoft.com/beta/$metadata#groups", "value": items, "@odata.deltaLink": link})
    } else {
        json!({"value": items, "@odata.nextLink": link.replace("deltatoken", "skiptoken")})
    }
}

/// A value of any JSON type, sometimes one Graph never sends (huge numbers, deep nesting).
fn any_value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.gen_range(0..12) {
        0 => Value::Null,
        1 => json!(rng.gen_bool(0.5)),
        2 => json!(rng.gen::<i64>()),
        3 => json!(u64::MAX),
        4 => json!(rng.gen::<f64>() * 1e300),
        5 => json!(""),
        6 => json!("😀 text, with \"quotes\""),
        7 => json!([]),
        8 => json!({}),
        9 if depth < 3 => Value::Array(
            (0..rng.gen_range(1..3))
                .map(|_| any_value(rng, depth + 1))
                .collect(),
        ),
        10 if depth < 3 => {
            let mut m = Map::new();
            for k in ["id", "isEnabled", "reason", "x"] {
                if rng.gen_bool(0.5) {
                    m.insert(k.into(), any_value(rng, depth + 1));
                }
            }
            Value::Object(m)
        }
        _ => json!(["a", "b"]),
    }
}

/// A JSON pointer to some value in `v` (objects and arrays descended at random).
fn some_pointer(rng: &mut StdRng, v: &Value) -> String {
    let mut ptr = String::new();
    let mut at = v;
    loop {
        let next = match at {
            Value::Object(o) if !o.is_empty() && rng.gen_bool(0.75) => {
                let k = o
                    .keys()
                    .nth(rng.gen_range(0..o.len()))
                    .cloned()
                    .unwrap_or_default();
                ptr.push('/');
                ptr.push_str(&k.replace('~', "~0").replace('/', "~1"));
                &o[&k]
            }
            Value::Array(a) if !a.is_empty() && rng.gen_bool(0.75) => {
                let i = rng.gen_range(0..a.len());
                ptr.push_str(&format!("/{i}"));
                &a[i]
            }
            _ => return ptr,
        };
        at = next;
    }
}

/// A JSON mutation of `page`: a value replaced by another of any type, a field dropped, a
/// value wrapped (wrong nesting), or a link made bogus.
fn mutate(rng: &mut StdRng, page: &mut Value) -> String {
    let ptr = some_pointer(rng, page);
    let (parent, key) = ptr.rsplit_once('/').unwrap_or(("", ""));
    match rng.gen_range(0..5) {
        0 | 1 => {
            let v = any_value(rng, 0);
            let what = format!("{ptr} := {v}");
            if let Some(slot) = page.pointer_mut(&ptr) {
                *slot = v;
            }
            what
        }
        2 => {
            if let Some(Value::Object(o)) = page.pointer_mut(parent) {
                o.remove(key);
            } else if let Some(Value::Array(a)) = page.pointer_mut(parent) {
                if let Ok(i) = key.parse::<usize>() {
                    a.remove(i);
                }
            }
            format!("drop {ptr}")
        }
        3 => {
            if let Some(slot) = page.pointer_mut(&ptr) {
                let inner = slot.take();
                *slot = if rng.gen_bool(0.5) {
                    json!([inner])
                } else {
                    json!({ "value": inner })
                };
            }
            format!("wrap {ptr}")
        }
        _ => {
            let link = ["@odata.nextLink", "@odata.deltaLink"][rng.gen_range(0..2)];
            let v = match rng.gen_range(0..4) {
                0 => json!(7),
                1 => json!(["https://graph.microsoft.com/beta/groups/delta"]),
                2 => json!({"href": "https://graph.microsoft.com"}),
                _ => json!("https://evil.example/beta/groups/delta?$deltatoken=x"),
            };
            let what = format!("{link} := {v}");
            if let Some(p) = page.as_object_mut() {
                p.insert(link.to_string(), v);
            }
            what
        }
    }
}

fn parse(kind: Kind, body: &[u8]) -> Result<(), String> {
    match kind {
        Kind::Groups => wb_graph::pages::group_delta(body).map(|_| ()),
        Kind::Users => wb_graph::pages::user_delta(body).map(|_| ()),
        Kind::Writeback => wb_graph::pages::writeback_configurations(body).map(|_| ()),
    }
}

#[test]
fn generated_malformed_pages_are_refused_naming_object_and_property() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut refused = 0;
    for case in 0..CASES {
        let kind = [Kind::Groups, Kind::Groups, Kind::Users, Kind::Writeback][case % 4];
        let mut page = valid_page(&mut rng, kind);
        let valid = page_verdict(&page, kind);
        assert!(
            valid.is_ok(),
            "seed {seed} case {case}: the model refuses a valid page"
        );
        let mut what = Vec::new();
        for _ in 0..rng.gen_range(1..3) {
            what.push(mutate(&mut rng, &mut page));
        }
        let expected = page_verdict(&page, kind);
        let body = serde_json::to_vec(&page).expect("serialisable");
        let got = parse(kind, &body);
        let ctx = || format!("WB_SEED={seed} case {case} ({kind:?}): {what:?}\npage: {page}");
        match (&expected, &got) {
            (Ok(()), Ok(())) => {}
            (Err(words), Err(message)) => {
                refused += 1;
                for w in &words.all {
                    assert!(
                        message.contains(w.as_str()),
                        "{}\nthe error does not name {w:?}: {message}",
                        ctx()
                    );
                }
                assert!(
                    words.any.is_empty() || words.any.iter().any(|w| message.contains(w.as_str())),
                    "{}\nthe error names none of {:?}: {message}",
                    ctx(),
                    words.any
                );
            }
            (Ok(()), Err(message)) => panic!("{}\na valid page was refused: {message}", ctx()),
            (Err(words), Ok(())) => {
                panic!("{}\na malformed page ({words:?}) was accepted", ctx())
            }
        }
    }
    // The generator must actually produce malformed pages, most of the time.
    assert!(
        refused > CASES / 3,
        "seed {seed}: only {refused} pages refused"
    );
}

#[test]
fn generated_cut_and_invalid_json_texts_are_refused() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    for case in 0..CASES {
        let kind = [Kind::Groups, Kind::Users, Kind::Writeback][case % 3];
        let page = valid_page(&mut rng, kind);
        let text = page.to_string();
        let (what, body) = match rng.gen_range(0..3) {
            0 => {
                let at = rng.gen_range(0..text.len());
                let at = (0..=at)
                    .rev()
                    .find(|i| text.is_char_boundary(*i))
                    .unwrap_or(0);
                (format!("cut at {at}"), text[..at].to_string())
            }
            1 => {
                let bad = ["\\ud800", "\\udc00x", "\\ud83d\\u0041", "\\uZZZZ", "\\x41"]
                    [rng.gen_range(0..5)];
                let at = text.find("\":\"").map(|i| i + 3).unwrap_or(1);
                (
                    format!("{bad} at {at}"),
                    format!("{}{bad}{}", &text[..at], &text[at..]),
                )
            }
            _ => {
                let huge =
                    ["1e400", "-1e400", "123456789012345678901234567890e300"][rng.gen_range(0..3)];
                let at = text.find("\"value\":").map(|i| i + 8).unwrap_or(1);
                (
                    format!("{huge} in value"),
                    format!("{}{huge},{}", &text[..at], &text[at..]),
                )
            }
        };
        assert!(
            parse(kind, body.as_bytes()).is_err(),
            "WB_SEED={seed} case {case} ({kind:?}): {what} accepted: {body}"
        );
    }
}
