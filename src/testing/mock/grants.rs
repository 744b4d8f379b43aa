//! The mock's grant model: codes waiting for their exchange, refresh tokens with their
//! rotation state, access tokens, and revoked grants.

use super::*;

pub(super) struct PendingCode {
    pub(super) redirect_uri: String,
    pub(super) challenge: String,
    pub(super) scope: String,
    pub(super) expires: Instant,
}

pub(super) struct RefreshState {
    pub(super) grant: u64,
    pub(super) scope: String,
    pub(super) used: bool,
}

pub(super) struct AccessState {
    pub(super) grant: u64,
    pub(super) expires: Instant,
}

#[derive(Default)]
pub(super) struct Grants {
    pub(super) next: u64,
    pub(super) codes: HashMap<String, PendingCode>,
    pub(super) refresh: HashMap<String, RefreshState>,
    pub(super) access: HashMap<String, AccessState>,
    pub(super) revoked: std::collections::HashSet<u64>,
}

impl Grants {
    /// Issues an access token (and a refresh token when asked) under `grant`.
    pub(super) fn issue(
        &mut self,
        options: &MockHcssIdentityBuilder,
        grant: u64,
        scope: &str,
        with_refresh: bool,
    ) -> serde_json::Value {
        let access = format!("at_{}", random_token(24));
        self.access.insert(
            access.clone(),
            AccessState {
                grant,
                expires: Instant::now() + options.access_token_lifetime,
            },
        );
        let mut body = json!({
            "access_token": access,
            "token_type": "bearer",
            "expires_in": options.access_token_lifetime.as_secs(),
            "scope": scope,
        });
        if with_refresh {
            let refresh = format!("rt_{}", random_token(24));
            self.refresh.insert(
                refresh.clone(),
                RefreshState {
                    grant,
                    scope: scope.to_owned(),
                    used: false,
                },
            );
            body["refresh_token"] = json!(refresh);
        }
        body
    }
}
