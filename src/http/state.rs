//! What every handler shares: the store, the seat maps' rounds, the streams, the settings.

use std::sync::Arc;

use super::events::Streams;
use super::limits::Limiter;
use super::openapi::Document;
use super::seat_maps::SeatMaps;
use super::v1::Api;
use crate::store::Reports;

/// What every handler shares, behind one `Arc`: extractors and middleware clone it for every
/// request, and one counter costs less than one per field.
pub struct AppState<S>(pub(super) Arc<Shared<S>>);

impl<S> Clone for AppState<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<S> std::ops::Deref for AppState<S> {
    type Target = Shared<S>;

    fn deref(&self) -> &Shared<S> {
        &self.0
    }
}

/// The store, the seat maps' rounds, the streams, the settings the routes need.
pub struct Shared<S> {
    pub store: S,
    /// The report views, if the store has them.
    pub reports: Option<Arc<dyn Reports>>,
    pub seat_maps: SeatMaps,
    pub streams: Streams,
    /// `REPORTS_TOKEN`; `None`: the reports route is off.
    pub reports_token: Option<Arc<str>>,
    pub api: Api,
    pub openapi: Document,
    pub limiter: Limiter,
}
