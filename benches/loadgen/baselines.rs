//! The database's own rate for the same work, from `pgbench` at the same client count, on a
//! database set up as the server's was: (a) the hold's own SQL, one `hold_seats` call per
//! request; (b) the physical limit, a one-row insert into a table with only the primary key
//! (for the hot seat, onto the row that exists, so it writes nothing); (c) the minimal
//! statement on the real tables.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sqlx::PgPool;

use crate::common::TestDb;
use crate::options::Scenario;
use crate::report::{Kind, Sample};

/// The n-th distinct seat, from the sequence, as `m` (movie) and `s` (seat).
const NEXT_SEAT: &str = "(select n, 'bench-' || (n / 1300 % 400 + 1) as m,
        chr(65 + (n % 1300 / 50)::int) || (n % 50 + 1) as s
      from (select nextval('bench_seq') - 1 as n) q)";

/// The script for `kind` doing `scenario`'s work, or none where that baseline has no meaning.
fn script(kind: Kind, scenario: Scenario) -> Option<String> {
    let hot = "(select 0 as n, 'inception' as m, 'A1' as s)";
    let seat = match scenario {
        Scenario::Holds | Scenario::Flow => NEXT_SEAT,
        Scenario::HotSeat => hot,
        Scenario::SeatMap | Scenario::SeatMapV1 | Scenario::GroupHolds => "",
    };
    Some(match (kind, scenario) {
        (Kind::Function, Scenario::Holds | Scenario::HotSeat) => format!(
            "select h.* from {seat} t, hold_seats(array[1], array[t.m], array[t.s],
                 array[gen_random_uuid()], array['p' || nextval('bench_seq')], 3600, 8) h;"
        ),
        // The n-th group of 4 adjacent seats, as the HTTP run asks for them, in lock order.
        (Kind::Function, Scenario::GroupHolds) => r#"select h.* from
                 (select n, 'group-' || (n / 312 % 400 + 1) as m,
                         chr(65 + (n % 312 / 12)::int) as r, (n % 12) * 4 + 1 as f
                    from (select nextval('bench_seq') - 1 as n) q) t,
                 hold_seats(array[1, 1, 1, 1], array[t.m, t.m, t.m, t.m],
                            array(select x from unnest(array[t.r || t.f, t.r || (t.f + 1),
                                                             t.r || (t.f + 2), t.r || (t.f + 3)]) x
                                   order by x collate "C"),
                            array[gen_random_uuid()], array['p' || t.n], 3600, 8) h;"#
            .to_owned(),
        (Kind::Bare, Scenario::Holds | Scenario::HotSeat) => format!(
            "insert into bench_bare select m, s, gen_random_uuid(), 'raw', now() + interval '1 hour'
             from {seat} t on conflict do nothing;"
        ),
        (Kind::Raw, Scenario::Holds | Scenario::HotSeat) => format!(
            "insert into seat_holds (movie_id, seat_id, session_id, user_id, expires_at)
             select m, s, '00000000-0000-0000-0000-000000000001', 'raw', now() + interval '1 hour'
             from {seat} t on conflict do nothing;"
        ),
        // Both maps read the same rows.
        (Kind::Raw, Scenario::SeatMap | Scenario::SeatMapV1) => r#"select seat_id, user_id, status = 'confirmed' from seat_holds
               where movie_id = 'bench-map' and (status = 'confirmed' or expires_at > now())
               order by seat_id collate "C";"#
            .to_owned(),
        // The flow's two writes: the seat row, then its confirmation.
        (Kind::Raw, Scenario::Flow) => format!(
            "insert into seat_holds (movie_id, seat_id, session_id, user_id, expires_at)
             select m, s, '00000000-0000-0000-0000-000000000001', 'raw', now() + interval '1 hour'
             from {seat} t on conflict do nothing;
             update seat_holds set status = 'confirmed', expires_at = null, confirmed_at = now()
             where (movie_id, seat_id) = (
                 select 'bench-' || (n / 1300 % 400 + 1), chr(65 + (n % 1300 / 50)::int) || (n % 50 + 1)
                 from (select currval('bench_seq') - 1 as n) s);"
        ),
        _ => return None,
    })
}

/// Whether `kind` has a figure for `scenario`.
pub fn applies(kind: Kind, scenario: Scenario) -> bool {
    script(kind, scenario).is_some()
}

/// Runs `kind`'s script for `scenario` under pgbench on `clients` connections (or as many as
/// PostgreSQL still accepts) for `duration`.
pub async fn run(
    kind: Kind,
    scenario: Scenario,
    clients: usize,
    duration: Duration,
    db: &TestDb,
    admin: &PgPool,
    dir: &Path,
) -> Sample {
    let script = script(kind, scenario).expect("a baseline for this scenario");
    let clients = clients.min(free_connections(admin).await);
    // pgbench reads one statement per line.
    let script = script
        .split(';')
        .map(|statement| statement.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|statement| !statement.is_empty())
        .fold(String::new(), |mut out, statement| {
            let _ = writeln!(out, "{statement};");
            out
        });
    let path = dir.join(format!("{kind:?}-{}.sql", scenario.name()));
    std::fs::write(&path, script).unwrap();
    let output = Command::new("pgbench")
        .args(["-n", "-M", "prepared", "-c", &clients.to_string()])
        .args(["-j", &clients.min(2).to_string(), "-f"])
        .arg(&path)
        .args(["-T", &duration.as_secs().max(1).to_string()])
        .arg(&db.url)
        .output()
        .expect("run pgbench (from postgresql-client)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pgbench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let field = |prefix: &str| {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(prefix))
            .and_then(|rest| rest.split(['/', ' ']).find(|s| !s.is_empty()))
            .and_then(|n| n.parse::<f64>().ok())
    };
    let tps = field("tps = ").unwrap_or_else(|| panic!("no tps in pgbench's output:\n{stdout}"));
    let processed = field("number of transactions actually processed: ")
        .unwrap_or_else(|| panic!("no transaction count in pgbench's output:\n{stdout}"))
        as u64;
    let mut outcomes = BTreeMap::new();
    if let Some(failed) = field("number of failed transactions: ").filter(|&n| n > 0.0) {
        outcomes.insert("failed".to_owned(), failed as u64);
    }
    Sample {
        ops: processed,
        elapsed: Duration::from_secs_f64(processed as f64 / tps),
        outcomes,
        connections: Some(clients),
        ..Sample::default()
    }
}

/// Connections PostgreSQL can still accept, less a few for the harness: pgbench cannot use
/// more (the server here allows 100).
async fn free_connections(pool: &PgPool) -> usize {
    let (free,): (i64,) = sqlx::query_as(
        "select current_setting('max_connections')::int
              - current_setting('superuser_reserved_connections')::int
              - (select count(*) from pg_stat_activity where backend_type = 'client backend')
              - 4",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    usize::try_from(free).unwrap_or(1).max(1)
}
