//! Metrics in the Prometheus text format, served at `GET /metrics`: requests by route and
//! status with latency histograms, holds by outcome, hold batch sizes and queue depth, pool
//! connections, reaper runs and rows, open event streams, seat-map reads and the requests
//! waiting for one. Recorded with the `metrics` crate's
//! macros wherever the thing happens; this module installs the recorder and renders it.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Seconds: from a fast cached read to the request timeout.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Requests per batch, up to the most a batch takes.
const BATCH_BUCKETS: [f64; 7] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

pub const HTTP_REQUESTS: &str = "boxoffice_http_requests_total";
pub const HTTP_DURATION: &str = "boxoffice_http_request_duration_seconds";
/// Connections the server closed on a limit, by `reason`: `address_cap`,
/// `response_stalled`, `shutdown_deadline`.
pub const HTTP_CONNECTIONS_CLOSED: &str = "boxoffice_http_connections_closed_total";
pub const HOLDS: &str = "boxoffice_holds_total";
pub const HOLD_BATCH_SIZE: &str = "boxoffice_hold_batch_size";
pub const HOLD_QUEUE_DEPTH: &str = "boxoffice_hold_queue_depth";
pub const POOL_CONNECTIONS: &str = "boxoffice_db_pool_connections";
pub const REAPER_RUNS: &str = "boxoffice_reaper_runs_total";
pub const REAPER_ROWS: &str = "boxoffice_reaper_rows_total";
pub const EVENT_STREAMS: &str = "boxoffice_event_streams";
/// Event streams refused, by `reason`: `cap` (`MAX_EVENT_STREAMS`) or `address_share`
/// (`MAX_EVENT_STREAMS_PER_IP`).
pub const EVENT_STREAMS_REFUSED: &str = "boxoffice_event_streams_refused_total";
/// Seat-map reads of the database (or memory): one per round, whatever the requests it serves.
pub const SEAT_MAP_READS: &str = "boxoffice_seat_map_reads_total";
/// Seat-map requests waiting for the next round of their movie.
pub const SEAT_MAP_WAITING: &str = "boxoffice_seat_map_waiting";

/// The process's recorder, installed the first time it is asked for. There is one per process
/// (the macros record into a global), so every router in a process shares it.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), &LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(HOLD_BATCH_SIZE.into()), &BATCH_BUCKETS)
            })
            .expect("non-empty buckets")
            .install_recorder()
            .expect("no other metrics recorder is installed")
    })
}
