//! The HTTP routes. Handlers hold no secret longer than a request; the partner-level token is
//! used only inside kigo-http's client and managers, never put in a response.

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use kigo_http::ProgramId;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;

use crate::error::ApiError;
use crate::kigo::Kigo;
use crate::sign_in::SignedIn;

/// What every handler shares.
#[derive(Clone)]
struct App {
    kigo: Kigo,
    metrics: PrometheusHandle,
    user_call: String,
}

/// The service's routes.
pub(crate) fn router(kigo: Kigo, metrics: PrometheusHandle, user_call: String) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/session", get(session))
        .route("/kigo/sso", get(sso))
        .route("/api/kigo", get(call_as_user))
        .route("/healthz", get(healthz))
        .route("/metrics", get(prometheus))
        .fallback(|| async { ApiError::NotFound })
        .with_state(App {
            kigo,
            metrics,
            user_call,
        })
}

/// The front end: a page that gets its session from `/session`.
async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

/// The signed-in user's front-end session: user-level token, expiry, seconds left.
async fn session(State(app): State<App>, SignedIn(user): SignedIn) -> Result<Response, ApiError> {
    let session = app.kigo.users.session(user).await?;
    Ok(not_stored(Json(session)))
}

#[derive(Deserialize)]
struct SsoQuery {
    program: Option<String>,
}

/// Sends the signed-in user to the Kigo-hosted page with an SSO session of `program`.
async fn sso(
    State(app): State<App>,
    SignedIn(user): SignedIn,
    Query(query): Query<SsoQuery>,
) -> Result<Response, ApiError> {
    let program = match query.program.filter(|program| !program.is_empty()) {
        Some(program) => Some(
            ProgramId::new(program).map_err(|_| ApiError::InvalidInput { what: "program ID" })?,
        ),
        None => None,
    };
    let session = app.kigo.sso.session(user, program).await?;
    let page = session.page_url(&app.kigo.sso_page);
    Ok(not_stored(Redirect::to(page.as_str())))
}

/// A Kigo API call as the signed-in user, through the authenticated client (bearer added,
/// renewed and retried once on a `401`); answers Kigo's status and JSON.
async fn call_as_user(
    State(app): State<App>,
    SignedIn(user): SignedIn,
) -> Result<Response, ApiError> {
    let handle = app.kigo.users.handle(user)?;
    let client = app.kigo.api.client(handle.handle().clone());
    let response = client.send(client.get(&app.user_call)?).await?;
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = response
        .bytes()
        .await
        .map_err(kigo_http::ClientError::Request)?;
    Ok((
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// Live and ready (200), or why not (503), from the partner-level manager.
async fn healthz(State(app): State<App>) -> Response {
    let health = app.kigo.partners.health();
    let status = if health.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health)).into_response()
}

/// The managers' metrics, in Prometheus text.
async fn prometheus(State(app): State<App>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        app.metrics.render(),
    )
        .into_response()
}

/// `response`, marked so that no cache keeps it (it carries a secret).
fn not_stored(response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
