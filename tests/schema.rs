//! `migrations/schema.sql` is the migrated schema in one file, where a reader finds every
//! table, view and function as it stands (the migrations repeat functions whole as they
//! change). It is generated, never edited: `UPDATE_SCHEMA=1 cargo test --test schema`.

mod common;

use std::path::Path;
use std::process::Command;

use common::TestDb;

/// `pg_dump --schema-only` of a newly migrated database, without its owner, its grants and the
/// lines that name the versions of the server and of `pg_dump`: the same bytes on every
/// machine with this major version of PostgreSQL.
fn dump(db: &TestDb, into: &Path) -> String {
    let output = Command::new("pg_dump")
        .args([
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--restrict-key=schema",
            "--file",
        ])
        .arg(into)
        .arg("--dbname")
        .arg(&db.url)
        .output()
        .expect("run pg_dump (Debian package postgresql-client)");
    assert!(
        output.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dumped = std::fs::read_to_string(into).expect("read the dump");
    dumped
        .lines()
        .filter(|line| !line.starts_with("-- Dumped from ") && !line.starts_with("-- Dumped by "))
        .map(|line| format!("{line}\n"))
        .collect()
}

#[tokio::test]
async fn schema_sql_is_the_migrated_schema() {
    let db = TestDb::new().await;
    let temporary = tempfile::NamedTempFile::new().expect("a temporary file");
    let generated = dump(&db, temporary.path());
    let committed_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/schema.sql");
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&committed_path, &generated).expect("write migrations/schema.sql");
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    if committed != generated {
        let first = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "migrations/schema.sql is not the migrated schema (first difference at line {}: \
             {:?} committed, {:?} generated); regenerate it with \
             `UPDATE_SCHEMA=1 cargo test --test schema`",
            first + 1,
            committed.lines().nth(first).unwrap_or("(end)"),
            generated.lines().nth(first).unwrap_or("(end)"),
        );
    }
}
