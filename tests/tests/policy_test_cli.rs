//! `rtp-proxy policy test`: every shipped policy passes the cases it ships
//! (`policies/<name>/cases/`), run by the built binary against the built component; a
//! wrong expectation fails with a diff and a non-zero exit; an invalid case file is
//! reported with its file and line.

use std::path::{Path, PathBuf};
use std::process::Command;

use rtp_proxy_tests::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

fn policy_test(policy: &Path, cases: &[PathBuf]) -> Run {
    let output = Command::new(rtp_proxy_binary())
        .args(["policy", "test", "--policy"])
        .arg(policy)
        .arg("--cache-dir")
        .arg(policy_cache_dir())
        .args(cases)
        .output()
        .expect("run rtp-proxy policy test");
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn cases_dir(policy: &str) -> PathBuf {
    repo().join("policies").join(policy).join("cases")
}

/// Runs a shipped policy on its own cases: all pass, and there are at least three.
fn shipped_cases_pass(policy: &str) {
    let dir = cases_dir(policy);
    let count = std::fs::read_dir(&dir)
        .expect("the policy ships cases")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
        .count();
    assert!(count >= 3, "{policy} ships {count} case(s)");
    let run = policy_test(&shipped_policy_wasm(policy), &[dir]);
    assert!(run.success, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(&format!(
            "{count} case(s): {count} passed, 0 failed, 0 invalid"
        )),
        "{}",
        run.stdout
    );
    assert_eq!(
        run.stdout
            .lines()
            .filter(|l| l.starts_with("PASS "))
            .count(),
        count,
        "{}",
        run.stdout
    );
}

#[test]
fn look_back_passes_its_cases() {
    shipped_cases_pass("look-back");
}

#[test]
fn caller_filter_passes_its_cases() {
    shipped_cases_pass("caller-filter");
}

#[test]
fn osc_aob_passes_its_cases() {
    shipped_cases_pass("osc-aob");
}

#[test]
fn block_check_passes_its_cases() {
    shipped_cases_pass("block-check");
}

/// A look-back case for a request whose period starts in 2010, with the expected start
/// given.
fn clamp_case(expected_start: &str) -> String {
    let request = cases_dir("look-back").join("messages/cd2-request-2010-to-2024.xml");
    format!(
        r#"name = "clamped to {expected_start}"
request = "{request}"
now = "2024-03-15"

[settings]
default = "36 months"

[expect]
verdict = "proceed"
edits = [{{ set_period = {{ start = "{expected_start}", end = "20240301" }} }}]
"#,
        request = request.display()
    )
}

#[test]
fn a_wrong_expectation_fails_with_a_diff_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let right = dir.path().join("right.toml");
    std::fs::write(&right, clamp_case("20210315")).expect("write case");
    let wrong = dir.path().join("wrong.toml");
    std::fs::write(&wrong, clamp_case("20210101")).expect("write case");
    let run = policy_test(&shipped_policy_wasm("look-back"), &[right, wrong.clone()]);
    assert!(!run.success, "{}", run.stdout);
    let out = &run.stdout;
    assert!(out.contains("PASS clamped to 20210315"), "{out}");
    assert!(
        out.contains(&format!(
            "FAIL clamped to 20210101 ({}) (- expected, + actual)",
            wrong.display()
        )),
        "{out}"
    );
    assert!(out.contains("  edits:\n"), "{out}");
    assert!(
        out.contains("    - set-period start=20210101 end=20240301\n"),
        "{out}"
    );
    assert!(
        out.contains("    + set-period start=20210315 end=20240301\n"),
        "{out}"
    );
    assert!(
        out.contains("2 case(s): 1 passed, 1 failed, 0 invalid"),
        "{out}"
    );
    assert!(run.stderr.contains("1 case(s) failed"), "{}", run.stderr);
}

#[test]
fn an_invalid_case_file_is_named_with_its_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let typo = dir.path().join("typo.toml");
    // Line 10: `dropped` must be a list of record indexes.
    let text = clamp_case("20210315").replace("edits = [", "dropped = \"all\"\nedits = [");
    std::fs::write(&typo, text).expect("write case");
    let no_response = dir.path().join("no-response.toml");
    // Line 10: a response phase is expected, but the case gives no response.
    let text = clamp_case("20210315").replace("edits = [", "dropped = [1]\nedits = [");
    std::fs::write(&no_response, text).expect("write case");

    let run = policy_test(
        &shipped_policy_wasm("look-back"),
        &[typo.clone(), no_response.clone()],
    );
    assert!(!run.success, "{}", run.stdout);
    let out = &run.stdout;
    assert!(
        out.contains(&format!("ERROR {}:10: ", typo.display())),
        "{out}"
    );
    assert!(out.contains("invalid type: string \"all\""), "{out}");
    assert!(
        out.contains(&format!(
            "ERROR {}:10: key `expect.dropped`: expects a response phase, but the case has no `response`",
            no_response.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("2 case(s): 0 passed, 0 failed, 2 invalid"),
        "{out}"
    );
}
