//! The router: every route, the fallbacks and the middleware shared by both listeners (metrics,
//! protobuf error bodies, timeout, body limit). The handlers live in `routes/`.

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use super::codec;
use super::errors::ApiError;
use super::routes::{self, status};
use super::state::AppState;

/// The public router. The admin routes are included only when the admin API is enabled and
/// has no listener of its own.
pub fn router(state: AppState) -> Router {
    let recommend_route = if state.config.http_floor {
        post(routes::floor::recommend)
    } else {
        post(routes::recommend::recommend)
    };
    let mut app = Router::new()
        .route("/recommend", recommend_route)
        .route("/healthz", get(status::healthz))
        .route("/readyz", get(status::readyz))
        .route("/v1/models", get(status::list_models))
        .route("/v1/models/{name}", get(status::model_detail))
        .route("/metrics", get(status::metrics))
        .route("/openapi.json", get(super::openapi::serve));
    if state.config.admin_token.is_some() && state.config.admin_addr.is_none() {
        app = app.merge(routes::admin::routes(state.clone()));
    }
    finish(app, state)
}

/// The admin-only router for `--admin-addr`.
pub fn admin_router(state: AppState) -> Router {
    finish(routes::admin::routes(state.clone()), state)
}

/// Layers shared by both listeners: the body limit, and one edge middleware ([`edge`]).
fn finish(app: Router<AppState>, state: AppState) -> Router {
    app.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), edge))
        .with_state(state)
}

/// Everything around a handler, outermost first: HTTP metrics, protobuf error bodies (outside
/// the deadline, so its 503 is re-encoded too), the request deadline. One middleware rather
/// than three: each `from_fn` layer clones and boxes the inner service on every request.
async fn edge(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map(MatchedPath::as_str);
    let method = method_label(req.method());
    let protobuf_errors = codec::wants_protobuf_errors(&req);
    let deadline = deadline(&st, route);

    let response = match tokio::time::timeout(deadline, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    };
    let response = if protobuf_errors {
        codec::protobuf_error_body(response)
    } else {
        response
    };
    track(&st, route, method, &response, start);
    response
}

/// The one place HTTP metrics are recorded, labelled by route template (never the raw path).
fn track(st: &AppState, route: Option<&str>, method: &str, response: &Response, start: Instant) {
    let route = route.unwrap_or("unmatched");
    st.metrics
        .http_requests
        .with_label_values(&[route, method, response.status().as_str()])
        .inc();
    st.metrics
        .http_duration
        .with_label_values(&[route, method])
        .observe(start.elapsed().as_secs_f64());
}

/// Whole-request deadline. Dropping the handler future also closes its reply channel, so the
/// batcher skips the job if it has not run yet. Admin routes load models, which has its own
/// deadline (`--load-timeout-ms`, enforced by the registry); the request deadline must not cut
/// such a load short, so they get both.
fn deadline(st: &AppState, route: Option<&str>) -> std::time::Duration {
    if route.is_some_and(|r| r.starts_with("/admin/")) {
        st.config.load_timeout() + st.config.request_timeout()
    } else {
        st.config.request_timeout()
    }
}

/// The `method` label: the standard methods by name, anything else `other` (any token is
/// a valid method, so the raw value would let clients create unlimited series).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> Response {
    let mut r = ApiError::Validation("method not allowed for this route".into()).into_response();
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::config::Config;
    use axum::body::Body;
    use clap::Parser;
    use tower::ServiceExt;

    fn make_app(extra: &[&str]) -> (tempfile::TempDir, Router) {
        let repo = tempfile::tempdir().unwrap();
        let mut args = vec!["distilrec", "--models", repo.path().to_str().unwrap()];
        args.extend_from_slice(extra);
        let config = Config::try_parse_from(args).unwrap();
        (repo, router(super::super::state::app_state(config)))
    }

    async fn call(app: &Router, req: axum::http::Request<Body>) -> (StatusCode, String) {
        let r = app.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn post(path: &str, body: &str) -> axum::http::Request<Body> {
        axum::http::Request::post(path)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    }

    fn get(path: &str) -> axum::http::Request<Body> {
        axum::http::Request::get(path).body(Body::empty()).unwrap()
    }

    #[test]
    fn methods_map_to_a_fixed_set() {
        assert_eq!(method_label(&Method::POST), "POST");
        let odd = Method::from_bytes(b"M0042X").unwrap();
        assert_eq!(method_label(&odd), "other");
    }

    #[tokio::test]
    async fn live_but_not_ready_without_a_model() {
        let (_repo, app) = make_app(&[]);
        assert_eq!(call(&app, get("/healthz")).await.0, StatusCode::OK);
        assert_eq!(
            call(&app, get("/readyz")).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let (status, body) = call(&app, post("/recommend", r#"{"history": ["a"]}"#)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains(r#""error_type":"not_ready""#), "{body}");
        let (status, body) = call(
            &app,
            post("/recommend", r#"{"history": ["a"], "model": "x"}"#),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains(r#""error_type":"unknown_model""#), "{body}");
    }

    #[tokio::test]
    async fn bad_bodies_get_our_error_format_and_are_counted_once() {
        let (_repo, app) = make_app(&["--max-body-bytes", "100"]);
        let (status, body) = call(&app, post("/recommend", "{")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains(r#""error_type":"malformed_json""#), "{body}");
        let big = format!(r#"{{"history": ["{}"]}}"#, "x".repeat(200));
        let (status, body) = call(&app, post("/recommend", &big)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            body.contains(r#""error_type":"payload_too_large""#),
            "{body}"
        );
        let (status, metrics) = call(&app, get("/metrics")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(metrics.contains(
            r#"distilrec_http_requests_total{method="POST",route="/recommend",status="400"} 1"#
        ));
        assert!(metrics.contains(
            r#"distilrec_http_requests_total{method="POST",route="/recommend",status="413"} 1"#
        ));
    }

    #[tokio::test]
    async fn admin_routes_exist_only_when_enabled_and_need_the_token() {
        let (_repo, app) = make_app(&[]);
        let (status, _) = call(&app, post("/admin/models/m/unpin", "")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_repo, app) = make_app(&["--admin-token", "secret-token"]);
        let (status, body) = call(&app, post("/admin/models/m/unpin", "")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        let req = axum::http::Request::post("/admin/models/m/unpin")
            .header("authorization", "Bearer secret-token")
            .body(Body::empty())
            .unwrap();
        let (status, body) = call(&app, req).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains(r#""error_type":"unknown_model""#), "{body}");
    }
}
