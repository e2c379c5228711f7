//! `rtp-proxy check`: a good configuration passes, a broken one fails with a message that
//! names the file, the line and the key.

use std::path::Path;
use std::process::Command;

use rtp_proxy::pki::TestCa;

fn check(config: &Path) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_rtp-proxy"))
        .args(["check", "--config"])
        .arg(config)
        .output()
        .expect("run rtp-proxy");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn write_pki(dir: &Path) {
    let ca = TestCa::new("ca").unwrap();
    std::fs::write(dir.join("ca.crt"), ca.cert_pem()).unwrap();
    ca.server("SE-RTP", &["127.0.0.1"])
        .unwrap()
        .write(dir, "proxy")
        .unwrap();
}

const CONFIG: &str = r#"[proxy]
instance_id = "rtp-check"
default_upstream = "ntjp"

[https]
listen = "127.0.0.1:8443"
cert = "proxy.crt"
key = "proxy.key"
client_ca = "ca.crt"

[[upstream]]
name = "ntjp"
url = "https://127.0.0.1:9443"
client_cert = "proxy.crt"
client_key = "proxy.key"
ca = "ca.crt"

[[route]]
name = "all"
"#;

#[test]
fn a_good_config_passes() {
    let dir = tempfile::tempdir().unwrap();
    write_pki(dir.path());
    let path = dir.path().join("rtp-proxy.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let (ok, stdout, stderr) = check(&path);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("OK (1 upstream(s), 1 route(s), 0 policy(ies))"),
        "{stdout}"
    );
}

#[test]
fn a_broken_config_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    write_pki(dir.path());
    let path = dir.path().join("rtp-proxy.toml");
    std::fs::write(
        &path,
        CONFIG.replace("name = \"all\"", "name = \"all\"\nupstream = \"nowhere\""),
    )
    .unwrap();
    let (ok, _, stderr) = check(&path);
    assert!(!ok);
    let expected = format!(
        "{}:20: key `route[0].upstream`: no [[upstream]] is named \"nowhere\"",
        path.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn a_syntax_error_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rtp-proxy.toml");
    std::fs::write(
        &path,
        CONFIG.replace("instance_id = \"rtp-check\"", "instance_id = rtp-check"),
    )
    .unwrap();
    let (ok, _, stderr) = check(&path);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("{}:2:", path.display())),
        "{stderr}"
    );
}

#[test]
fn a_key_file_that_is_not_a_key_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_pki(dir.path());
    std::fs::write(dir.path().join("proxy.key"), "not a key").unwrap();
    let path = dir.path().join("rtp-proxy.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let (ok, _, stderr) = check(&path);
    assert!(!ok);
    assert!(stderr.contains("proxy.key"), "{stderr}");
}

#[test]
fn a_missing_file_is_reported() {
    let (ok, _, stderr) = check(Path::new("/nonexistent/rtp-proxy.toml"));
    assert!(!ok);
    assert!(
        stderr.contains("/nonexistent/rtp-proxy.toml: cannot read the file"),
        "{stderr}"
    );
}
