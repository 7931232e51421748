//! What one HTTP client may cost: a silent, idle, slow or oversized connection is closed in
//! bounded time, and a capped number of connections leaves room for real clients.

mod common;

use std::time::Duration;

use boxoffice::store::MemoryStore;
use common::{LONG_TTL, TestApp, policy, test_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Long enough for a loaded machine; the tests wait for events, never for this.
const PATIENCE: Duration = Duration::from_secs(10);

async fn app_with(header_read_timeout: Duration, max_connections: usize) -> TestApp {
    let mut config = test_config();
    config.body_read_timeout = Duration::from_millis(300);
    config.connections.header_read_timeout = header_read_timeout;
    config.connections.max_connections = max_connections;
    TestApp::spawn(MemoryStore::new(policy(LONG_TTL, 8)), config).await
}

/// Everything the server sends until it closes the connection.
async fn read_until_closed(socket: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, socket.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

/// A connection answered once, so the server has it open.
async fn served(addr: std::net::SocketAddr) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(HEALTHZ).await.unwrap();
    let mut first = [0u8; 12];
    socket.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    socket
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let app = app_with(Duration::from_millis(300), 64).await;
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    assert_eq!(read_until_closed(&mut silent).await, "");

    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost:")
        .await
        .unwrap();
    let answer = read_until_closed(&mut slow).await;
    assert!(!answer.contains("200 OK"), "{answer}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let app = app_with(Duration::from_millis(300), 64).await;
    let mut socket = TcpStream::connect(app.addr).await.unwrap();
    socket.write_all(HEALTHZ).await.unwrap();
    let answer = read_until_closed(&mut socket).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
}

/// The answer to a request whose header goes on past any limit.
async fn header_over_the_limit(app: &TestApp) -> String {
    let mut socket = TcpStream::connect(app.addr).await.unwrap();
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}",
        "a".repeat(64 * 1024)
    );
    // The server may close before it has read it all.
    let _ = socket.write_all(huge.as_bytes()).await;
    read_until_closed(&mut socket).await
}

#[tokio::test]
async fn a_header_over_the_limit_answers_431_and_is_not_buffered() {
    let app = app_with(Duration::from_secs(5), 64).await;
    let answer = header_over_the_limit(&app).await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );
}

#[tokio::test]
async fn past_the_connection_cap_a_client_waits_for_a_free_one_and_is_then_served() {
    let app = app_with(Duration::from_secs(60), 2).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(served(app.addr).await);
    }
    // The kernel completes the handshake, but the server reads nothing from a third
    // connection while two are open.
    let mut third = TcpStream::connect(app.addr).await.unwrap();
    third.write_all(HEALTHZ).await.unwrap();
    let mut first = [0u8; 12];
    let waiting = tokio::time::timeout(Duration::from_millis(500), third.read_exact(&mut first));
    assert!(waiting.await.is_err(), "served past the cap");

    drop(held.pop());
    tokio::time::timeout(PATIENCE, third.read_exact(&mut first))
        .await
        .expect("served once a connection closed")
        .unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
}

/// The status line and the JSON body of a whole answer.
fn status_and_body(answer: &str) -> (&str, serde_json::Value) {
    let status = answer.lines().next().unwrap_or_default();
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let body = serde_json::from_str(body).unwrap_or_else(|_| panic!("a JSON body: {answer}"));
    (status, body)
}

#[tokio::test]
async fn a_target_without_a_leading_slash_answers_400_json() {
    let app = app_with(Duration::from_secs(5), 64).await;
    for target in ["a", "*", "inception/seats", "http:", "movies:80"] {
        let mut socket = TcpStream::connect(app.addr).await.unwrap();
        let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        socket.write_all(request.as_bytes()).await.unwrap();
        let answer = read_until_closed(&mut socket).await;
        let (status, body) = status_and_body(&answer);
        assert_eq!(status, "HTTP/1.1 400 Bad Request", "{target}: {answer}");
        // hyper refuses some before any router sees them: those are `bad_request`.
        let code = body["code"].as_str().unwrap();
        assert!(
            ["invalid_target", "bad_request"].contains(&code),
            "{target}: {answer}"
        );
    }
}

#[tokio::test]
async fn a_body_that_stalls_answers_408_once_its_time_is_up() {
    let app = app_with(Duration::from_secs(5), 64).await;
    let head = "POST /movies/inception/seats/A1/hold HTTP/1.1\r\nHost: x\r\n\
                Content-Type: application/json\r\n";
    for (framing, sent) in [
        ("Content-Length: 100\r\n", r#"{"user_id":"#.to_owned()),
        (
            "Transfer-Encoding: chunked\r\n",
            "5\r\n{\"use\r\n".to_owned(),
        ),
    ] {
        let mut socket = TcpStream::connect(app.addr).await.unwrap();
        let request = format!("{head}{framing}\r\n{sent}");
        socket.write_all(request.as_bytes()).await.unwrap();
        let answer = read_until_closed(&mut socket).await;
        let (status, body) = status_and_body(&answer);
        assert_eq!(status, "HTTP/1.1 408 Request Timeout", "{framing}");
        assert_eq!(body["code"], "body_timeout", "{framing}");
    }
}

/// The server's count of connections it closed for `reason`.
async fn closed_for(app: &TestApp, reason: &str) -> f64 {
    let metrics = app.metrics().await;
    let series = format!("boxoffice_http_connections_closed_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0.0, |value| value.parse().unwrap())
}

/// A client that pipelines requests and reads none of the answers, with a small receive
/// buffer of its own, so the server's answers stall at once. Returns the socket and how many
/// requests it sent (its writer gives up when the server stops reading).
async fn pipelining_reader_that_never_reads(
    app: &TestApp,
) -> (tokio::net::tcp::OwnedReadHalf, usize) {
    const REQUESTS: usize = 20_000;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.addr).await.unwrap();
    let (reader, mut writer) = stream.into_split();
    tokio::spawn(async move {
        let _ = writer.write_all(&HEALTHZ.repeat(REQUESTS)).await;
        // Kept open (not half-closed) until the server closes the connection.
        std::future::pending::<()>().await;
        drop(writer);
    });
    (reader, REQUESTS)
}

/// A client that pipelines and never reads kept its connection, and megabytes of answers in
/// the kernel, for good: now answers that make no progress for `RESPONSE_WRITE_TIMEOUT_SECS`
/// close it, after a bounded number of answers.
#[tokio::test]
async fn a_client_that_never_reads_its_answers_is_closed_once_they_stall() {
    let mut config = test_config();
    config.connections.response_write_timeout = Duration::from_millis(300);
    let app = TestApp::spawn(MemoryStore::new(policy(LONG_TTL, 8)), config).await;
    let before = closed_for(&app, "response_stalled").await;
    let (mut reader, sent) = pipelining_reader_that_never_reads(&app).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while closed_for(&app, "response_stalled").await <= before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled connection is still open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // What was queued before the close, then the end (or a reset, for the requests the
    // server had not read).
    let mut answers = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, reader.read_to_end(&mut answers))
        .await
        .expect("the connection is closed");
    let answered = String::from_utf8_lossy(&answers)
        .matches("HTTP/1.1 200 OK")
        .count();
    assert!(answered < sent / 2, "{answered} of {sent} answered");
}

/// One address could take every connection the server allows: now it has a share, and past
/// it a new connection is answered 503 `too_many_connections` while others are served.
#[tokio::test]
async fn one_address_past_its_connection_share_is_answered_503_and_closed() {
    let mut config = test_config();
    config.connections.max_connections_per_ip = 2;
    let app = TestApp::spawn(MemoryStore::new(policy(LONG_TTL, 8)), config).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(served(app.addr).await);
    }
    let mut third = TcpStream::connect(app.addr).await.unwrap();
    third.write_all(HEALTHZ).await.unwrap();
    let answer = read_until_closed(&mut third).await;
    let (status, body) = status_and_body(&answer);
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable", "{answer}");
    assert_eq!(body["code"], "too_many_connections");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nretry-after: 1\r\n"),
        "{answer}"
    );

    // A connection closed makes room again.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut next = TcpStream::connect(app.addr).await.unwrap();
        next.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        if read_until_closed(&mut next)
            .await
            .starts_with("HTTP/1.1 200")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no room after a close"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// After the shutdown signal, one connection whose answers stall kept the process alive (39 s
/// once): now the server is done by `SHUTDOWN_TIMEOUT_SECS` whatever is still open.
#[tokio::test]
async fn shutdown_closes_what_is_still_open_at_its_deadline() {
    let mut config = test_config();
    config.connections.response_write_timeout = Duration::from_secs(600);
    config.connections.shutdown_timeout = Duration::from_millis(300);
    let listeners = boxoffice::Listeners::bind(&config).await.unwrap();
    let addr = listeners.public.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let store = MemoryStore::new(policy(LONG_TTL, 8));
        boxoffice::serve(listeners, store.into(), &config, async {
            let _ = stopped.await;
        })
        .await
    });
    let stuck = {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(addr).await.unwrap();
        // Served once, so the server has the connection; then answers it never reads, more
        // than all the buffers on the way hold, until the server stops reading.
        stream.write_all(HEALTHZ).await.unwrap();
        let mut first = [0u8; 12];
        stream.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
        let flood = HEALTHZ.repeat(300_000);
        let flooding = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&flood));
        assert!(flooding.await.is_err(), "the server read all of it");
        stream
    };
    stop.send(()).unwrap();
    let finished = tokio::time::timeout(PATIENCE, server).await;
    assert!(finished.is_ok(), "still serving past the shutdown deadline");
    finished.unwrap().unwrap().unwrap();
    let metrics = boxoffice::telemetry::handle().render();
    assert!(
        metrics
            .contains(r#"boxoffice_http_connections_closed_total{reason="shutdown_deadline"} 1"#),
        "the one connection left open is counted: {metrics}"
    );
    drop(stuck);
}

/// A body declared over `MAX_BODY_BYTES` was invited with `100 Continue`, then, when it did
/// not come, answered 408 after the body's time: now it is refused 413 at once, unread.
#[tokio::test]
async fn a_body_declared_too_large_is_refused_at_once_not_invited() {
    let app = app_with(Duration::from_secs(5), 64).await;
    let mut socket = TcpStream::connect(app.addr).await.unwrap();
    let request = "POST /movies/inception/seats/A1/hold HTTP/1.1\r\nHost: x\r\n\
                   Content-Type: application/json\r\nExpect: 100-continue\r\n\
                   Content-Length: 1000000\r\n\r\n";
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut first = [0u8; 12];
    tokio::time::timeout(PATIENCE, socket.read_exact(&mut first))
        .await
        .expect("an answer")
        .unwrap();
    assert_eq!(&first, b"HTTP/1.1 413", "not 100 Continue, nor 408 later");
    let rest = read_until_closed(&mut socket).await;
    assert!(rest.contains("\"code\":\"body_too_large\""), "{rest}");
}

/// A request hyper cannot parse is answered by hyper itself, before the router: two
/// different `Content-Length`s, say. That answer had an empty body; it now has the JSON error
/// every other answer has.
#[tokio::test]
async fn a_request_hyper_refuses_to_parse_is_answered_in_json() {
    let app = app_with(Duration::from_secs(5), 64).await;
    for request in [
        "POST /movies/inception/seats/A1/hold HTTP/1.1\r\nHost: x\r\n\
         Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    ] {
        let mut socket = TcpStream::connect(app.addr).await.unwrap();
        socket.write_all(request.as_bytes()).await.unwrap();
        let answer = read_until_closed(&mut socket).await;
        let (status, body) = status_and_body(&answer);
        assert_eq!(status, "HTTP/1.1 400 Bad Request", "{answer}");
        assert_eq!(body["code"], "bad_request", "{answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("\r\ncontent-type: application/json\r\n"),
            "{answer}"
        );
    }
    // A header over the limit, refused by hyper with 431: JSON too.
    let answer = header_over_the_limit(&app).await;
    let (status, body) = status_and_body(&answer);
    assert!(status.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(body["code"].is_string(), "{answer}");
}
