//! What one HCSS API call costs through `HcssApi` beyond the same request made with
//! `reqwest` alone, in a form a profiler can count: one process makes N calls of one
//! kind (the mock's API over loopback HTTP, the budget in `MemoryStore`), so that
//! `valgrind --tool=callgrind` counts its instructions, or both kinds in alternating
//! blocks and prints their times.
//!
//! ```text
//! cargo build --release -p hcss-auth-tools --bin api_cost
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/api_cost bare 3000
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/api_cost hcss 3000
//! # and again with 1000: a call's instructions are (I(3000) - I(1000)) / 2000 for each
//! target/release/api_cost alternate 200
//! ```
//!
//! `bare` is the request `reqwest` makes alone, on a client configured as the layer
//! configures its own (user agent, no redirects, timeouts), with the same token and a URL
//! given as text, as apps write it; `hcss` is `HcssApi::for_company(..).get(..).send()`.

use std::time::{Duration, Instant};

use hcss_auth::testing::{MockApiLimits, MockHcssIdentity};
use hcss_auth::{HcssApi, HcssAuth, HcssCaller, HcssCompanyTokens, MemoryStore};

const COMPANY: &str = "cost-company";
const UNITS: &str = "/heavyjob/api/v1/businessUnits";
const BLOCK: u32 = 50;

struct Calls {
    client: reqwest::Client,
    url: String,
    token: String,
    caller: HcssCaller,
}

impl Calls {
    async fn bare(&self) {
        let response = self
            .client
            .get(&self.url)
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("the mock answers");
        assert_eq!(response.status(), 200);
        response.bytes().await.expect("a body");
    }

    /// The time of `BLOCK` calls of one kind.
    async fn block<'a, F: std::future::Future<Output = ()> + 'a>(
        &'a self,
        call: impl Fn(&'a Self) -> F,
    ) -> Duration {
        let started = Instant::now();
        for _ in 0..BLOCK {
            call(self).await;
        }
        started.elapsed()
    }

    async fn hcss(&self) {
        let response = self
            .caller
            .get(UNITS)
            .send()
            .await
            .expect("the mock answers");
        assert_eq!(response.status(), 200);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(mode), Some(n)) = (args.next(), args.next().and_then(|n| n.parse::<u32>().ok()))
    else {
        eprintln!(
            "usage: api_cost bare|hcss|alternate N   (N calls, or N blocks of {BLOCK} of each)"
        );
        std::process::exit(2);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mock = MockHcssIdentity::start().await;
        mock.set_api_limits(Some(MockApiLimits::new(
            u32::MAX,
            Duration::from_millis(100),
            1000,
        )));
        // The budget never reached, in the shortest window allowed, as in the bench.
        let config = mock
            .config_builder("http://127.0.0.1:9/hcss/callback")
            .scopes(["heavyjob:read"])
            .api_rate_per_minute(1_000_000)
            .api_rate_window(Duration::from_millis(100))
            .api_concurrency(20)
            .build()
            .expect("a valid configuration");
        let auth = HcssAuth::with_store(config, MemoryStore::new());
        let token = HcssCompanyTokens::new(&auth)
            .token(COMPANY)
            .await
            .expect("a company token");
        let calls = Calls {
            client: reqwest::Client::builder()
                .user_agent(concat!("hcss-auth/", env!("CARGO_PKG_VERSION")))
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .connect_timeout(Duration::from_secs(5))
                .build()
                .expect("a client"),
            url: format!("{}{UNITS}", mock.api_url()),
            token: token.secret().to_owned(),
            caller: HcssApi::new(&auth).for_company(COMPANY),
        };
        // Connections made and code paths warm before counting.
        calls.bare().await;
        calls.hcss().await;
        match mode.as_str() {
            "bare" | "hcss" => {
                let started = Instant::now();
                for _ in 0..n {
                    if mode == "bare" {
                        calls.bare().await;
                    } else {
                        calls.hcss().await;
                    }
                }
                println!(
                    "{mode}: {n} calls, {:.1} µs each",
                    started.elapsed().as_secs_f64() * 1e6 / f64::from(n)
                );
            }
            "alternate" => {
                let (mut bare, mut hcss) = (Duration::ZERO, Duration::ZERO);
                let mut ratios = Vec::new();
                for round in 0..n {
                    // Each kind goes first in every other pair: the block after a switch
                    // runs on caches the other kind left, and which kind that is must not
                    // depend on the kind (bare first every time read about 1.5 points
                    // higher, HcssApi first as much lower).
                    let hcss_first = round % 2 == 1;
                    let mut block_hcss = Duration::ZERO;
                    if hcss_first {
                        block_hcss = calls.block(Calls::hcss).await;
                    }
                    let block_bare = calls.block(Calls::bare).await;
                    if !hcss_first {
                        block_hcss = calls.block(Calls::hcss).await;
                    }
                    bare += block_bare;
                    hcss += block_hcss;
                    ratios.push(block_hcss.as_secs_f64() / block_bare.as_secs_f64());
                }
                ratios.sort_by(f64::total_cmp);
                let calls = f64::from(n * BLOCK);
                println!(
                    "alternate: {n} blocks of {BLOCK} calls each: bare {:.1} µs, HcssApi {:.1} µs, \
                     ratio {:.3} (median of the blocks' {:.3}, quartiles {:.3}-{:.3})",
                    bare.as_secs_f64() * 1e6 / calls,
                    hcss.as_secs_f64() * 1e6 / calls,
                    hcss.as_secs_f64() / bare.as_secs_f64(),
                    ratios[ratios.len() / 2],
                    ratios[ratios.len() / 4],
                    ratios[ratios.len() * 3 / 4],
                );
            }
            other => {
                eprintln!("unknown mode {other:?}: bare, hcss or alternate");
                std::process::exit(2);
            }
        }
    });
}
