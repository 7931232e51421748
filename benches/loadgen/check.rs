//! The invariant check after every HTTP run: the database against what clients were told.

use sqlx::PgPool;

use crate::options::Scenario;
use crate::report::Sample;

/// What clients were told, to check the database against afterwards.
#[derive(Default)]
pub struct Told {
    /// (movie, seat, session) of every hold acknowledged and neither released nor confirmed.
    pub held: Vec<(String, String, uuid::Uuid)>,
    pub confirmed: Vec<(String, String, uuid::Uuid)>,
    pub released: Vec<uuid::Uuid>,
}

impl Told {
    /// A granted hold, as either API answers it: its seats.
    pub fn hold(&mut self, hold: &serde_json::Value) {
        let text = |key: &str| hold[key].as_str().unwrap().to_owned();
        let seats: Vec<String> = match hold.get("seat_ids") {
            // An API hold: its seats.
            Some(seats) => serde_json::from_value(seats.clone()).unwrap(),
            None => vec![text("seat_id")],
        };
        for seat in seats {
            self.held
                .push((text("movie_id"), seat, text("session_id").parse().unwrap()));
        }
    }

    pub fn merge(&mut self, other: Told) {
        self.held.extend(other.held);
        self.confirmed.extend(other.confirmed);
        self.released.extend(other.released);
    }
}

/// No seat has two rows; every acknowledged hold, booking and release is reflected; the hot
/// seat had exactly one winner.
pub async fn check(
    pool: &PgPool,
    scenario: Scenario,
    told: &Told,
    sample: &Sample,
) -> Result<(), String> {
    let (doubled,): (i64,) = sqlx::query_as(
        "select count(*) from (select 1 from seat_holds group by movie_id, seat_id having count(*) > 1) d",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    if doubled > 0 {
        return Err(format!("{doubled} seats have two holders"));
    }
    let rows = |list: &[(String, String, uuid::Uuid)]| {
        let movies: Vec<String> = list.iter().map(|(m, ..)| m.clone()).collect();
        let seats: Vec<String> = list.iter().map(|(_, s, _)| s.clone()).collect();
        let sessions: Vec<uuid::Uuid> = list.iter().map(|(.., id)| *id).collect();
        (movies, seats, sessions)
    };
    for (list, status) in [(&told.held, "held"), (&told.confirmed, "confirmed")] {
        let (movies, seats, sessions) = rows(list);
        let (found,): (i64,) = sqlx::query_as(
            "select count(*) from unnest($1::text[], $2::text[], $3::uuid[]) t(m, s, id)
             join seat_holds h on h.movie_id = t.m and h.seat_id = t.s and h.session_id = t.id
             where h.status = $4",
        )
        .bind(&movies)
        .bind(&seats)
        .bind(&sessions)
        .bind(status)
        .fetch_one(pool)
        .await
        .unwrap();
        if found != list.len() as i64 {
            return Err(format!(
                "{} acknowledged {status} seats, {found} found in seat_holds",
                list.len()
            ));
        }
    }
    let (lingering,): (i64,) =
        sqlx::query_as("select count(*) from seat_holds where session_id = any($1)")
            .bind(&told.released)
            .fetch_one(pool)
            .await
            .unwrap();
    if lingering > 0 {
        return Err(format!("{lingering} released seats are still taken"));
    }
    if scenario == Scenario::HotSeat {
        let winners = told.held.len();
        let refused = sample.outcomes.get("409").copied().unwrap_or(0);
        if winners != 1 || refused != sample.ops {
            return Err(format!(
                "hot seat: {winners} winners, outcomes {:?}",
                sample.outcomes
            ));
        }
    }
    Ok(())
}
