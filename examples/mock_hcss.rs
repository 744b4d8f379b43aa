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
//!
//! It signs in one user (of a customer company), issues JWT access tokens that live an
//! hour, refresh tokens that rotate, and company tokens (`company` and
//! `client_credentials` grants); `GET /heavyjob/api/v1/businessUnits` accepts its live
//! access tokens.

use std::error::Error;

use hcss_auth::testing::MockHcssIdentity;

struct Args {
    port: u16,
    redirect_uri: String,
    auto_consent: bool,
}

const USAGE: &str =
    "usage: mock_hcss [--port N] [--redirect-uri http://127.0.0.1:3000/hcss/callback] [--auto-consent]";

fn args() -> Result<Args, Box<dyn Error>> {
    let mut args = Args {
        port: 4000,
        redirect_uri: "http://127.0.0.1:3000/hcss/callback".into(),
        auto_consent: false,
    };
    let mut given = std::env::args().skip(1);
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
            _ => return Err(format!("unknown argument {arg}\n{USAGE}").into()),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = args()?;
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
    println!("HCSS_API_URL is where the mock's HeavyJob-like API answers, for your app's calls.");
    println!("Serving until stopped (Ctrl-C).");
    std::future::pending::<()>().await;
    Ok(())
}
