//! Test harness: the in-process mock provider, the real `aigw` binary started
//! on port 0 with a temp config, and a small HTTP client that records when
//! each body chunk arrived.

use aigw::mock::{MockState, serve};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The test filter component (modes chosen by config).
pub fn test_filter_wasm() -> Vec<u8> {
    std::fs::read(env!("AIGW_WASM_AIGW_TEST_FILTER")).expect("test filter wasm built by build.rs")
}

/// The stateless 0.2.0 test filter (tag and probe options).
pub fn stateless_filter_wasm() -> Vec<u8> {
    std::fs::read(env!("AIGW_WASM_AIGW_STATELESS_FILTER"))
        .expect("stateless filter wasm built by build.rs")
}

/// The mock provider, in this process.
pub struct Mock {
    pub addr: SocketAddr,
    pub state: Arc<MockState>,
    task: tokio::task::JoinHandle<()>,
}

impl Mock {
    pub async fn start() -> Mock {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(MockState::default());
        let task = tokio::spawn(serve(listener, state.clone()));
        Mock { addr, state, task }
    }

    /// Requests the mock received.
    pub fn requests(&self) -> Vec<Value> {
        self.state.requests()
    }

    /// Like `providers_toml`, with stored keys (`sk-stored-openai`, `sk-ant-stored`): what a
    /// provider gets when the client's key is a virtual one.
    pub fn providers_toml_with_keys(&self) -> String {
        self.providers_toml().replace(
            "[providers.anthropic]",
            "api_key = \"sk-stored-openai\"\n[providers.anthropic]",
        ) + "api_key = \"sk-ant-stored\"\n"
    }

    /// `[providers.openai]` and `[providers.anthropic]` tables pointing here.
    pub fn providers_toml(&self) -> String {
        format!(
            "[providers.openai]\nbase_url = \"http://{0}/v1\"\n[providers.anthropic]\nbase_url = \"http://{0}\"\n",
            self.addr
        )
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A running `aigw serve`.
pub struct Gateway {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    pub stderr: Arc<std::sync::Mutex<String>>,
}

/// Writes a config (and plugin files) into a fresh temp dir.
pub fn prepare(config: &str, plugins: &[(&str, &[u8])]) -> tempfile::TempDir {
    prepare_with_server("", config, plugins)
}

/// Like `prepare`, with extra `[server]` lines (e.g. `admin_listen = "127.0.0.1:0"\n`).
pub fn prepare_with_server(
    server: &str,
    config: &str,
    plugins: &[(&str, &[u8])],
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let full = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nplugins_dir = \"plugins.d\"\ndata_dir = \"data\"\nshutdown_grace_ms = 10000\n{server}{config}"
    );
    std::fs::write(dir.path().join("aigw.toml"), full).unwrap();
    std::fs::create_dir_all(dir.path().join("plugins.d")).unwrap();
    for (name, bytes) in plugins {
        std::fs::write(
            dir.path().join("plugins.d").join(format!("{name}.wasm")),
            bytes,
        )
        .unwrap();
    }
    dir
}

pub fn aigw() -> Command {
    Command::new(env!("CARGO_BIN_EXE_aigw"))
}

/// Runs `aigw check` on a config; returns (success, stdout + stderr).
pub fn check(config: &str, plugins: &[(&str, &[u8])]) -> (bool, String) {
    let dir = prepare(config, plugins);
    let out = aigw()
        .arg("check")
        .arg("--config")
        .arg(dir.path().join("aigw.toml"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

impl Gateway {
    pub fn start(config: &str, plugins: &[(&str, &[u8])]) -> Gateway {
        let dir = prepare(config, plugins);
        Self::start_in(dir)
    }

    pub fn start_in(dir: tempfile::TempDir) -> Gateway {
        Self::start_with_env(dir, &[])
    }

    pub fn start_with_env(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Gateway {
        let mut child = aigw()
            .arg("serve")
            .arg("--config")
            .arg(dir.path().join("aigw.toml"))
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr_text = Arc::new(std::sync::Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = stderr_text.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("aigw admin listening on http://") {
                    let _ = tx.send(format!("admin {}", addr.trim()));
                } else if let Some(addr) = line.strip_prefix("aigw listening on http://") {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let mut admin = None;
        let addr = loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(a) if a.starts_with("admin ") => admin = Some(a[6..].parse().unwrap()),
                Ok(a) => break a.parse().unwrap(),
                Err(_) => {
                    let _ = child.kill();
                    std::thread::sleep(Duration::from_millis(200));
                    panic!("gateway did not start:\n{}", stderr_text.lock().unwrap());
                }
            }
        };
        Gateway {
            addr,
            admin,
            dir,
            child: Some(child),
            stderr: stderr_text,
        }
    }

    /// Starts the gateway again on the same directory (after `stop`).
    pub fn restart(mut self) -> Gateway {
        self.stop();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        Gateway::start_in(dir)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!(
            "http://{}{path}",
            self.admin.expect("admin_listen configured")
        )
    }

    pub fn plugins_dir(&self) -> PathBuf {
        self.dir.path().join("plugins.d")
    }

    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("aigw.toml")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// SIGTERM, then wait for a clean exit; returns the exit success.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The gateway's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Resident memory now and at its peak (KiB), from /proc.
    pub fn rss_kib(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// SIGKILL: no drain, no flush (a crash).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Reads the log store (after the gateway stopped, so every entry is written).
pub fn log_entries(data_dir: &Path) -> Vec<Value> {
    let conn = rusqlite::Connection::open(data_dir.join("logs.sqlite")).unwrap();
    let mut stmt = conn
        .prepare("SELECT entry FROM logs ORDER BY created_at, rowid")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|t| serde_json::from_str(&t.unwrap()).unwrap())
        .collect()
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A streamed response: chunks with their arrival time, and how it ended.
#[derive(Debug)]
pub struct Streamed {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub chunks: Vec<(Instant, Bytes)>,
    pub ended: Instant,
    pub error: Option<String>,
}

impl Streamed {
    pub fn text(&self) -> String {
        self.chunks
            .iter()
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    /// The assistant text of an OpenAI chat stream: every event's
    /// `choices[0].delta.content`, joined.
    pub fn delta_text(&self) -> String {
        sse_data(&self.text())
            .iter()
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    }
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Request<Full<Bytes>> {
    let mut b = Request::builder().method(method).uri(url);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

pub async fn send(url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    send_req(request(Method::POST, url, headers, body)).await
}

pub async fn send_req(req: Request<Full<Bytes>>) -> Reply {
    let resp = tokio::time::timeout(Duration::from_secs(30), client().request(req))
        .await
        .expect("response within 30 s")
        .expect("request sent");
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(30), body.collect())
        .await
        .expect("body within 30 s")
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn stream(url: &str, headers: &[(&str, &str)], body: &str) -> Streamed {
    let resp = tokio::time::timeout(
        Duration::from_secs(30),
        client().request(request(Method::POST, url, headers, body)),
    )
    .await
    .expect("response within 30 s")
    .expect("request sent");
    let (parts, mut body) = resp.into_parts();
    let mut chunks = Vec::new();
    let mut error = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match body.frame().await {
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    chunks.push((Instant::now(), d));
                }
            }
            Some(Err(e)) => {
                error = Some(e.to_string());
                break;
            }
            None => break,
        }
    }
    Streamed {
        status: parts.status,
        headers: parts.headers,
        chunks,
        ended: Instant::now(),
        error,
    }
}

/// An OpenAI chat body.
pub fn chat(content: &str, stream: bool) -> String {
    serde_json::json!({"model": "gpt-4o-mini", "stream": stream,
        "messages": [{"role": "user", "content": content}]})
    .to_string()
}

/// The `data:` payloads of an SSE text.
pub fn sse_data(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .map(|s| s.trim().to_string())
        .collect()
}

/// The JSON body of a request the mock received.
pub fn body_of(seen: &Value) -> Value {
    serde_json::from_str(seen["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

/// Installs a filter the safe way: write to a hidden temp name, then rename.
pub fn install_filter(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.wasm.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{name}.wasm"))).unwrap();
}

/// Polls `check` every 50 ms until it holds or `within` passes; returns the time it took.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < within {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}
