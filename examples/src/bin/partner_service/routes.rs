//! The HTTP routes. Handlers hold no secret longer than a request; the partner-level token is
//! used only inside kigo-http's client and managers, never put in a response.

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use kigo_http::{ClientError, ProgramId, reqwest};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;

use crate::error::ApiError;
use crate::kigo::Kigo;
use crate::sign_in::SignedIn;

/// The largest Kigo answer `/api/kigo` passes on.
const MAX_KIGO_BODY: usize = 1024 * 1024;

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
/// renewed and retried once on a `401`): Kigo's JSON on success, else a `502`.
async fn call_as_user(
    State(app): State<App>,
    SignedIn(user): SignedIn,
) -> Result<Response, ApiError> {
    let handle = app.kigo.users.handle(user)?;
    let client = app.kigo.api.client(handle.handle().clone());
    let response = client.send(client.get(&app.user_call)?).await?;
    if !response.status().is_success() {
        tracing::warn!(status = %response.status(), "Kigo refused a call as a user");
        return Err(ApiError::Refused);
    }
    let body = read_capped(response).await?;
    let json = HeaderValue::from_static("application/json");
    Ok(([(header::CONTENT_TYPE, json)], body).into_response())
}

/// The body of Kigo's answer, refused past [`MAX_KIGO_BODY`].
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ClientError::Request)? {
        if body.len() + chunk.len() > MAX_KIGO_BODY {
            tracing::warn!("a Kigo answer exceeded {MAX_KIGO_BODY} bytes");
            return Err(ApiError::Refused);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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
