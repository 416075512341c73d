//! The real-browser harness: a running `pushguide serve` ([`Site`], with its own temp config, store,
//! templates, users and a fake salt-api) and headless Chromium driven through chromedriver over
//! WebDriver ([`Browser`]). Every page the browser visits is saved as a PNG under
//! `target/screenshots/`.
//!
//! Chromium and chromedriver are Debian's `chromium` and `chromium-driver` (found on `PATH`, or
//! named by `PUSHGUIDE_CHROMIUM` and `PUSHGUIDE_CHROMEDRIVER`). Without them [`Browser::start`]
//! prints why and answers `None` (the test returns early), unless `PUSHGUIDE_REQUIRE_BROWSER=1`,
//! which makes it fail.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use pushguide_core::sim::SimFleet;
use pushguide_salt::fake::FakeSaltApi;
use serde_json::json;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_pushguide");
/// How long [`Browser::wait_for`] waits by default.
pub const WAIT: Duration = Duration::from_secs(20);
/// How often [`Browser::texts`] reads again elements a live update replaced under it.
const STALE_RETRIES: u32 = 50;
/// The size of the page in the browser window (and of the screenshots).
pub const WINDOW: (u32, u32) = (1280, 900);
/// The variable holding the salt-api password for the service.
const SALT_PASSWORD_ENV: &str = "PG_BROWSER_TEST_SALT_PASSWORD";

/// Where the screenshots go: `target/screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is `<target>/tmp`, wherever the target directory is
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap_or_else(|| Path::new("target"))
        .join("screenshots")
}

/// A loopback port free now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A template whose `[acl]` lets `viewers` view and `deployers` deploy, over `hosts`.
pub fn template(name: &str, viewers: &[&str], deployers: &[&str], hosts: &[&str]) -> String {
    let list = |items: &[&str]| {
        items
            .iter()
            .map(|i| format!("\"{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "name = \"{name}\"\ndescription = \"The {name} service\"\n\
         [acl.viewers]\ngroups = [{}]\n[acl.deployers]\ngroups = [{}]\n\
         [targets]\nminions = [{}]\n\
         [project]\nkind = \"java-tomcat\"\ncontext = \"{name}\"\nroot = \"/srv/{name}\"\n\
         catalina_base = \"/var/lib/tomcat10\"\nservice = \"tomcat10\"\n",
        list(viewers),
        list(deployers),
        list(hosts)
    )
}

// ------------------------------------------------------------------------------------------ site

/// What a [`Site`] starts with; [`SiteBuilder::start`] starts it.
#[derive(Debug)]
pub struct SiteBuilder {
    templates: Vec<(String, String)>,
    users: Vec<(String, Vec<String>, String)>,
    admin_groups: Vec<String>,
    fleet: Arc<SimFleet>,
}

impl SiteBuilder {
    /// Writes `templates/<name>.toml` with `text` (see [`template`]).
    pub fn template(mut self, name: &str, text: &str) -> Self {
        self.templates.push((name.to_owned(), text.to_owned()));
        self
    }

    /// Adds the user `name` in `groups` with `password` (through `pushguide user add`).
    pub fn user(mut self, name: &str, groups: &[&str], password: &str) -> Self {
        self.users.push((
            name.to_owned(),
            groups.iter().map(|g| (*g).to_owned()).collect(),
            password.to_owned(),
        ));
        self
    }

    /// The `[server] admin_groups` (default: `admins`).
    pub fn admin_groups(mut self, groups: &[&str]) -> Self {
        self.admin_groups = groups.iter().map(|g| (*g).to_owned()).collect();
        self
    }

    /// The simulated fleet behind the fake salt-api (default: web-01 to web-03 answering every
    /// call).
    pub fn fleet(mut self, fleet: Arc<SimFleet>) -> Self {
        self.fleet = fleet;
        self
    }

    /// Starts the fake salt-api (on the current runtime), writes the config, templates and users,
    /// starts `pushguide serve` and waits until it answers.
    pub async fn start(self) -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let fake = FakeSaltApi::builder(self.fleet)
            .credentials("pushguide", "browser-test-salt-pw")
            .start()
            .await
            .unwrap();
        for (name, text) in &self.templates {
            let path = dir.join("templates").join(format!("{name}.toml"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        std::fs::create_dir_all(dir.join("templates")).unwrap();
        let port = free_port();
        let admin_groups: Vec<String> = self
            .admin_groups
            .iter()
            .map(|g| format!("\"{g}\""))
            .collect();
        let config = dir.join("pushguide.toml");
        std::fs::write(
            &config,
            format!(
                "store = \"state/pushguide.db\"\ntemplates = \"templates\"\n\
                 [user]\nname = \"browser-test\"\n\
                 [salt]\nendpoints = [\"{}\"]\neauth = \"pam\"\nuser = \"pushguide\"\n\
                 password_env = \"{SALT_PASSWORD_ENV}\"\n\
                 [server]\nlisten = \"127.0.0.1:{port}\"\nsession_idle_secs = 600\n\
                 session_max_secs = 3600\nadmin_groups = [{}]\n",
                fake.url(),
                admin_groups.join(", ")
            ),
        )
        .unwrap();
        for (name, groups, password) in &self.users {
            let out = Command::new(BIN)
                .arg("--config")
                .arg(&config)
                .args(["user", "add", name, "--groups", &groups.join(",")])
                .args(["--password-env", "PG_BROWSER_TEST_USER_PW"])
                .env("PG_BROWSER_TEST_USER_PW", password)
                .env_remove("PUSHGUIDE_CONFIG")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "user add {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let log = dir.join("serve.log");
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env(SALT_PASSWORD_ENV, "browser-test-salt-pw")
            .env_remove("PUSHGUIDE_CONFIG")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("serve.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut site = Site {
            base: format!("http://127.0.0.1:{port}"),
            child,
            config,
            log,
            fake,
            dir,
            _tmp: tmp,
        };
        site.wait_listening().await;
        site
    }
}

/// A running `pushguide serve` in a temp dir (config, store, templates), in front of a fake
/// salt-api; stopped on drop.
pub struct Site {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    child: Child,
    /// The config file.
    pub config: PathBuf,
    log: PathBuf,
    fake: FakeSaltApi,
    /// The temp dir: `pushguide.toml`, `templates/`, `state/`, `serve.log`.
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Site {
    /// An empty site (no template, no user) with `admins` as admin group.
    pub fn builder() -> SiteBuilder {
        SiteBuilder {
            templates: Vec::new(),
            users: Vec::new(),
            admin_groups: vec!["admins".to_owned()],
            fleet: Arc::new(SimFleet::new(["web-01", "web-02", "web-03"]).unwrap()),
        }
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The fake salt-api the service talks to.
    pub fn fake(&self) -> &FakeSaltApi {
        &self.fake
    }

    /// What the service logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_listening(&mut self) {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let begun = Instant::now();
        loop {
            match client.get(self.url("/login")).send().await {
                Ok(r) if r.status() == 200 => return,
                other => {
                    if let Some(status) = self.child.try_wait().unwrap() {
                        panic!("pushguide serve exited ({status}):\n{}", self.log());
                    }
                    assert!(
                        begun.elapsed() < Duration::from_secs(30),
                        "pushguide serve never answered ({other:?}):\n{}",
                        self.log()
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------------------------------ browser

/// Where an executable is: `$var` when set, else the first of `names` on `PATH`.
fn find_program(var: &str, names: &[&str]) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(var) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{var}={} is not a file", p.display()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(format!(
        "none of {names:?} is on PATH (install Debian's chromium and chromium-driver, or set {var})"
    ))
}

/// chromedriver on a free loopback port, in its own process group; the group (chromedriver and
/// the browsers it started) is killed on drop.
struct Driver {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Driver {
    fn start(program: &Path, dir: &Path) -> Driver {
        use std::os::unix::process::CommandExt as _;
        let port = free_port();
        let log = dir.join("chromedriver.log");
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let begun = Instant::now();
        loop {
            if let Ok(r) = client.get(format!("{}/status", self.url)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "chromedriver exited ({status}):\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                begun.elapsed() < Duration::from_secs(20),
                "chromedriver never answered on {}",
                self.url
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // the group chromedriver leads: chromedriver itself and the browser processes it started
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Headless Chromium through WebDriver, on one [`Site`]; each page it visits is saved as
/// `target/screenshots/<test>-<nn>-<page>.png`.
pub struct Browser {
    client: Client,
    base: String,
    test: String,
    shots: AtomicUsize,
    // dropped after the client: the session's browser dies with chromedriver's group
    driver: Driver,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session (a 1280×900 page) for the test `test` against
    /// `site`. `None` (with the reason printed) when Chromium or chromedriver is missing, unless
    /// `PUSHGUIDE_REQUIRE_BROWSER=1`: then that is a failure.
    pub async fn start(test: &str, site: &Site) -> Option<Browser> {
        Self::start_at(test, &site.base).await
    }

    /// [`Browser::start`] against the service at `base` (`http://127.0.0.1:<port>`).
    pub async fn start_at(test: &str, base: &str) -> Option<Browser> {
        let found = find_program("PUSHGUIDE_CHROMEDRIVER", &["chromedriver"]).and_then(|d| {
            find_program("PUSHGUIDE_CHROMIUM", &["chromium", "chromium-browser"]).map(|c| (d, c))
        });
        let (driver, chromium) = match found {
            Ok(found) => found,
            Err(why) => {
                let required = std::env::var("PUSHGUIDE_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
                assert!(!required, "PUSHGUIDE_REQUIRE_BROWSER=1 but {why}");
                eprintln!("SKIPPED {test}: no browser: {why}");
                return None;
            }
        };
        let profile = tempfile::tempdir().unwrap();
        let mut driver = Driver::start(&driver, profile.path());
        driver.wait_ready().await;
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    format!("--window-size={},{}", WINDOW.0, WINDOW.1),
                    format!("--user-data-dir={}", profile.path().join("chromium").display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "no WebDriver session: {e}\n{}",
                    std::fs::read_to_string(&driver.log).unwrap_or_default()
                )
            });
        // the window's frame takes part of the window: grow it so the page (and each screenshot)
        // is WINDOW
        let frame = client
            .execute(
                "return [window.outerWidth - window.innerWidth, \
                 window.outerHeight - window.innerHeight]",
                vec![],
            )
            .await
            .unwrap();
        let extra = |i: usize| frame[i].as_u64().unwrap_or(0) as u32;
        client
            .set_window_size(WINDOW.0 + extra(0), WINDOW.1 + extra(1))
            .await
            .unwrap();
        Some(Browser {
            client,
            base: base.to_owned(),
            test: test.to_owned(),
            shots: AtomicUsize::new(0),
            driver,
            _profile: profile,
        })
    }

    /// The WebDriver client, for what the helpers do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `path` of the site and saves a screenshot of it.
    pub async fn goto(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.client
            .goto(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
        self.page_loaded().await;
    }

    /// The path (and query) of the page shown.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// The page's title.
    pub async fn title(&self) -> String {
        self.client.title().await.unwrap()
    }

    /// Logs in through the login form as `user` with `password`, and saves a screenshot of the
    /// page that follows (whether the login worked is for the caller to check).
    pub async fn login(&self, user: &str, password: &str) {
        self.goto("/login").await;
        self.fill("input[name=user]", user).await;
        self.fill("input[name=password]", password).await;
        self.click_button("Log in").await;
    }

    /// Types `text` into the field `css` (emptied first).
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.wait_for(css).await;
        field.clear().await.unwrap();
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("cannot type into {css}: {e}"));
    }

    /// Clicks the button (`<button>` or submit `<input>`) whose text is `text`, waits for the page
    /// that follows to load and saves a screenshot of it.
    pub async fn click_button(&self, text: &str) {
        let lit = xpath_literal(text);
        let xpath = format!(
            "//button[normalize-space(.)={lit}] | //input[(@type='submit' or @type='button') \
             and normalize-space(@value)={lit}]"
        );
        let button = self.wait_for_locator(Locator::XPath(&xpath), WAIT).await;
        button
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click the button {text:?}: {e}"));
        self.page_loaded().await;
    }

    /// The first element matching the CSS selector `css`, waiting for it up to [`WAIT`].
    pub async fn wait_for(&self, css: &str) -> Element {
        self.wait_for_within(css, WAIT).await
    }

    /// The first element matching `css`, waiting for it up to `timeout`; a failure (with a
    /// screenshot and the page's source) when none comes.
    pub async fn wait_for_within(&self, css: &str, timeout: Duration) -> Element {
        self.wait_for_locator(Locator::Css(css), timeout).await
    }

    async fn wait_for_locator(&self, locator: Locator<'_>, timeout: Duration) -> Element {
        let begun = Instant::now();
        loop {
            if let Ok(e) = self.client.find(locator).await {
                return e;
            }
            if begun.elapsed() > timeout {
                let shot = self.screenshot("timeout").await;
                let source = self.client.source().await.unwrap_or_default();
                panic!(
                    "{locator:?} did not appear within {timeout:?} on {} (screenshot {}):\n{source}",
                    self.path().await,
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether an element matches `css` now (no waiting).
    pub async fn exists(&self, css: &str) -> bool {
        self.client.find(Locator::Css(css)).await.is_ok()
    }

    /// The text of every element matching `css`, in page order (trimmed). A live page may replace
    /// the elements between finding and reading them (a server-sent update): then they are found
    /// again.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let mut stale = 0;
        'read: loop {
            let mut out = Vec::new();
            for e in self.client.find_all(Locator::Css(css)).await.unwrap() {
                match e.text().await {
                    Ok(t) => out.push(t.trim().to_owned()),
                    Err(err) if err.is_stale_element_reference() && stale < STALE_RETRIES => {
                        stale += 1;
                        continue 'read;
                    }
                    Err(err) => panic!("the text of {css}: {err}"),
                }
            }
            return out;
        }
    }

    /// The text of the first element matching `css`, waiting for it (found again when a live
    /// update replaced it, like [`Browser::texts`]).
    pub async fn text(&self, css: &str) -> String {
        let mut stale = 0;
        loop {
            match self.wait_for(css).await.text().await {
                Ok(t) => return t.trim().to_owned(),
                Err(err) if err.is_stale_element_reference() && stale < STALE_RETRIES => {
                    stale += 1;
                }
                Err(err) => panic!("the text of {css}: {err}"),
            }
        }
    }

    /// Saves a PNG of the window as `target/screenshots/<test>-<nn>-<label>.png` and returns its
    /// path.
    pub async fn screenshot(&self, label: &str) -> PathBuf {
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("no screenshot: {e}"));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        let n = self.shots.fetch_add(1, Ordering::Relaxed) + 1;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}-{n:02}-{}.png", self.test, slug(label)));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Ends the WebDriver session (the browser quits); chromedriver stops on drop.
    pub async fn close(self) {
        let Browser { client, driver, .. } = self;
        let _ = client.close().await;
        drop(driver);
    }

    /// Waits for the document to be complete, then saves a screenshot named after the page's
    /// title.
    async fn page_loaded(&self) {
        let begun = Instant::now();
        loop {
            let state = self
                .client
                .execute("return document.readyState", vec![])
                .await;
            if matches!(&state, Ok(s) if s == "complete") {
                break;
            }
            assert!(
                begun.elapsed() < WAIT,
                "the page never finished loading: {state:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let title = self.title().await;
        let page = title.split(" · ").next().unwrap_or_default().to_owned();
        let label = if page.is_empty() {
            self.path().await
        } else {
            page
        };
        self.screenshot(&label).await;
    }
}

/// `text` as an XPath string literal (XPath 1.0 has no escapes: `concat()` when both quotes occur).
fn xpath_literal(text: &str) -> String {
    if !text.contains('\'') {
        format!("'{text}'")
    } else if !text.contains('"') {
        format!("\"{text}\"")
    } else {
        let parts: Vec<String> = text.split('\'').map(|p| format!("'{p}'")).collect();
        format!("concat({})", parts.join(", \"'\", "))
    }
}

/// A file-name-safe lower-case label.
fn slug(label: &str) -> String {
    let s: String = label
        .trim_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches('-').to_owned();
    if s.is_empty() {
        "page".to_owned()
    } else {
        s
    }
}

// ------------------------------------------------------------------------------------------ demo

/// `pushguide serve --demo` on a free port: 20 simulated minions, the printed users and
/// passwords; killed on drop.
pub struct Demo {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    child: Child,
    passwords: std::collections::HashMap<String, String>,
}

impl Demo {
    /// Starts it and waits until it answers.
    pub async fn start() -> Demo {
        use std::io::BufRead as _;
        let port = free_port();
        let mut child = Command::new(BIN)
            .args(["serve", "--demo", "--listen", &format!("127.0.0.1:{port}")])
            .env_remove("PUSHGUIDE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut passwords = std::collections::HashMap::new();
        let mut line = String::new();
        while passwords.len() < 3 {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "serve --demo printed no users"
            );
            let words: Vec<&str> = line.split_whitespace().collect();
            if let [user @ ("dora" | "victor" | "ada"), pw, ..] = words.as_slice() {
                passwords.insert((*user).to_owned(), (*pw).to_owned());
            }
        }
        let demo = Demo {
            base: format!("http://127.0.0.1:{port}"),
            child,
            passwords,
        };
        let client = reqwest::Client::new();
        let begun = Instant::now();
        while client
            .get(format!("{}/login", demo.base))
            .send()
            .await
            .is_err()
        {
            assert!(
                begun.elapsed() < Duration::from_secs(30),
                "serve --demo never answered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        demo
    }

    /// The printed password of `user` (`dora`, `victor` or `ada`).
    pub fn password(&self, user: &str) -> &str {
        &self.passwords[user]
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
