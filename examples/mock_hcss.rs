//! A stand-in for HCSS on your machine: the crate's mock identity service (and its
//! HeavyJob-like API) on a fixed loopback port, to run your own app against with no HCSS
//! account. It prints the settings to export for the app, then serves until stopped.
//!
//! ```sh
//! cargo run --example mock_hcss --features test-util
//! cargo run --example mock_hcss --features test-util -- --port 4000 \
//!     --redirect-uri http://127.0.0.1:3000/hcss/callback
//! ```
//!
//! - `--port N`: where it listens (default 4000), on 127.0.0.1; its URLs name
//!   `localhost`, another site than an app at `127.0.0.1`, as HCSS is.
//! - `--redirect-uri URI`: the app's callback, printed as `HCSS_REDIRECT_URI` (default
//!   `http://127.0.0.1:3000/hcss/callback`).
//! - `--auto-consent`: sign in at once, without the mock's consent page (for scripts).
//! - `--access-token-lifetime SECONDS`: how long its access tokens live (default 3600,
//!   HCSS's hour). Short-lived tokens show the app refreshing within a minute: with 30,
//!   a signed-in request refreshes after about 15 s (a token that lives less than twice
//!   the refresh skew, 60 s, is refreshed at half its life), and the example's `/metrics`
//!   counts it in `hcss_auth_refreshes_total`.
//! - `--api-rate-per-minute N`, `--api-concurrency N`: the limits its API applies to each
//!   company, answering 429 with `Retry-After` and `Remaining-Calls` past them (default
//!   100 and 20, HCSS's). Below the app's own budget (`HCSS_API_RATE_PER_MINUTE`, default
//!   100), they stand for other integrations of the company using its calls: the app
//!   reads `Remaining-Calls`, meets 429s, and answers 503 with `Retry-After` once a call
//!   cannot be made within its maximum wait.
//!
//! Typed on its standard input, `revoke` refuses every access token issued so far, as
//! HCSS does for a revoked token: the app still believes them live, so its next API call
//! gets 401, refreshes the session and calls again (the example's `/metrics` counts it in
//! `hcss_auth_api_401_refreshes_total`).
//!
//! It signs in one user (of a customer company), issues JWT access tokens that live an
//! hour (or `--access-token-lifetime`), refresh tokens that rotate, and company tokens
//! (`company` and `client_credentials` grants); `GET /heavyjob/api/v1/businessUnits`
//! and the paged `GET /heavyjob/api/v1/jobs` accept its live access tokens, within the
//! limits above.

use std::error::Error;
use std::time::Duration;

use hcss_auth::testing::{MockApiLimits, MockHcssIdentity};

struct Args {
    port: u16,
    redirect_uri: String,
    auto_consent: bool,
    access_token_lifetime: Duration,
    api_limits: MockApiLimits,
}

const USAGE: &str =
    "usage: mock_hcss [--port N] [--redirect-uri http://127.0.0.1:3000/hcss/callback] \
     [--auto-consent] [--access-token-lifetime SECONDS] [--api-rate-per-minute N] \
     [--api-concurrency N]";

fn args(given: impl IntoIterator<Item = String>) -> Result<Args, Box<dyn Error>> {
    let mut args = Args {
        port: 4000,
        redirect_uri: "http://127.0.0.1:3000/hcss/callback".into(),
        auto_consent: false,
        access_token_lifetime: Duration::from_secs(3600),
        api_limits: MockApiLimits::hcss(),
    };
    let calls = |arg: &str, value: String| match value.parse::<u32>() {
        Ok(calls) if calls > 0 => Ok(calls),
        _ => Err(format!(
            "{arg} takes a whole number above 0, not {value:?}\n{USAGE}"
        )),
    };
    let mut given = given.into_iter();
    while let Some(arg) = given.next() {
        let mut value = || {
            given
                .next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--port" => args.port = value()?.parse()?,
            "--redirect-uri" => args.redirect_uri = value()?,
            "--auto-consent" => args.auto_consent = true,
            "--access-token-lifetime" => {
                let secs = value()?;
                args.access_token_lifetime = match secs.parse::<u64>() {
                    Ok(secs) if secs > 0 => Duration::from_secs(secs),
                    _ => {
                        return Err(format!(
                            "--access-token-lifetime takes whole seconds above 0, not {secs:?}\n{USAGE}"
                        )
                        .into())
                    }
                };
            }
            "--api-rate-per-minute" => {
                let per_minute = calls(&arg, value()?)?;
                args.api_limits = MockApiLimits::new(
                    per_minute,
                    Duration::from_secs(60),
                    args.api_limits.in_flight,
                );
            }
            "--api-concurrency" => {
                let in_flight = calls(&arg, value()?)?;
                args.api_limits = MockApiLimits::new(
                    args.api_limits.per_window,
                    args.api_limits.window,
                    in_flight,
                );
            }
            _ => return Err(format!("unknown argument {arg}\n{USAGE}").into()),
        }
    }
    Ok(args)
}

/// What a line typed at the mock (its standard input) does, and what it says of it.
fn obey(line: &str, mock: &MockHcssIdentity) -> String {
    match line.trim() {
        "" => String::new(),
        "revoke" => {
            mock.revoke_access_tokens();
            "Revoked every access token issued so far: the app's next API call gets 401, \
             refreshes and calls again."
                .into()
        }
        other => format!("unknown command {other:?}: {COMMANDS}"),
    }
}

const COMMANDS: &str = "type `revoke` (and Enter) to refuse every access token issued so far, \
     as HCSS does for a revoked token";

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    // Said as text, not as the error's `Debug` (which would escape the usage's lines).
    let args = match args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("{err}");
            std::process::exit(2);
        }
    };
    // Said plainly rather than as the mock's panic.
    if let Err(err) = std::net::TcpListener::bind(("127.0.0.1", args.port)) {
        return Err(format!(
            "127.0.0.1:{} cannot be used ({err}): pick another --port",
            args.port
        )
        .into());
    }
    let mock = MockHcssIdentity::builder()
        .port(args.port)
        .hostname("localhost")
        .auto_consent(args.auto_consent)
        .access_token_lifetime(args.access_token_lifetime)
        .api_limits(args.api_limits)
        .start()
        .await;
    println!("Mock HCSS identity service at {}", mock.identity_url());
    println!("Run your app with these settings (then open its /hcss/login):");
    println!();
    let settings = [
        ("HCSS_CLIENT_ID", mock.client_id().to_owned()),
        (
            "HCSS_CLIENT_SECRET",
            mock.client_secret().unwrap_or_default().to_owned(),
        ),
        ("HCSS_SCOPES", "heavyjob:read offline_access".to_owned()),
        ("HCSS_REDIRECT_URI", args.redirect_uri),
        ("HCSS_IDENTITY_URL", mock.identity_url().to_owned()),
        ("HCSS_ALLOW_INSECURE_HTTP", "1".to_owned()),
        ("HCSS_API_URL", mock.api_url()),
    ];
    for (name, value) in settings {
        println!("export {name}='{value}'");
    }
    println!();
    println!("HCSS_API_URL is where the mock's HeavyJob-like API answers, for your app's calls;");
    println!(
        "it allows each company {} calls a minute and {} at once (--api-rate-per-minute, --api-concurrency).",
        args.api_limits.per_window, args.api_limits.in_flight
    );
    println!("Serving until stopped (Ctrl-C); {COMMANDS}.");
    // Commands typed on the standard input, read on a thread of their own.
    let mock = std::sync::Arc::new(mock);
    let typed_at = mock.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            let said = obey(&line, &typed_at);
            if !said.is_empty() {
                println!("{said}");
            }
        }
    });
    std::future::pending::<()>().await;
    Ok(())
}
