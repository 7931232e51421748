//! Domain types and rules, pure (no database, no HTTP): ids valid by construction, the
//! catalogue, seats, sessions and their rules, and seating.
//!
//! Parsing happens once, at the edge; everything past it works with these types.

mod catalogue;
mod ids;
pub mod seating;
mod seats;
mod session;

pub use catalogue::{Movie, ScreeningId, ScreeningIdError, seed_movies};
pub use ids::*;
pub use seats::*;
pub use session::*;
