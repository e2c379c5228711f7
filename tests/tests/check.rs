//! `rtp-proxy check` as an operator runs it before a deploy: the built binary on config
//! files with real certificates. A config that loads passes and says when its
//! certificates and revocation lists run out; an expired certificate, or a stale list
//! the listener would refuse every caller with, fails with the reason; one close to
//! expiry passes with a warning.

use std::path::{Path, PathBuf};
use std::process::Command;

use rtp_proxy::pki::TestCa;
use rtp_proxy_tests::*;

/// A config file in `pki`'s directory: the test config with one route for every call
/// and an upstream nothing needs to answer (check never connects).
fn config_file(pki: &Pki, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = proxy_toml(
        pki,
        "https://127.0.0.1:9",
        "[[route]]\nname = \"everything\"\n",
    );
    let file = pki.path(name);
    std::fs::write(&file, edit(text)).expect("write config");
    file
}

/// The listener presents `<stem>.crt/.key` instead of the proxy's certificate.
fn listener_presents(pki: &Pki, stem: &str) -> impl Fn(String) -> String {
    let dir = pki.dir.path().display().to_string();
    let stem = stem.to_owned();
    move |text: String| {
        text.replacen(
            &format!("cert = \"{dir}/proxy.crt\"\nkey = \"{dir}/proxy.key\""),
            &format!("cert = \"{dir}/{stem}.crt\"\nkey = \"{dir}/{stem}.key\""),
            1,
        )
    }
}

/// The listener checks callers against `crl` (a file in `pki`'s directory).
fn listener_crl(pki: &Pki, crl: &str, more: &str) -> impl Fn(String) -> String {
    let dir = pki.dir.path().display().to_string();
    let line = format!("client_ca = \"{dir}/ca.crt\"\n");
    let with = format!("{line}crls = [\"{dir}/{crl}\"]\n{more}");
    move |text: String| text.replacen(&line, &with, 1)
}

struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

fn check(config: &Path) -> Run {
    let output = Command::new(rtp_proxy_binary())
        .args(["check", "--config"])
        .arg(config)
        .output()
        .expect("run rtp-proxy check");
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Issues `<stem>.crt/.key` for the listener, valid for `days` more days.
fn listener_certificate(pki: &Pki, stem: &str, days: i64) {
    let ca = TestCa::new("check test CA").expect("CA");
    ca.server_until(ids::PROXY, &["localhost", "127.0.0.1"], days)
        .expect("certificate")
        .write(pki.dir.path(), stem)
        .expect("write");
}

#[test]
fn a_config_that_loads_passes_and_says_when_its_certificates_and_lists_run_out() {
    let pki = Pki::generate();
    let file = config_file(&pki, "good.toml", listener_crl(&pki, "crl-none.pem", ""));
    let run = check(&file);
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("OK (1 upstream(s), 1 route(s), 0 policy(ies))"),
        "{}",
        run.stdout
    );
    for line in [
        "https listener: certificate valid until",
        "upstream ntjp: certificate valid until",
        "https listener: revocation list",
    ] {
        assert!(run.stdout.contains(line), "{line}: {}", run.stdout);
    }
    assert!(!run.stdout.contains("warning"), "{}", run.stdout);
}

#[test]
fn an_expired_certificate_fails_and_one_about_to_expire_warns() {
    let pki = Pki::generate();
    listener_certificate(&pki, "expired", -1);
    let run = check(&config_file(
        &pki,
        "expired.toml",
        listener_presents(&pki, "expired"),
    ));
    assert!(!run.success, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("https listener: the certificate expired at"),
        "{}",
        run.stderr
    );

    listener_certificate(&pki, "soon", 10);
    let run = check(&config_file(
        &pki,
        "soon.toml",
        listener_presents(&pki, "soon"),
    ));
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("warning: https listener: the certificate expires in"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_stale_revocation_list_fails_unless_the_listener_accepts_stale_lists() {
    let pki = Pki::generate();
    let stale = config_file(
        &pki,
        "stale.toml",
        listener_crl(&pki, "crl-expired.pem", ""),
    );
    let run = check(&stale);
    assert!(!run.success, "{}", run.stdout);
    assert!(
        run.stderr.contains("crl-expired.pem") && run.stderr.contains("would be refused"),
        "{}",
        run.stderr
    );

    let allowed = listener_crl(&pki, "crl-expired.pem", "allow_expired_crls = true\n");
    let run = check(&config_file(&pki, "allowed.toml", allowed));
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("accepted: allow_expired_crls"),
        "{}",
        run.stdout
    );
}
