//! `/api/v1`: identities, the seat map with the caller's own seats, group and best-available
//! holds with a counter-offer after a lost race, sessions, and idempotent writes. Here: the
//! signing of tokens and the extractors of who asks and which change it is.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use tokio::sync::OnceCell;

use crate::booking::HoldPolicy;
use crate::config::Secret;
use crate::domain::{IdempotencyKey, UserId};
use crate::http::extract::bearer_token;
use crate::http::{AppError, AppState};
use crate::identity::Identities;
use crate::store::{Secrets, Store};

pub mod identities;
pub mod movies;
pub mod sessions;

/// Signs and checks tokens, with the secret of the settings or else the store's, read once.
pub struct Signing {
    secret: SigningSecret,
    previous: Option<Secret>,
    identities: OnceCell<Identities>,
}

/// Where the secret tokens are signed with comes from.
pub enum SigningSecret {
    /// `IDENTITY_SECRET`.
    Set(Secret),
    /// The store's, read on first use.
    Kept(Arc<dyn Secrets>),
}

impl Signing {
    pub fn new(secret: SigningSecret, previous: Option<Secret>) -> Self {
        Self {
            secret,
            previous,
            identities: OnceCell::new(),
        }
    }

    async fn get(&self) -> Result<&Identities, AppError> {
        self.identities
            .get_or_try_init(|| async {
                let previous = self.previous.as_ref().map(|p| p.expose().as_bytes());
                let current = match &self.secret {
                    SigningSecret::Set(secret) => secret.expose().as_bytes().to_vec(),
                    SigningSecret::Kept(store) => store.identity_secret().await?,
                };
                Ok::<_, AppError>(Identities::new(&current, previous))
            })
            .await
    }
}

/// The API user a request's bearer token proves.
pub struct Caller(pub UserId);

impl<S: Store> FromRequestParts<AppState<S>> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState<S>) -> Result<Self, AppError> {
        let token = bearer_token(&parts.headers).ok_or(AppError::InvalidToken)?;
        let identities = app.api.signing.get().await?;
        identities
            .verify(token)
            .map(Caller)
            .ok_or(AppError::InvalidToken)
    }
}

/// An `Idempotency-Key` header, if the request has one.
pub struct KeyHeader(pub Option<IdempotencyKey>);

impl<S: Send + Sync> FromRequestParts<S> for KeyHeader {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        let key =
            IdempotencyKey::parse(value.as_bytes()).map_err(|_| AppError::InvalidIdempotencyKey)?;
        Ok(Self(Some(key)))
    }
}

/// What the API's routes share, beside the store.
pub struct Api {
    pub signing: Signing,
    pub max_seats_per_hold: usize,
    /// The rules holds are granted under, for the counter-offer's quota.
    pub hold_policy: HoldPolicy,
    /// `MAX_IDEMPOTENCY_KEYS_PER_USER`.
    pub max_keys_per_user: u64,
}
