//! The quickstart binary as a user runs it: the fleet simulation (shared store, and a store per
//! replica, which must fail its one-token-per-renewal check), and the real-API path pointed at a
//! mock Kigo server through the `KIGO_*` variables.

use std::process::Output;
use std::time::Duration;

use kigo_testkit::mock::MockKigo;
use tokio::process::Command;

const CREDENTIAL_VARS: [&str; 3] = ["KIGO_API_KEY", "KIGO_PARTNER_ID", "KIGO_BASE_URL"];

/// Runs the quickstart with `args` and `vars` (and no other `KIGO_*` variable), with a deadline.
async fn quickstart(args: &[&str], vars: &[(&str, &str)]) -> (Output, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_quickstart"));
    command.args(args).kill_on_drop(true);
    for name in CREDENTIAL_VARS {
        command.env_remove(name);
    }
    command.envs(vars.iter().copied());
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the quickstart ends within 60 s")
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, text)
}

/// The figure on the report line starting with `label`.
fn figure(report: &str, label: &str) -> f64 {
    let line = report
        .lines()
        .find(|line| line.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no line {label:?} in:\n{report}"));
    line.trim_start()[label.len()..]
        .split_whitespace()
        .next()
        .and_then(|figure| figure.parse().ok())
        .unwrap_or_else(|| panic!("no figure on {line:?}"))
}

#[tokio::test]
async fn a_shared_store_costs_one_creation_per_renewal() {
    let (output, report) = quickstart(&[], &[]).await;
    assert!(output.status.success(), "{report}");
    assert_eq!(figure(&report, "creations per renewal"), 1.0, "{report}");
    assert!(figure(&report, "renewals") >= 2.0, "{report}");
}

#[tokio::test]
async fn a_store_per_replica_fails_the_one_creation_per_renewal_check() {
    let (output, report) = quickstart(&["--store-per-replica"], &[]).await;
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(
        figure(&report, "creations per renewal") > 1.5,
        "four replicas each create their own tokens:\n{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_credentials_it_creates_a_real_token_and_prints_its_expiry_only() {
    let mock = MockKigo::start().await.unwrap();
    let vars = [
        ("KIGO_API_KEY", mock.api_key()),
        ("KIGO_PARTNER_ID", mock.partner_id().as_str()),
        ("KIGO_BASE_URL", mock.base_url()),
    ];
    let (output, report) = quickstart(&[], &vars).await;
    assert!(output.status.success(), "{report}");
    assert!(report.contains("expires in"), "{report}");
    assert_eq!(mock.creations(&mock.partner_key()), 1);
    let everything = format!("{report}{}", String::from_utf8_lossy(&output.stderr));
    for (name, secret) in [
        ("the API key", mock.api_key()),
        ("a partner-level token", "kigo_partner_"),
    ] {
        // Say where, never what: the output would show the secret.
        if let Some(at) = everything.find(secret) {
            panic!("{name} leaked into the output at byte {at}");
        }
    }
}
