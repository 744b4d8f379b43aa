//! The configuration doctor: `cargo run --example doctor` reads the configuration from
//! the environment as an app does (`HcssConfig::from_env`, and `HCSS_REDIS_URL` when
//! built with `--features redis`), asks the identity service (and Redis) whether it
//! works, prints the checklist, and exits with 1 when an item failed: run it at deploy
//! time, before users find out.

use std::process::ExitCode;

use hcss_auth::{HcssAuth, HcssConfig};

#[cfg(feature = "redis")]
fn layer(config: HcssConfig) -> Result<HcssAuth, String> {
    match std::env::var("HCSS_REDIS_URL") {
        // Lazily, so that an unreachable Redis is an item of the checklist.
        Ok(url) if !url.is_empty() => hcss_auth::store::RedisStore::connect_lazy(&url)
            .map(|store| HcssAuth::with_store(config, store))
            .map_err(|err| format!("HCSS_REDIS_URL: {err}")),
        _ => Ok(HcssAuth::new(config)),
    }
}

#[cfg(not(feature = "redis"))]
fn layer(config: HcssConfig) -> Result<HcssAuth, String> {
    if std::env::var("HCSS_REDIS_URL").is_ok_and(|url| !url.is_empty()) {
        eprintln!("HCSS_REDIS_URL is set, but this build has no Redis store: build with `--features redis` to check it");
    }
    Ok(HcssAuth::new(config))
}

#[tokio::main]
async fn main() -> ExitCode {
    let auth = match HcssConfig::from_env()
        .map_err(|err| err.to_string())
        .and_then(layer)
    {
        Ok(auth) => auth,
        Err(err) => {
            eprintln!("[FAIL] configuration: {err}");
            return ExitCode::FAILURE;
        }
    };
    let report = auth.check().await;
    print!("{report}");
    if report.has_failures() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
