//! End-to-end against the lab DC, whose LDAPS and StartTLS certificate is issued by the
//! lab's own CA (lab/dc): TLS verification is on by default. Without `ad.ca_file` the DC is
//! refused (exit 3) with words that name the problem — the certificate is not trusted — and
//! the fix — `ca_file`; with `ca_file` naming the lab CA it is accepted; with another CA it
//! is refused naming that file. `tls_verify = false` is explicit and warned about.

mod support;
use support::*;

/// Rewrites the world's `[ad]` connection: `url`, plus `extra` lines (ca_file, starttls...).
fn set_ad(w: &World, url: &str, extra: &str) {
    let path = w.config_path();
    let text = std::fs::read_to_string(&path).expect("config");
    let from = format!("url = \"{}\"", w.dc.url);
    assert!(text.contains(&from), "the config names {}", w.dc.url);
    std::fs::write(
        &path,
        text.replace(&from, &format!("url = \"{url}\"\n{extra}")),
    )
    .expect("write config");
}

fn starttls_url(w: &World) -> String {
    w.dc.url.clone()
}

/// A CA that did not issue the DC's certificate.
fn other_ca(w: &World) -> std::path::PathBuf {
    let path = w.dir.join("other-ca.pem");
    let out = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=not the lab CA", "-keyout"])
        .arg(w.dir.join("other-ca.key"))
        .arg("-out")
        .arg(&path)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

fn assert_refused_as_untrusted(w: &World, what: &str, fix: &str) {
    let r = w.writeback(&["sync", "--json"]);
    assert_eq!(
        r.code, 3,
        "{what}: exit 3\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    let said = r.stderr.to_lowercase();
    assert!(
        said.contains("certificate is not trusted"),
        "{what}: the message names the problem: {}",
        r.stderr
    );
    assert!(
        said.contains(fix),
        "{what}: the message names the fix ({fix}): {}",
        r.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_dc_certificate_is_refused_by_default_and_ca_file_is_the_fix() {
    let w = World::new("tls").await;
    let (u, _) = w.synced_user("tls-a", "TLS User").await;
    let g = w.security_group("SG-TLS", Some(true), None).await;
    w.add_member(&g, &u).await;

    // Verification is on without any TLS key in the file: ldaps:// and StartTLS are refused.
    set_ad(&w, &w.dc.ldaps_url, "");
    assert_refused_as_untrusted(&w, "ldaps without ca_file", "set ca_file");
    w.write_config();
    set_ad(&w, &starttls_url(&w), "starttls = true");
    assert_refused_as_untrusted(&w, "StartTLS without ca_file", "set ca_file");
    // `tls_verify = true` said out loud changes nothing.
    w.write_config();
    set_ad(&w, &w.dc.ldaps_url, "tls_verify = true");
    assert_refused_as_untrusted(&w, "ldaps, tls_verify = true", "set ca_file");
    assert!(w.ad_groups().await.is_empty(), "nothing was written");

    // Another CA in ca_file: still refused, and the message names the file.
    let other = other_ca(&w);
    w.write_config();
    set_ad(
        &w,
        &w.dc.ldaps_url,
        &format!("ca_file = \"{}\"", other.display()),
    );
    assert_refused_as_untrusted(&w, "ldaps with another CA", "other-ca.pem");
    assert!(w.ad_groups().await.is_empty(), "nothing was written");

    // The lab CA in ca_file: accepted, over ldaps:// and over StartTLS.
    w.write_config();
    set_ad(
        &w,
        &w.dc.ldaps_url,
        &format!("ca_file = \"{}\"", w.dc.ca_file),
    );
    let r = w.writeback(&["sync", "--json"]);
    assert_eq!(r.code, 0, "ldaps with the lab CA\nstderr: {}", r.stderr);
    assert!(w.ad_group_of(&g).await.is_some(), "written over ldaps");
    w.write_config();
    set_ad(
        &w,
        &starttls_url(&w),
        &format!("starttls = true\nca_file = \"{}\"", w.dc.ca_file),
    );
    let r = w.writeback(&["sync", "--json"]);
    assert_eq!(r.code, 0, "StartTLS with the lab CA\nstderr: {}", r.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn turning_verification_off_is_explicit_and_warned_about() {
    let w = World::new("tls-off").await;
    set_ad(&w, &w.dc.ldaps_url, "tls_verify = false");
    let r = w.writeback(&["sync", "--json"]);
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert!(
        r.stderr.contains("tls_verify = false") && r.stderr.contains("NOT checked"),
        "the configuration's choice is warned about: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("verification is OFF"),
        "every connection says so: {}",
        r.stderr
    );
    // Not a value a typo can make: only the boolean false turns it off.
    w.write_config();
    set_ad(&w, &w.dc.ldaps_url, "tls_verify = \"no\"");
    let r = w.writeback(&["sync", "--json"]);
    assert_eq!(r.code, 2, "stderr: {}", r.stderr);
    assert!(r.stderr.contains("ad.tls_verify"), "{}", r.stderr);
}
