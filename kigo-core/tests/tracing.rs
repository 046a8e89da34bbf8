//! Property 13: a refresh and its steps are traced as spans whose fields hold no secret, and user
//! IDs (personal data) reach logs only as a keyed hash, unless the operator opts in.

mod common;

use common::{MIN_TOKEN_AGE, World, user, warm};
use kigo_core::KeyScope;
use kigo_core::manager::UserIdLogging;
use kigo_testkit::logs::{Capture, assert_no_secret};

/// Logs of a first token, a 401 and a renewal for one user, with `logging`.
async fn logs_of_a_users_refreshes(logging: UserIdLogging) -> (String, Vec<String>) {
    let capture = Capture::default();
    let _default = tracing::subscriber::set_default(capture.subscriber());
    let world = World::new();
    let manager = world
        .builder(160)
        .scope(KeyScope::AnyUser)
        .log_user_ids(logging)
        .build()
        .unwrap();
    let handle = manager.handle(user("acme", "alice@example.com")).unwrap();
    let first = warm(&handle).await;
    let mut secrets = vec![handle.cached().unwrap().secret().expose().to_owned()];
    world.clock.advance(MIN_TOKEN_AGE);
    assert!(handle.invalidate(&first));
    warm(&handle).await;
    secrets.push(handle.cached().unwrap().secret().expose().to_owned());
    (capture.text(), secrets)
}

#[tokio::test(start_paused = true)]
async fn a_refresh_is_traced_step_by_step_without_user_ids_or_tokens() {
    let (logs, tokens) = logs_of_a_users_refreshes(UserIdLogging::default()).await;
    for span in ["kigo.refresh", "kigo.lease", "kigo.create", "kigo.commit"] {
        assert!(logs.contains(span), "no {span} span in:\n{logs}");
    }
    assert!(
        logs.contains("reason=\"rejected\"") || logs.contains("reason=rejected"),
        "{logs}"
    );
    assert!(
        logs.contains("user #"),
        "users named by their hash:\n{logs}"
    );
    assert_no_secret(
        &logs,
        &[
            ("the user ID", "alice"),
            ("a token", &tokens[0]),
            ("a token", &tokens[1]),
        ],
    );
}

#[tokio::test(start_paused = true)]
async fn user_ids_are_logged_as_they_are_only_when_asked_for() {
    let (logs, tokens) = logs_of_a_users_refreshes(UserIdLogging::as_is()).await;
    assert!(
        logs.contains("user alice@example.com of partner acme"),
        "{logs}"
    );
    assert_no_secret(&logs, &[("a token", &tokens[0]), ("a token", &tokens[1])]);
}
