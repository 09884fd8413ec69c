//! Driving `shopsync serve` as a merchant and Shopify do: the binary, real HTTP.

#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running `shopsync serve`, killed when dropped.
pub struct Server {
    /// Its base URL.
    pub url: String,
    child: Child,
    /// Its data directory.
    pub dir: tempfile::TempDir,
    /// What it printed when it started.
    pub banner: String,
}

impl Server {
    /// Waits for the process to end by itself (a crash hook) within `timeout`; whether it
    /// did, and how.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }

    /// Stops this host; its data directory stays (until the returned guard is dropped).
    pub fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    /// Stops this host and starts another on the same data directory.
    pub fn restart(mut self, products: usize, env: &[(&str, &str)]) -> Server {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        start_in(dir, products, env)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts serve on a free port with `products` seeded in the simulator, the API token
/// `t0ken`, and extra environment.
pub fn start_with(products: usize, env: &[(&str, &str)]) -> Server {
    start_in(tempfile::tempdir().unwrap(), products, env)
}

/// As [`start_with`], on the data directory `dir`.
pub fn start_in(dir: tempfile::TempDir, products: usize, env: &[(&str, &str)]) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shopsync"));
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--sim-products"])
        .arg(products.to_string())
        .arg("--data")
        .arg(dir.path())
        .env_remove("SHOPIFY_ACCESS_TOKEN")
        .env("SHOPSYNC_API_TOKENS", "t0ken:alice:admin");
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = Vec::new();
    let url = loop {
        let line = lines.next().expect("serve printed its address").unwrap();
        printed.push(line.clone());
        if let Some(url) = line.trim().strip_prefix("listening on ") {
            break url.to_owned();
        }
    };
    // Keep reading the rest of the banner so secrets can be checked.
    for _ in 0..6 {
        if let Some(Ok(line)) = lines.next() {
            printed.push(line);
        }
    }
    let banner = printed.join("\n");
    assert!(banner.contains("SHOPIFY_WEBHOOK_SECRET=sh***"), "{banner}");
    assert!(
        !banner.contains("shopsync-dev-webhook-secret"),
        "secrets are masked: {banner}"
    );
    assert!(
        !banner.contains("t0ken"),
        "tokens are not printed: {banner}"
    );
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        url,
        dir,
        banner,
    }
}

/// Runs a `shopsync` command on the data directory `dir` (the simulator standing in for
/// Shopify): whether it succeeded, its output and its errors.
pub fn run_in(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shopsync"))
        .args(args)
        .arg("--data")
        .arg(dir)
        .env_remove("SHOPIFY_ACCESS_TOKEN")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts serve with 6 seeded products.
pub fn start() -> Server {
    start_with(6, &[])
}

/// A request with an optional bearer token and JSON body: status and JSON body.
pub async fn send(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", server.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

/// GET with an optional bearer token: status and JSON body.
pub async fn get(server: &Server, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(format!("{}{path}", server.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

/// POSTs a webhook signed with `secret` as Shopify would.
pub async fn post_webhook(
    server: &Server,
    topic: &str,
    body: &Value,
    id: &str,
    secret: &str,
) -> (u16, Value) {
    let body = serde_json::to_vec(body).unwrap();
    let hmac = shopsync_shopify::webhook::sign(secret, &body);
    let response = reqwest::Client::new()
        .post(format!("{}/webhooks/shopify", server.url))
        .header("X-Shopify-Topic", topic)
        .header("X-Shopify-Hmac-Sha256", hmac)
        .header("X-Shopify-Shop-Domain", "shopsync-dev.myshopify.com")
        .header("X-Shopify-Webhook-Id", id)
        .header("X-Shopify-Event-Id", format!("event-{id}"))
        .body(body)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

/// The embedded store a host left in `dir`.
pub fn open_store(dir: &std::path::Path) -> shopsync_store::Store {
    let backend = shopsync_store_sqlite::SqliteStore::open(dir, "shopsync_").unwrap();
    shopsync_store::Store::new(std::sync::Arc::new(backend))
}

/// Every record of a table of `store`.
pub async fn all<R: shopsync_store::Record>(store: &shopsync_store::Store) -> Vec<R> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = store.scan::<R>(1000, start.as_ref()).await.unwrap();
        out.extend(page.items);
        match page.next {
            Some(next) => start = Some(next),
            None => return out,
        }
    }
}

/// The products of the store in `dir`, how many versions it holds, and its operations.
pub async fn stored(
    dir: &std::path::Path,
) -> (
    Vec<shopsync_domain::Product>,
    usize,
    Vec<shopsync_domain::SyncOperation>,
) {
    let store = open_store(dir);
    let products: Vec<shopsync_domain::Product> = all(&store).await;
    let versions: Vec<shopsync_domain::ProductVersion> = all(&store).await;
    let operations: Vec<shopsync_domain::SyncOperation> = all(&store).await;
    (products, versions.len(), operations)
}
