//! The tutorial's routes, in its wire format, frozen: its page and clients work unchanged.

use serde::Deserialize;

pub mod events;
pub mod movies;
pub mod sessions;

/// The body of hold, confirm and release: who is asking.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    /// Letters, digits, `-` and `_`, 1 to 64 of them.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub user_id: String,
}
