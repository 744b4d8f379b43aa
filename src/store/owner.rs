//! Whose sessions: [`SessionOwner`], the user or company a session is filed under in a
//! token store's owner index.

use super::{KeyKind, StoreKey, TokenSet};
use crate::claims::Claims;

/// Whose sessions: a user (`sub`) or a company (`CompanyId`), from the claims of the
/// sessions' access tokens, or a session at the identity service (`sid`, from the
/// sessions' ID tokens).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionOwner {
    /// The user with this `sub`.
    Subject(String),
    /// Every user of the company with this `CompanyId`.
    Company(String),
    /// The sessions signed in within the identity service's session with this `sid`
    /// (the claim of their ID token), which a back-channel logout token names.
    IdentitySession(String),
}

impl SessionOwner {
    /// The owners a token set's claims name: its subject and its company, and the `sid`
    /// of its ID token, when present.
    pub fn of(tokens: &TokenSet) -> Vec<SessionOwner> {
        let mut owners = Vec::new();
        if let Some(subject) = tokens.claims.subject() {
            owners.push(SessionOwner::Subject(subject.to_owned()));
        }
        if let Some(company) = tokens.claims.company_id() {
            owners.push(SessionOwner::Company(company.to_owned()));
        }
        if let Some(id_token) = &tokens.id_token {
            let claims = Claims::of_access_token(id_token.expose_secret());
            if let Some(sid) = claims.get_str("sid").filter(|sid| !sid.is_empty()) {
                owners.push(SessionOwner::IdentitySession(sid.to_owned()));
            }
        }
        owners
    }

    /// The key of the owner's index entry ([`KeyKind::Owner`]), safe in any store (a
    /// digest).
    pub fn index_key(&self) -> StoreKey {
        StoreKey::of_owner(self)
    }
}

/// The owners a set stored under `key` is filed under: those its claims name for a
/// session, none for a company token.
pub(crate) fn owners_of(key: StoreKey, tokens: &TokenSet) -> Vec<SessionOwner> {
    match key.kind() {
        KeyKind::Session => SessionOwner::of(tokens),
        KeyKind::CompanyToken
        | KeyKind::Login
        | KeyKind::StateClaim
        | KeyKind::Owner
        | KeyKind::ApiBudget => Vec::new(),
    }
}
