//! A web app on one origin calls the API on another, in a real browser (headless Chromium),
//! through the gateway that template.yaml declares: with `CorsAllowedOrigins` naming the app,
//! every call succeeds and the script reads the headers it needs; without it, the browser
//! refuses every call.

use e2e::{
    browser::{dump_dom, PageServer},
    gateway::{rsa_token, Deployment},
};
use serde_json::{json, Value};
use test_support::tokens::FULL_SCOPE;

/// The app's script: create, read, list, patch with `If-Match`, delete, each step's status and
/// the headers it read (or how the browser refused it), written into `#out` as JSON.
const APP: &str = r#"<!doctype html>
<html><body><pre id="out">pending</pre><script>
const api = "GATEWAY";
const auth = { authorization: "Bearer TOKEN" };
const out = {};
async function step(name, call) {
  try { out[name] = await call(); } catch (e) { out[name] = "refused: " + e.name; }
}
(async () => {
  // A user the database already has, for the steps after a create the browser refused.
  let location = "/users/1", etag = '"1"';
  await step("create", async () => {
    const r = await fetch(api + "/users", { method: "POST", headers: { ...auth,
      "content-type": "application/json", "idempotency-key": "browser-1" },
      body: JSON.stringify({ email: "ada@example.com", name: "Ada" }) });
    location = r.headers.get("location") ?? "unread";
    return { status: r.status, location };
  });
  await step("read", async () => {
    const r = await fetch(api + location, { headers: auth });
    etag = r.headers.get("etag") ?? "unread";
    return { status: r.status, etag };
  });
  await step("list", async () => {
    const r = await fetch(api + "/users?limit=10", { headers: auth });
    return { status: r.status, count: (await r.json()).items.length };
  });
  await step("patch", async () => {
    const r = await fetch(api + location, { method: "PATCH", headers: { ...auth,
      "content-type": "application/json", "if-match": etag },
      body: JSON.stringify({ name: "Ada Lovelace" }) });
    return { status: r.status, etag: r.headers.get("etag") };
  });
  await step("stale", async () => {
    const r = await fetch(api + location, { method: "DELETE", headers: { ...auth,
      "if-match": etag } });
    return { status: r.status };
  });
  await step("delete", async () => {
    const r = await fetch(api + location, { method: "DELETE", headers: auth });
    return { status: r.status };
  });
  document.getElementById("out").textContent = JSON.stringify(out);
})();
</script></body></html>
"#;

/// What the app's script wrote, once the browser is done with the page, and how many
/// environments the deployment started.
async fn run_app(name: &str, cors: bool) -> (Value, usize) {
    // The deploy names the app's origin, and the app the gateway's address.
    let page = PageServer::start().await;
    let parameters: Vec<(&str, &str)> = match cors {
        true => vec![("CorsAllowedOrigins", page.origin.as_str())],
        false => vec![],
    };
    let deployment = Deployment::start(name, &parameters).await;
    sqlx::query("INSERT INTO users (email, name) VALUES ('seed@example.com', 'Seed')")
        .execute(&mut deployment.database.connect().await)
        .await
        .expect("a user");
    page.serve(
        APP.replace("GATEWAY", &deployment.gateway.url)
            .replace("TOKEN", &rsa_token(FULL_SCOPE, json!({}))),
    );

    let dom = dump_dom(&format!("{}/app", page.origin)).await;
    let start = dom.find("<pre id=\"out\">").expect("the page's output") + "<pre id=\"out\">".len();
    let end = dom[start..].find("</pre>").expect("the end of the output") + start;
    let text = dom[start..end]
        .replace("&quot;", "\"")
        .replace("&amp;", "&");
    let out =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("the script did not finish: {text}"));
    (out, deployment.environments.started_in_all())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_cors_configured_a_web_app_on_another_origin_does_everything() {
    let (out, _) = run_app("browser_cors", true).await;

    assert_eq!(out["create"]["status"], 201, "{out}");
    let location = out["create"]["location"]
        .as_str()
        .expect("Location read by the script");
    assert!(location.starts_with("/users/"), "{out}");
    assert_eq!(out["read"]["status"], 200, "{out}");
    assert_eq!(
        out["read"]["etag"], "\"1\"",
        "ETag read by the script: {out}"
    );
    assert_eq!(out["list"], json!({"status": 200, "count": 2}));
    assert_eq!(out["patch"], json!({"status": 200, "etag": "\"2\""}));
    assert_eq!(out["stale"], json!({"status": 412}), "{out}");
    assert_eq!(out["delete"], json!({"status": 204}), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cors_the_browser_refuses_every_call() {
    let (out, started) = run_app("browser_no_cors", false).await;

    // Each call, on a user that exists, needs a preflight (it sends a token), which no route
    // and no CORS configuration answers: the browser sends none of them.
    for step in ["create", "read", "list", "patch", "stale", "delete"] {
        assert_eq!(out[step], "refused: TypeError", "{step}: {out}");
    }
    assert_eq!(started, 0, "no function ran");
}
