//! API keys and scopes, and browsers kept out: the access matrix over every documented route, keys
//! revoked or expired refused at once by every process, WebSockets, content types, Host, CORS.

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{assert_error, spawn_app, spawn_app_with, spawn_replica, TestApp};

const ADMIN: &str = "test-bootstrap-admin-key-0123456789abcdef";

async fn keyed_app() -> TestApp {
    spawn_app_with(|s| s.security.admin_key = Some(ADMIN.into())).await
}

/// Creates a key with the bootstrap key; returns (secret, key_id).
async fn create_key(app: &TestApp, body: Value) -> (String, String) {
    let r = app.http.post(app.url("/api/keys")).bearer_auth(ADMIN).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let created: Value = r.json().await.unwrap();
    (created["secret"].as_str().unwrap().to_string(), created["key_id"].as_str().unwrap().to_string())
}

/// Every route of the served OpenAPI document declares a scope, and answers by it: 401 without a key,
/// 403 with a key below the scope, neither with one at or above it. A new route without a declared
/// scope fails here.
#[tokio::test]
async fn every_route_answers_by_the_scope_it_declares() {
    let app = keyed_app().await;
    let (read, _) = create_key(&app, json!({"scope": "read"})).await;
    let (write, _) = create_key(&app, json!({"scope": "write"})).await;
    let (admin, _) = create_key(&app, json!({"scope": "admin"})).await;
    let (_, doc) = app.get_json("/api/openapi.json").await;
    let rank = |s: &str| ["read", "write", "admin"].iter().position(|x| *x == s).unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let security = op["security"].as_array().unwrap_or_else(|| panic!("{method} {path} declares no scope"));
            if security.iter().any(|r| r.as_object().is_some_and(|o| o.is_empty())) {
                continue; // public: the health check
            }
            let needed = security[0]["api_key"][0].as_str().unwrap_or_else(|| panic!("{method} {path}: no scope"));
            let url = app.url(
                &path
                    .split('/')
                    .map(|s| if s.starts_with('{') { "00000000-0000-0000-0000-000000000000" } else { s })
                    .collect::<Vec<_>>()
                    .join("/"),
            );
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            for (key, scope) in [(None, ""), (Some(&read), "read"), (Some(&write), "write"), (Some(&admin), "admin")] {
                let mut request = app.http.request(method.clone(), &url);
                if method != Method::GET {
                    request = request.json(&json!({}));
                }
                if let Some(k) = key {
                    request = request.bearer_auth(k);
                }
                let status = request.send().await.unwrap().status().as_u16();
                let expected = match key {
                    None => Some(401),
                    Some(_) if rank(scope) < rank(needed) => Some(403),
                    Some(_) => None,
                };
                match expected {
                    Some(e) => assert_eq!(status, e, "{method} {path} with {scope:?} key (needs {needed})"),
                    None => assert!(status != 401 && status != 403, "{method} {path} with a {scope} key: {status}"),
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 150, "the matrix covered {checked} cases");
}

/// A key bound to a component records usage and reserves for that component only.
#[tokio::test]
async fn a_caller_can_ask_which_key_it_holds() {
    let app = keyed_app().await;
    let (codex, key_id) =
        create_key(&app, json!({"scope": "write", "component": "codex", "name": "codex on build-3"})).await;
    let me: Value =
        app.http.get(app.url("/api/keys/current")).bearer_auth(&codex).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        me,
        json!({"open": false, "scope": "write", "actor": "codex on build-3", "key_id": key_id, "component": "codex"})
    );
    let me: Value =
        app.http.get(app.url("/api/keys/current")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    assert_eq!((me["scope"].as_str(), me["actor"].as_str()), (Some("admin"), Some("BUDGET_ADMIN_KEY")));
    let r = app.http.get(app.url("/api/keys/current")).send().await.unwrap();
    assert_error(r, 401, "unauthenticated").await;

    // An open service: anyone is everything.
    let open = spawn_app().await;
    let (_, me) = open.get_json("/api/keys/current").await;
    assert_eq!(me, json!({"open": true, "scope": "admin", "actor": null, "key_id": null, "component": null}));
}

#[tokio::test]
async fn a_component_key_acts_for_its_component_only() {
    let app = keyed_app().await;
    let (codex, _) =
        create_key(&app, json!({"scope": "write", "component": "codex", "name": "codex on build-3"})).await;
    let record = |component: &str| {
        json!({"provider": "openai", "model": "gpt-4o", "component": component,
                                          "input_tokens": 10, "output_tokens": 1, "cost": "0.01"})
    };
    let send = |body: Value, path: &'static str| app.http.post(app.url(path)).bearer_auth(&codex).json(&body).send();
    assert_eq!(send(record("codex"), "/api/usage").await.unwrap().status().as_u16(), 201);
    assert_error(send(record("rhetor"), "/api/usage").await.unwrap(), 403, "forbidden").await;
    assert_error(
        send(json!({"records": [record("codex"), record("rhetor")]}), "/api/usage/batch").await.unwrap(),
        403,
        "forbidden",
    )
    .await;
    assert_error(
        send(json!({"context_id": "t", "component": "rhetor", "tokens": 10}), "/api/allocations").await.unwrap(),
        403,
        "forbidden",
    )
    .await;
    assert_eq!(app.events().await, 2, "the key and the one record: refused requests write nothing");

    // The log says which key wrote the record, and X-Budget-Actor only on whose behalf.
    let r = app
        .http
        .post(app.url("/api/usage"))
        .bearer_auth(&codex)
        .header("X-Budget-Actor", "alice")
        .json(&record("codex"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let db = app.db.pool.get().await.unwrap();
    let meta: Value = db
        .query_one(
            "SELECT metadata::json FROM events WHERE event_type = 'UsageRecorded' ORDER BY position DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        (meta["actor"].as_str(), meta["on_behalf_of"].as_str()),
        (Some("codex on build-3"), Some("alice")),
        "{meta}"
    );
    assert!(meta["key_id"].is_string());
}

/// Only a write key is bound to a component: a read key records nothing, and an admin key could make
/// itself an unbound key, so binding either would protect nothing while looking as if it did.
#[tokio::test]
async fn only_write_keys_are_bound_to_a_component() {
    let app = keyed_app().await;
    for scope in ["read", "admin"] {
        let r = app
            .http
            .post(app.url("/api/keys"))
            .bearer_auth(ADMIN)
            .json(&json!({"scope": scope, "component": "codex"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "validation_failed", "{body}");
        let problem = body["error"]["details"][0].to_string();
        assert!(problem.contains("component") && problem.contains("--scope write"), "{scope}: {body}");
    }
    assert_eq!(app.events().await, 0, "a refused key is not created");
    create_key(&app, json!({"scope": "write", "component": "codex"})).await;
}

/// A key bound to a component speaks for it: a request that leaves `component` out counts for the
/// key's component. Without such a key, leaving it out is refused and the error names both ways.
#[tokio::test]
async fn a_component_key_names_the_component_a_request_leaves_out() {
    let app = keyed_app().await;
    let (codex, _) = create_key(&app, json!({"scope": "write", "component": "codex"})).await;
    let record =
        json!({"provider": "openai", "model": "gpt-4o", "input_tokens": 10, "output_tokens": 1, "cost": "0.01"});
    let send = |body: Value, path: &'static str, key: &str| {
        app.http.post(app.url(path)).bearer_auth(key.to_string()).json(&body).send()
    };
    assert_eq!(send(record.clone(), "/api/usage", &codex).await.unwrap().status().as_u16(), 201);
    let batch: Value =
        send(json!({"records": [record.clone()]}), "/api/usage/batch", &codex).await.unwrap().json().await.unwrap();
    assert_eq!(batch["recorded"], 1, "{batch}");
    let r = send(json!({"context_id": "t-1", "tokens": 10}), "/api/allocations", &codex).await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let allocation: Value = r.json().await.unwrap();
    assert_eq!(allocation["component"], "codex", "{allocation}");
    let check = json!({"provider": "openai", "model": "gpt-4o", "input_tokens": 10, "max_output_tokens": 10});
    assert_eq!(send(check.clone(), "/api/usage/check", &codex).await.unwrap().status().as_u16(), 200);
    let components: Vec<String> = app
        .column(
            "SELECT payload::json->>'component' FROM events WHERE event_type IN ('UsageRecorded', 'AllocationCreated')",
        )
        .await;
    assert_eq!(components, ["codex", "codex", "codex"]);

    // The admin key is bound to no component: the request must name one.
    let before = app.events().await;
    for (body, path) in [
        (record.clone(), "/api/usage"),
        (json!({"records": [record.clone()]}), "/api/usage/batch"),
        (json!({"context_id": "t-1", "tokens": 10}), "/api/allocations"),
        (check, "/api/usage/check"),
    ] {
        let message = assert_error(send(body, path, ADMIN).await.unwrap(), 400, "validation_failed").await;
        assert!(message.contains("component") && message.contains("--component"), "{path}: {message}");
    }
    assert_eq!(app.events().await, before, "refused requests write nothing");
}

/// The last active admin key cannot be revoked while no bootstrap key stands in: nobody could then
/// manage keys, limits or prices (the other keys keep the service closed). With another admin key, or
/// with `BUDGET_ADMIN_KEY` set, it can.
#[tokio::test]
async fn the_last_admin_key_is_not_revoked_unless_a_bootstrap_key_stands_in() {
    let app = spawn_app().await; // open, on loopback, no bootstrap key
    let create = |scope: &'static str, with: Option<String>| {
        let (http, url) = (app.http.clone(), app.url("/api/keys"));
        async move {
            let mut r = http.post(url).json(&json!({"scope": scope}));
            if let Some(k) = with {
                r = r.bearer_auth(k);
            }
            let created: Value = r.send().await.unwrap().json().await.unwrap();
            (created["secret"].as_str().unwrap().to_string(), created["key_id"].as_str().unwrap().to_string())
        }
    };
    let revoke = |key_id: String, with: String| {
        let (http, url) = (app.http.clone(), app.url(&format!("/api/keys/{key_id}/revoke")));
        async move { http.post(url).bearer_auth(with).send().await.unwrap() }
    };
    let (first, first_id) = create("admin", None).await;
    let (_, _) = create("write", Some(first.clone())).await;
    let message = assert_error(revoke(first_id.clone(), first.clone()).await, 409, "last_admin_key").await;
    assert!(
        message.contains("last active admin key") && message.contains("budget keys create --scope admin"),
        "{message}"
    );
    assert!(message.contains("BUDGET_ADMIN_KEY") && message.contains("revoke the other keys first"), "{message}");
    let r = app.http.get(app.url("/api/keys")).bearer_auth(&first).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "the key still works");

    // With a second admin key, either may go; the one left may not.
    let (second, second_id) = create("admin", Some(first.clone())).await;
    assert_eq!(revoke(first_id, second.clone()).await.status().as_u16(), 200);
    assert_error(revoke(second_id.clone(), second.clone()).await, 409, "last_admin_key").await;

    // A bootstrap key stands in: then the last stored one may go.
    let keyed = spawn_replica(&app, |s| s.security.admin_key = Some(ADMIN.into())).await;
    let r = app.http.post(format!("{keyed}/api/keys/{second_id}/revoke")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // On loopback, the last key of all may go: the service runs open again, as before its first key.
    let app = spawn_app().await;
    let created: Value = app.post("/api/keys", &json!({"scope": "admin"})).await.json().await.unwrap();
    let (only, only_id) = (created["secret"].as_str().unwrap(), created["key_id"].as_str().unwrap());
    // Off loopback, keys stay required whatever is revoked: there even the last key of all is kept
    // (a second process of the same database, bound to every address; asked over loopback all the same).
    let exposed = spawn_replica(&app, |s| s.host = "0.0.0.0".into()).await;
    let r = app.http.post(format!("{exposed}/api/keys/{only_id}/revoke")).bearer_auth(only).send().await.unwrap();
    let message = assert_error(r, 409, "last_admin_key").await;
    assert!(!message.contains("revoke the other keys first"), "no other key to revoke, and no running open: {message}");
    let r = app.http.post(app.url(&format!("/api/keys/{only_id}/revoke"))).bearer_auth(only).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(app.http.get(app.url("/api/status")).send().await.unwrap().status().as_u16(), 200, "open again");
}

/// Revoked and expired keys are refused at once, by this process and by another one on the database.
#[tokio::test]
async fn revoked_or_expired_keys_are_refused_at_once_by_every_process() {
    let app = keyed_app().await;
    let replica = spawn_replica(&app, |s| s.security.admin_key = Some(ADMIN.into())).await;
    let (secret, key_id) = create_key(&app, json!({"scope": "read"})).await;
    let status = |base: String, key: String| {
        let http = app.http.clone();
        async move { http.get(format!("{base}/api/status")).bearer_auth(key).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(replica.clone(), secret.clone()).await, 200);
    let r = app.http.post(app.url(&format!("/api/keys/{key_id}/revoke"))).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(status(replica.clone(), secret.clone()).await, 401);
    assert_eq!(status(app.address.clone(), secret).await, 401);

    let (secret, key_id) = create_key(&app, json!({"scope": "read", "expires": "1d"})).await;
    assert_eq!(status(replica.clone(), secret.clone()).await, 200);
    // A day passes.
    let db = app.db.pool.get().await.unwrap();
    db.execute(
        "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE key_id = $1::text::uuid",
        &[&key_id],
    )
    .await
    .unwrap();
    let r = app.http.get(format!("{replica}/api/status")).bearer_auth(&secret).send().await.unwrap();
    let message = assert_error(r, 401, "unauthenticated").await;
    assert!(message.contains("expired"), "{message}");
}

/// The write routes take a key they have seen active without looking it up again; the write path
/// checks it in its transaction instead. So a key revoked through one process writes nothing through
/// another that remembers it, and nothing half-written is left: no event, no idempotency outcome.
#[tokio::test]
async fn a_revoked_key_writes_nothing_through_a_process_that_remembers_it() {
    let app = keyed_app().await;
    let replica = spawn_replica(&app, |s| s.security.admin_key = Some(ADMIN.into())).await;
    let (secret, key_id) = create_key(&app, json!({"scope": "write"})).await;
    let usage =
        json!({"provider": "openai", "model": "gpt-4o", "component": "c", "input_tokens": 10, "output_tokens": 5});
    let allocation = json!({"context_id": "t-1", "component": "c", "tokens": 100});
    let post = |base: &str, path: &str, key: &str, body: &Value| {
        let request = app.http.post(format!("{base}{path}")).bearer_auth(&secret).header("Idempotency-Key", key);
        request.json(body).send()
    };
    for base in [replica.clone(), app.address.clone()] {
        assert_eq!(post(&base, "/api/usage", &format!("u-{base}"), &usage).await.unwrap().status().as_u16(), 201);
        let r = post(&base, "/api/allocations", &format!("a-{base}"), &allocation).await.unwrap();
        assert_eq!(r.status().as_u16(), 201);
    }
    let db = app.db.pool.get().await.unwrap();
    let count = |sql: &'static str| {
        let db = &db;
        async move { db.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    let (events, outcomes) =
        (count("SELECT count(*) FROM events").await, count("SELECT count(*) FROM idempotency_keys").await);

    let r = app.http.post(app.url(&format!("/api/keys/{key_id}/revoke"))).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let events = events + 1; // the revocation
    for base in [replica.clone(), app.address.clone()] {
        for (path, body) in [
            ("/api/usage", usage.clone()),
            ("/api/usage/record", usage.clone()),
            ("/api/usage/batch", json!({"records": [usage.clone()]})),
            ("/api/allocations", allocation.clone()),
        ] {
            let r = post(&base, path, &format!("after-{path}"), &body).await.unwrap();
            let message = assert_error(r, 401, "unauthenticated").await;
            assert!(message.contains("revoked") && message.contains("nothing was written"), "{path}: {message}");
        }
    }
    assert_eq!(count("SELECT count(*) FROM events").await, events, "a revoked key appended events");
    assert_eq!(count("SELECT count(*) FROM idempotency_keys").await, outcomes, "a refused request stored an outcome");
}

/// WebSockets: no key refused once keys exist, a key in the query accepted, a bad key in the
/// `authentication` message closes the connection, a foreign Origin is refused.
#[tokio::test]
async fn websockets_need_a_key_and_a_known_origin() {
    let app = keyed_app().await;
    let (read, _) = create_key(&app, json!({"scope": "read"})).await;
    let ws = app.address.replace("http://", "ws://");
    assert!(tokio_tungstenite::connect_async(format!("{ws}/ws/budget/updates")).await.is_err(), "no key, no upgrade");
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("{ws}/ws/budget/updates?api_key={read}")).await.unwrap();
    socket
        .send(Message::Text(json!({"type": "authentication", "payload": {"api_key": "bgt_wrong"}}).to_string().into()))
        .await
        .unwrap();
    let mut refused = false;
    let mut closed = false;
    while let Ok(Some(frame)) = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next()).await {
        match frame {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "authentication" {
                    refused = v["payload"]["success"] == false;
                }
            }
            Ok(Message::Close(_)) | Err(_) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(refused && closed, "a bad key answers success false ({refused}) and closes ({closed})");

    let mut request = format!("{ws}/ws/budget/updates?api_key={read}").into_client_request().unwrap();
    request.headers_mut().insert("Origin", "http://evil.example".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_err(), "a foreign Origin is refused");
}

/// What a web page could send: text/plain is 415 and stores nothing; a foreign Host is 421; CORS is
/// answered for listed origins only.
#[tokio::test]
async fn browsers_are_kept_out_unless_listed() {
    let app = spawn_app_with(|s| s.security.cors_origins = vec!["https://ops.example.com".into()]).await;
    let policy = r#"{"period": "daily", "cost_limit": "0.000001", "type": "hard_limit"}"#;
    let r =
        app.http.post(app.url("/api/policies")).header("Content-Type", "text/plain").body(policy).send().await.unwrap();
    assert_error(r, 415, "unsupported_media_type").await;
    assert_eq!(app.events().await, 0, "nothing stored");

    let r = app.http.get(app.url("/api/status")).header("Host", "rebound.example:8013").send().await.unwrap();
    assert_error(r, 421, "misdirected_request").await;

    let preflight = |origin: &'static str| {
        app.http
            .request(Method::OPTIONS, app.url("/api/policies"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type")
            .send()
    };
    let ok = preflight("https://ops.example.com").await.unwrap();
    assert_eq!(ok.status().as_u16(), 204);
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://ops.example.com");
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(refused.headers().get("access-control-allow-origin").is_none());
    assert_eq!(refused.status().as_u16(), 403);
    let r = app
        .http
        .post(app.url("/api/policies"))
        .header("Origin", "https://evil.example")
        .json(&serde_json::from_str::<Value>(policy).unwrap())
        .send()
        .await
        .unwrap();
    assert_error(r, 403, "origin_refused").await;
    assert_eq!(app.events().await, 0, "nothing stored");
}

/// Past the rate, 429 with Retry-After.
#[tokio::test]
async fn a_key_past_its_rate_gets_429() {
    let app =
        spawn_app_with(|s| s.security.rate_limit = budget_api::auth::RateLimit { per_second: 1.0, burst: 3.0 }).await;
    for _ in 0..3 {
        assert_eq!(app.get_json("/api/status").await.0, 200);
    }
    let r = app.http.get(app.url("/api/status")).send().await.unwrap();
    assert!(r.headers().contains_key("retry-after"));
    assert_error(r, 429, "rate_limited").await;
}
