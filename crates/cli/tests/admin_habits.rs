//! End-to-end: administrators' habits against the lab DC — binding as `user@domain` or
//! `DOMAIN\user`, preflight saying who it bound as, `WRITEBACK_CONFIG`, and the state
//! commands run without the service's secrets.

mod support;
use std::process::Command;
use support::*;

/// `DC=lab,DC=example,DC=test` → `LAB.EXAMPLE.TEST`.
fn realm(base_dn: &str) -> String {
    base_dn
        .split(',')
        .filter_map(|rdn| rdn.trim().strip_prefix("DC="))
        .collect::<Vec<_>>()
        .join(".")
        .to_uppercase()
}

/// `CN=Administrator,CN=Users,…` → `Administrator`.
fn account(bind_dn: &str) -> String {
    bind_dn
        .split(',')
        .next()
        .and_then(|rdn| rdn.strip_prefix("CN="))
        .expect("the lab bind DN starts with CN=")
        .to_string()
}

/// Replaces `from` (which must be there) by `to` in this world's config file.
fn edit_config(w: &World, from: &str, to: &str) {
    let text = std::fs::read_to_string(w.config_path()).expect("config");
    assert!(text.contains(from), "the config holds {from}:\n{text}");
    std::fs::write(w.config_path(), text.replace(from, to)).expect("config");
}

/// Rewrites the harness's `bind_dn = "<DN>"` line as `replacement`.
fn set_bind(w: &World, replacement: &str) {
    edit_config(w, &format!("bind_dn = \"{}\"", w.dc.bind_dn), replacement);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_sync_binds_by_upn_and_by_down_level_name_and_preflight_says_who() {
    let w = World::new("bindname").await;
    let user = account(&w.dc.bind_dn);
    let realm = realm(&w.dc.base_dn);
    let netbios = realm.split('.').next().unwrap_or_default().to_string();

    // user@domain
    set_bind(&w, &format!("bind = \"{user}@{realm}\""));
    let (u1, _) = w.synced_user("bn-a", "Bind Name A").await;
    let g1 = w.security_group("SG-BindName-UPN", Some(true), None).await;
    w.add_member(&g1, &u1).await;
    let out = w.sync_ok();
    assert_eq!(out["applied"]["creates"], 1, "{out}");
    assert_eq!(w.ad_group_of(&g1).await.expect("created").members.len(), 1);

    let pre = w.writeback(&["preflight", "--json"]);
    assert_eq!(pre.code, 0, "{}\n{}", pre.stdout, pre.stderr);
    let checks = pre.json();
    let bind = checks
        .as_array()
        .expect("array")
        .iter()
        .find(|c| c["check"] == "ad.bind")
        .expect("an ad.bind check");
    let who = format!("u:{netbios}\\{user}");
    assert!(
        bind["detail"].as_str().unwrap_or_default().contains(&who),
        "preflight names the identity {who}: {bind}"
    );
    let text = w.writeback(&["preflight"]);
    assert!(text.stdout.contains(&who), "{}", text.stdout);

    // DOMAIN\user (TOML literal string: the backslash as typed)
    edit_config(
        &w,
        &format!("bind = \"{user}@{realm}\""),
        &format!("bind = '{netbios}\\{user}'"),
    );
    let (u2, _) = w.synced_user("bn-b", "Bind Name B").await;
    let g2 = w.security_group("SG-BindName-Down", Some(true), None).await;
    w.add_member(&g2, &u2).await;
    let out = w.sync_ok();
    assert_eq!(out["applied"]["creates"], 1, "{out}");
    assert_eq!(w.ad_group_of(&g2).await.expect("created").members.len(), 1);
    let pre = w.writeback(&["preflight"]);
    assert_eq!(pre.code, 0, "{}\n{}", pre.stdout, pre.stderr);
    assert!(pre.stdout.contains(&who), "{}", pre.stdout);

    // A wrong password under a UPN is still "refusing the credentials".
    edit_config(
        &w,
        "password = { env = \"WB_E2E_AD_PASSWORD\" }",
        "password = \"not-the-password\"",
    );
    let r = w.writeback(&["sync"]);
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!("{netbios}\\{user}")),
        "{}",
        r.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bind_name_that_is_none_of_the_three_forms_names_its_key() {
    let w = World::new("bindbad").await;
    set_bind(&w, "bind = \"svc-writeback\"");
    let r = w.writeback(&["sync"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("ad.bind:"), "{}", r.stderr);
    edit_config(
        &w,
        "bind = \"svc-writeback\"",
        &format!("bind_dn = \"{}\"\nbind = \"a@b.c\"", w.dc.bind_dn),
    );
    let r = w.writeback(&["status"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("ad.bind") && r.stderr.contains("ad.bind_dn"),
        "{}",
        r.stderr
    );
}

/// `writeback ARGS` as an administrator runs it: no secrets in the environment, the config
/// from `WRITEBACK_CONFIG` (no --config), in a directory without a writeback.toml.
fn admin(w: &World, args: &[&str], secrets: &[(&str, &str)]) -> SyncResult {
    let out = Command::new(env!("CARGO_BIN_EXE_writeback"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .env_remove("WB_E2E_SECRET")
        .env_remove("WB_E2E_AD_PASSWORD")
        .envs(secrets.iter().copied())
        .env("WRITEBACK_CONFIG", w.config_path())
        .env("WRITEBACK_LOG", "warn")
        .output()
        .expect("writeback runs");
    SyncResult {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn state_commands_run_without_the_secrets_and_every_command_honours_writeback_config() {
    let w = World::new("nosecrets").await;
    let g = w.security_group("SG-NoSecrets", Some(true), None).await;
    let password = w.dc.password.clone();
    let all = [
        ("WB_E2E_SECRET", CLIENT_SECRET),
        ("WB_E2E_AD_PASSWORD", password.as_str()),
    ];

    // sync through WRITEBACK_CONFIG alone
    let r = admin(&w, &["sync", "--json"], &all);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(w.ad_group_of(&g).await.is_some());
    let run = r.json()["run"].as_i64().expect("run id");

    // the state commands, without any secret
    let r = admin(&w, &["status", "--json"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["lastRun"]["id"], run);
    let r = admin(&w, &["runs", "--json"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()[0]["status"], "success");
    let r = admin(&w, &["show", &run.to_string(), "--json"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["id"], run);
    let r = admin(&w, &["status"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("SG-NoSecrets"), "{}", r.stdout);

    // the commands that talk to AD or Graph still need them, and name the key
    for cmd in [
        &["sync"][..],
        &["plan"],
        &["explain", "SG-NoSecrets"],
        &["preflight"],
    ] {
        let r = admin(&w, cmd, &[]);
        assert_eq!(r.code, 2, "{cmd:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("graph.client_secret"),
            "{cmd:?}: {}",
            r.stderr
        );
        let r = admin(&w, cmd, &all[..1]);
        assert_eq!(r.code, 2, "{cmd:?}: {}", r.stderr);
        assert!(r.stderr.contains("ad.password"), "{cmd:?}: {}", r.stderr);
    }

    // a config mistake still stops a state command, naming the key
    let text = std::fs::read_to_string(w.config_path()).expect("config");
    std::fs::write(w.config_path(), format!("{text}\ninterval = \"soon\"\n")).expect("config");
    let r = admin(&w, &["status"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("writeback.interval"), "{}", r.stderr);
    std::fs::write(w.config_path(), text).expect("config");

    // --config wins over WRITEBACK_CONFIG
    let out = Command::new(env!("CARGO_BIN_EXE_writeback"))
        .args(["runs", "--json", "--config"])
        .arg(w.config_path())
        .env("WRITEBACK_CONFIG", "/nonexistent/writeback.toml")
        .output()
        .expect("writeback runs");
    assert_eq!(out.status.code(), Some(0));
}
