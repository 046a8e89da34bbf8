//! The partner service as a fleet runs it: three processes on one real store (Redis, then
//! PostgreSQL) and the mock Kigo API, driven over HTTP. One partner-level creation for all
//! three; each user's session and SSO session the same whichever instance answers; health and
//! metrics answer; after SIGTERM one instance exits 0 and the others go on; no secret in their
//! output.

mod common;

use common::{Fleet, Service, WITHIN, service_command};
use kigo_core::UserId;
use kigo_testkit::eventually_some;
use kigo_testkit::logs::assert_no_secret;
use kigo_testkit::mock::{Endpoint, Fault, PROTECTED_PATH, RetryAfter};

const USERS: [&str; 2] = ["alice", "bob"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_redis_act_as_one_client() {
    let redis = kigo_test_services::redis::private_redis().await.unwrap();
    three_instances_act_as_one_client(Fleet::new(redis.url().to_owned()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_postgres_act_as_one_client() {
    let database = kigo_test_services::postgres::database().await.unwrap();
    three_instances_act_as_one_client(Fleet::new(database.url().to_owned()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_it_serves_a_demo_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Service::start(service_command(dir.path())).await;
    demo.ready().await;
    let session: serde_json::Value = demo
        .get("/session", Some("alice"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        session["expires_in_seconds"].as_u64().is_some(),
        "seconds left: {}",
        session["expires_in_seconds"]
    );
    let page = demo.get("/", None).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("fetch(\"/session\""));

    let status = demo.terminate().await;
    assert!(
        status.success(),
        "exit after SIGTERM: {status}\n{}",
        demo.output()
    );
    let output = demo.output();
    assert!(output.contains("demo mode"), "{output}");
    assert_no_secret(
        &output,
        &[("the token", session["token"].as_str().unwrap())],
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "the demo left files in its directory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_503_with_reasons_while_kigo_refuses_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new(format!("sqlite:{}", dir.path().join("kigo.db").display())).await;
    fleet
        .mock
        .inject_always(Endpoint::PartnerSession, Some(Fault::Status(503)));
    let instance = fleet.start().await;
    let reasons = eventually_some("/healthz answers 503 with a reason", WITHIN, async || {
        let response = instance.get("/healthz", None).await;
        let status = response.status();
        let health: serde_json::Value = response.json().await.unwrap();
        let reasons = health["reasons"].as_array().cloned().unwrap_or_default();
        (status == 503 && !reasons.is_empty() && health["live"] == true).then_some(reasons)
    })
    .await;
    assert!(
        reasons[0].as_str().unwrap().contains("partner acme"),
        "{reasons:?}"
    );
    let response = instance.get("/session", Some("alice")).await;
    assert_eq!(
        response.status(),
        503,
        "a session without a partner-level token"
    );
    assert_error(response, "kigo_unavailable").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kigo_failures_answer_json_with_a_status_the_front_end_can_act_on() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new(format!("sqlite:{}", dir.path().join("kigo.db").display())).await;
    let instance = fleet.start().await;
    instance.ready().await;

    fleet
        .mock
        .inject(Endpoint::UserSession, [Fault::Status(400)]);
    let response = instance.get("/session", Some("dave")).await;
    assert_eq!(response.status(), 502, "Kigo refuses");
    assert_error(response, "kigo_refused").await;

    fleet
        .mock
        .inject(Endpoint::Protected, [Fault::HugeBody(4 << 20)]);
    let response = instance.get("/api/kigo", Some("erin")).await;
    assert_eq!(response.status(), 502, "Kigo answers 4 MiB");
    assert_error(response, "kigo_refused").await;

    // Last: the fleet then cools down for 30 s.
    let busy = Fault::TooManyRequests(Some(RetryAfter::Seconds(30)));
    fleet.mock.inject(Endpoint::UserSession, [busy]);
    let response = instance.get("/session", Some("carol")).await;
    assert_eq!(response.status(), 503, "Kigo rate-limits");
    assert!(response.headers().contains_key("retry-after"));
    assert_error(response, "kigo_unavailable").await;

    let response = instance.get("/no/such/page", None).await;
    assert_eq!(response.status(), 404);
    assert_error(response, "not_found").await;

    // The two failures to get a token are logged, and no log names its user: user IDs are
    // personal data.
    let output = eventually_some("both failures logged", WITHIN, async || {
        let output = instance.output();
        (output.matches("a Kigo call failed").count() >= 2).then_some(output)
    })
    .await;
    for user in ["dave", "erin", "carol"] {
        assert!(!output.contains(user), "{user} named in the log:\n{output}");
    }
}

async fn assert_error(response: reqwest::Response, code: &str) {
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], code, "{body}");
}

async fn three_instances_act_as_one_client(fleet: Fleet) {
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(fleet.start().await);
    }
    for instance in &instances {
        instance.ready().await;
    }
    let partner = fleet.mock.partner_key();
    assert_eq!(fleet.mock.creations(&partner), 1, "partner-level creations");

    let mut handed_out = Vec::new();
    for user in USERS {
        let tokens = sessions(&instances, user).await;
        assert!(
            tokens.iter().all(|token| *token == tokens[0]),
            "the instances handed {user} different sessions"
        );
        let key =
            kigo_core::TokenKey::user(fleet.mock.partner_id().clone(), UserId::new(user).unwrap());
        assert_eq!(
            fleet.mock.creations(&key),
            1,
            "user-level creations for {user}"
        );
        handed_out.extend(tokens);
    }
    assert!(
        handed_out[0] != handed_out[3],
        "alice and bob share a session"
    );

    signed_out_requests_are_refused_with_json(&instances[0]).await;
    sso_redirects_are_shared(&fleet, &instances).await;
    calls_as_the_user_reach_kigo(&instances[1], fleet.mock.partner_id().as_str()).await;
    for instance in &instances {
        let metrics = instance.get("/metrics", None).await;
        assert_eq!(metrics.status(), 200);
        let text = metrics.text().await.unwrap();
        assert!(
            text.contains("kigo_store_operations_total"),
            "no kigo_ series:\n{text}"
        );
    }

    let mut stopped = instances.remove(0);
    let status = stopped.terminate().await;
    assert!(
        status.success(),
        "exit after SIGTERM: {status}\n{}",
        stopped.output()
    );
    for instance in &instances {
        instance.ready().await;
        let tokens = sessions(std::slice::from_ref(instance), USERS[0]).await;
        assert!(
            tokens[0] == handed_out[0],
            "alice's session changed after SIGTERM"
        );
    }
    assert_eq!(fleet.mock.creations(&partner), 1, "partner-level creations");

    for instance in instances.iter().chain([&stopped]) {
        let secrets: Vec<(&str, &str)> = handed_out
            .iter()
            .map(|token| ("a token handed out", token.as_str()))
            .chain([
                ("the API key", fleet.mock.api_key()),
                ("the sealing key", fleet.keys_text()),
            ])
            .collect();
        assert_no_secret(&instance.output(), &secrets);
    }
}

/// The token `/session` hands `user` from each of `instances`.
async fn sessions(instances: &[Service], user: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    for instance in instances {
        tokens.push(instance.session_token(user).await);
    }
    tokens
}

async fn signed_out_requests_are_refused_with_json(instance: &Service) {
    for path in ["/session", "/kigo/sso", "/api/kigo"] {
        let response = instance.get(path, None).await;
        assert_eq!(response.status(), 401, "{path} signed out");
        assert_error(response, "signed_out").await;
    }
    let too_long = "u".repeat(10_000);
    let response = instance.get("/session", Some(&too_long)).await;
    assert_eq!(response.status(), 400, "an unusable user ID");
}

async fn sso_redirects_are_shared(fleet: &Fleet, instances: &[Service]) {
    let page = format!("{}?session-id=", fleet.mock.sso_page_url());
    let mut locations = Vec::new();
    for instance in instances {
        let response = instance
            .get("/kigo/sso?program=spring", Some("alice"))
            .await;
        assert_eq!(response.status(), 303);
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        assert!(
            location.starts_with(&page),
            "not a redirect to the hosted page"
        );
        locations.push(location);
    }
    assert!(
        locations.iter().all(|location| *location == locations[0]),
        "the instances sent alice to different SSO sessions"
    );
    let alice = UserId::new("alice").unwrap();
    assert_eq!(fleet.mock.sso_creations(Some("spring"), &alice), 1);
}

async fn calls_as_the_user_reach_kigo(instance: &Service, partner: &str) {
    let response = instance.get("/api/kigo", Some("bob")).await;
    assert_eq!(response.status(), 200, "{PROTECTED_PATH} as bob");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["key"], format!("u/{partner}/bob"));
}
