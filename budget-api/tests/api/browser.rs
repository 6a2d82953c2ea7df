//! A real headless Chromium for the dashboard's tests, driven over W3C WebDriver by Debian's
//! `chromedriver` (the few commands the tests need, over reqwest: no browser-automation crate). The
//! browser and its driver are killed when the [`Browser`] is dropped.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key WebDriver names an element reference with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium window of `width` × `height` CSS pixels.
    pub async fn start(width: u32, height: u32) -> Browser {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(binary).exists(),
                "{binary} is missing: the dashboard's tests drive a real Chromium; install it with \
                 `apt-get install chromium chromium-driver` (.ci/run does)"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not answer on port {port} within 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = TempDir::new();
        // Without the background-networking switches Chromium keeps calling Google's hosts, which
        // this machine's closed network refuses.
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--hide-scrollbars".into(),
            format!("--user-data-dir={}", profile.0.display()),
            format!("--window-size={width},{height}"),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let answer: Value =
            http.post(format!("{base}/session")).json(&capabilities).send().await.unwrap().json().await.unwrap();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver started no session: {answer}"))
            .to_string();
        let browser = Browser { driver, base, session, http, _profile: profile };
        browser.resize(width, height).await;
        browser
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_command(method, path, body).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// A WebDriver command; its error (`stale element reference: …`) as text.
    async fn try_command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        match answer["value"]["error"].as_str() {
            Some(error) => Err(format!("WebDriver {path}: {error}: {}", answer["value"]["message"])),
            None => Ok(answer["value"].clone()),
        }
    }

    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    /// Sets the viewport (the window's inner size) to `width` × `height`.
    pub async fn resize(&self, width: u32, height: u32) {
        let outer =
            self.eval("return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]").await;
        let (dw, dh) = (outer[0].as_u64().unwrap_or(0) as u32, outer[1].as_u64().unwrap_or(0) as u32);
        self.command(reqwest::Method::POST, "/window/rect", Some(json!({"width": width + dw, "height": height + dh})))
            .await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page and returns its value.
    pub async fn eval_with(&self, script: &str, args: Value) -> Value {
        self.command(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": args}))).await
    }

    pub async fn eval(&self, script: &str) -> Value {
        self.eval_with(script, json!([])).await
    }

    /// Waits until `script` returns something truthy (not false, null, 0 or ""), and returns it.
    pub async fn wait_for(&self, what: &str, script: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(script).await;
            let truthy = !(v.is_null() || v == false || v == 0 || v == "");
            if truthy {
                return v;
            }
            assert!(Instant::now() < deadline, "the page did not show {what} within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn element(&self, css: &str) -> String {
        let found =
            self.command(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await;
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("no element for `{css}`: {found}")).to_string()
    }

    /// Clicks the element `css` selects, as a user would: scrolled to the middle of the window first,
    /// where the page's sticky header cannot cover it (WebDriver clicks an element already in view
    /// where it is, and one just under the header was "click intercepted" now and then). A live panel
    /// may re-render between finding the element and the click: then it is found again. A re-render
    /// that moves the element under the header between the scroll and the click (seen once in CI, on a
    /// loaded machine) intercepts the click, which reaches nothing: then it is scrolled and clicked again.
    pub async fn click(&self, css: &str) {
        for attempt in 0.. {
            self.eval_with(
                "const e = document.querySelector(arguments[0]); if (e) e.scrollIntoView({block: 'center', inline: 'nearest'});",
                json!([css]),
            )
            .await;
            let id = self.element(css).await;
            match self.try_command(reqwest::Method::POST, &format!("/element/{id}/click"), Some(json!({}))).await {
                Ok(_) => return,
                Err(e) if (e.contains("stale element") || e.contains("click intercepted")) && attempt < 10 => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Types `text` into the element `css` selects.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.command(reqwest::Method::POST, &format!("/element/{id}/value"), Some(json!({"text": text}))).await;
    }

    /// Emulates the system's light or dark colour scheme (Chrome DevTools Protocol through the driver).
    pub async fn color_scheme(&self, scheme: &str) {
        self.command(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({"cmd": "Emulation.setEmulatedMedia",
                        "params": {"features": [{"name": "prefers-color-scheme", "value": scheme}]}})),
        )
        .await;
    }

    /// Saves a PNG of the whole page (not only the viewport) to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let height = self.eval("return Math.ceil(document.documentElement.scrollHeight)").await.as_u64().unwrap();
        let width = self.eval("return window.innerWidth").await.as_u64().unwrap();
        let shot = self
            .command(
                reqwest::Method::POST,
                "/goog/cdp/execute",
                Some(json!({"cmd": "Page.captureScreenshot", "params": {
                    "format": "png", "captureBeyondViewport": true,
                    "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}}})),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session quits Chromium; killing the driver alone could leave it running. Drop
        // cannot await, so the DELETE is written by hand on a blocking socket.
        let host = self.base.trim_start_matches("http://").to_string();
        if let Ok(mut socket) = std::net::TcpStream::connect(&host) {
            use std::io::{Read, Write};
            let _ = socket.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                self.session
            );
            let _ = socket.write_all(request.as_bytes());
            let _ = socket.read_to_end(&mut Vec::new());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A directory removed on drop (Chromium's profile).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("budget-chromium-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
