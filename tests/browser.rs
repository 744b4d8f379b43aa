//! The whole flow in a real browser: headless Chromium, driven through WebDriver
//! (chromedriver), against the example server with its embedded identity service.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them) and the
//! example built (`cargo test` builds it); otherwise it says it was skipped. The
//! signed-in page is saved as `browser-signed-in.png` in Cargo's `CARGO_TARGET_TMPDIR`
//! (`target/tmp/` unless `CARGO_TARGET_DIR` moves it).

use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};

#[path = "it/common/mod.rs"]
mod common;
use common::free_port;

fn skipped(why: &str) {
    let _ = writeln!(std::io::stderr(), "browser test: skipped ({why})");
}

/// A child process killed when dropped, with the process group it leads (chromedriver's
/// Chromium), even when the test fails.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn example_server() -> Option<PathBuf> {
    // target/<profile>/deps/browser-… -> target/<profile>/examples/server
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("examples/server");
    path.exists().then_some(path)
}

/// Starts the example server on a free loopback port, with OpenID Connect (`openid`
/// among its scopes), sign-out at HCSS (its post-logout redirect URI on that port) and
/// back-channel logout on; returns it and its URL.
fn start_example(binary: &Path) -> (Running, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(binary)
        .env("HCSS_EXAMPLE_ADDR", &addr)
        .env("HCSS_SCOPES", "openid heavyjob:read offline_access")
        .env(
            "HCSS_POST_LOGOUT_REDIRECT_URI",
            format!("http://{addr}/hcss/logout/return"),
        )
        .env("HCSS_BACKCHANNEL_LOGOUT", "1")
        .env_remove("HCSS_CLIENT_ID")
        .env_remove("HCSS_REDIS_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the example server starts");
    let mut server = Running(child);
    let stdout = BufReader::new(server.0.stdout.take().unwrap());
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(url) = line.strip_prefix("Open ") {
            return (server, url.trim_end_matches('/').to_owned());
        }
    }
    panic!("the example server did not print its URL");
}

/// Starts chromedriver and waits (bounded) until it answers.
async fn start_chromedriver() -> (Running, String) {
    let port = free_port();
    let child = Command::new("chromedriver")
        // Its own process group, so that the Chromium it starts ends with it.
        .process_group(0)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("{url}/status")).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "chromedriver did not answer"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (Running(child), url)
}

#[tokio::test]
async fn the_whole_flow_in_headless_chromium() {
    if Command::new("chromedriver")
        .arg("--version")
        .output()
        .is_err()
        || !Path::new("/usr/bin/chromium").exists()
    {
        skipped("chromium and chromium-driver are not installed");
        return;
    }
    let Some(binary) = example_server() else {
        skipped(
            "the example server is not built: run `cargo build --example server` or `cargo test`",
        );
        return;
    };
    let (_server, app) = start_example(&binary);
    let (_driver, driver_url) = start_chromedriver().await;
    let profile = std::env::temp_dir().join(format!("hcss-auth-chromium-{}", std::process::id()));
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-quic", "--window-size=1024,768",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let browser = ClientBuilder::rustls()
        .expect("WebDriver client")
        .capabilities(capabilities)
        .connect(&driver_url)
        .await
        .expect("a Chromium session");

    // The page's status line. A navigation can replace the page between finding the
    // element and reading it (a stale element): then it is found again, until 10 s.
    let status = |browser: &fantoccini::Client| {
        let browser = browser.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let element = browser
                    .wait()
                    .at_most(Duration::from_secs(10))
                    .for_element(Locator::Id("status"))
                    .await
                    .expect("the home page");
                match element.text().await {
                    Ok(text) => return text,
                    Err(err) => assert!(
                        std::time::Instant::now() < deadline,
                        "the status line: {err}"
                    ),
                }
            }
        }
    };

    browser.goto(&format!("{app}/")).await.unwrap();
    assert_eq!(status(&browser).await, "Signed out.");
    browser
        .find(Locator::Id("login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The identity service's consent page, which asks for credentials: the browser has
    // no session there yet.
    let allow = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("allow"))
        .await
        .expect("the consent page");
    let consent = browser.source().await.unwrap();
    assert!(consent.contains("heavyjob:read"));
    assert!(consent.contains("id=\"credentials\""), "{consent}");
    allow.click().await.unwrap();

    // Back on the app, signed in: the cookies survived the trip through HCSS.
    let signed_in = status(&browser).await;
    assert!(signed_in.starts_with("Signed in with HCSS"), "{signed_in}");
    // Who signed in, from the access token's claims (the mock's user).
    assert!(
        signed_in.contains("5f0c2a7e-0000-4000-8000-000000000001"),
        "{signed_in}"
    );
    assert_eq!(
        browser.current_url().await.unwrap().as_str(),
        format!("{app}/")
    );
    let png = browser.screenshot().await.unwrap();
    // Cargo's scratch folder for integration tests, wherever the target directory is.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-signed-in.png");
    std::fs::write(&shot, &png).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");

    browser.goto(&format!("{app}/whoami")).await.unwrap();
    let whoami = browser.source().await.unwrap();
    assert!(whoami.contains("\"token_type\":\"Bearer\""), "{whoami}");
    browser
        .goto(&format!("{app}/business-units"))
        .await
        .unwrap();
    let units = browser.source().await.unwrap();
    assert!(units.contains("Main Business Unit"), "{units}");

    // Built with `metrics`, the example counts this sign-in and its API call at /metrics.
    #[cfg(feature = "metrics")]
    {
        browser.goto(&format!("{app}/metrics")).await.unwrap();
        let metrics = browser.source().await.unwrap();
        for line in [
            "hcss_auth_sign_ins_total 1",
            "hcss_auth_api_calls_total 1",
            "hcss_auth_token_endpoint_seconds_count{grant=\"authorization_code\"} 1",
        ] {
            assert!(metrics.contains(line), "{line} not in {metrics}");
        }
    }

    // The identity service keeps its own session: another login there asks for no
    // credentials (the login is left at its consent page).
    browser.goto(&format!("{app}/hcss/login")).await.unwrap();
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("hcss-session"))
        .await
        .expect("the identity service's session is live");

    // Log out, signing out of HCSS too: the browser goes through the identity service's
    // end-session endpoint and comes back to the app, signed out.
    browser.goto(&format!("{app}/")).await.unwrap();
    browser
        .find(Locator::Id("logout-hcss"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The click navigates: until the new page is there, the old one (signed in) is read.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = status(&browser).await;
        if now == "Signed out." {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still: {now}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        browser.current_url().await.unwrap().as_str(),
        format!("{app}/"),
        "back at the app (post_logout_path) from the identity service"
    );
    browser.goto(&format!("{app}/whoami")).await.unwrap();
    assert_eq!(
        browser.current_url().await.unwrap().path(),
        "/identity/connect/authorize",
        "a page load without a session is sent to log in"
    );
    // And the identity service's session is gone: this login asks for credentials.
    let consent = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("allow"))
        .await
        .map(|_| ());
    assert!(consent.is_ok(), "the consent page");
    let page = browser.source().await.unwrap();
    assert!(
        page.contains("id=\"credentials\"") && !page.contains("id=\"hcss-session\""),
        "the next login asks for credentials again: {page}"
    );
    browser.close().await.unwrap();
    let _ = std::fs::remove_dir_all(profile);
}
