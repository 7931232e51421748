//! A small client of the server's event streams, as a browser's `EventSource` reads them.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

/// How long a test waits for the next event before it fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// One event: its type, id and data (JSON).
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: Value,
    /// The data as sent.
    pub raw: String,
}

impl SseEvent {
    /// The seats the event names: a change's `seat_ids`, or a snapshot's taken seats.
    pub fn seats(&self) -> Vec<String> {
        let text = |v: &Value| v.as_str().expect("a seat id").to_owned();
        match self.event.as_str() {
            "snapshot" => self.data["seats"]
                .as_array()
                .expect("snapshot seats")
                .iter()
                .map(|seat| text(&seat["seat_id"]))
                .collect(),
            _ => self.data["seat_ids"]
                .as_array()
                .expect("seat_ids")
                .iter()
                .map(text)
                .collect(),
        }
    }

    pub fn version(&self) -> u64 {
        self.data["version"].as_u64().expect("a version")
    }
}

pub struct EventStream {
    response: reqwest::Response,
    buffer: String,
    /// The id of the last event read, as a browser keeps it.
    pub last_event_id: Option<String>,
}

impl EventStream {
    /// Opens `url`, resuming after `last_event_id` if given; fails unless the server answers
    /// with an event stream.
    pub async fn open(client: &reqwest::Client, url: &str, last_event_id: Option<&str>) -> Self {
        let response = Self::request(client, url, last_event_id).await;
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        let kind = response.headers()["content-type"].to_str().unwrap();
        assert!(kind.starts_with("text/event-stream"), "{kind}");
        Self {
            response,
            buffer: String::new(),
            last_event_id: last_event_id.map(str::to_owned),
        }
    }

    /// The answer to a stream request, whatever it is.
    pub async fn request(
        client: &reqwest::Client,
        url: &str,
        last_event_id: Option<&str>,
    ) -> reqwest::Response {
        let mut request = client.get(url).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        request.send().await.expect("stream request")
    }

    /// The next event, skipping keep-alive comments; `None` once the stream has ended. Fails
    /// the test if nothing comes within `PATIENCE`.
    pub async fn next(&mut self) -> Option<SseEvent> {
        tokio::time::timeout(PATIENCE, self.next_event())
            .await
            .expect("no event within the patience of the test")
    }

    async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse(&block) {
                    if event.id.is_some() {
                        self.last_event_id.clone_from(&event.id);
                    }
                    return Some(event);
                }
                continue;
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Reads events until one satisfies `wanted`, and returns it with those before it.
    pub async fn until(&mut self, wanted: impl Fn(&SseEvent) -> bool) -> (SseEvent, Vec<SseEvent>) {
        let mut before = Vec::new();
        loop {
            let event = self.next().await.expect("the stream ended first");
            if wanted(&event) {
                return (event, before);
            }
            before.push(event);
        }
    }
}

/// One event block; `None` for a comment-only block.
fn parse(block: &str) -> Option<SseEvent> {
    let (mut event, mut id, mut data) = (None, None, Vec::new());
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = Some(value.to_owned()),
            "id" => id = Some(value.to_owned()),
            "data" => data.push(value),
            _ => {}
        }
    }
    if data.is_empty() {
        return None;
    }
    let raw = data.join("\n");
    Some(SseEvent {
        event: event.unwrap_or_else(|| "message".into()),
        id,
        data: serde_json::from_str(&raw).expect("event data is JSON"),
        raw,
    })
}
