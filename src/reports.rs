//! Reports: the views of `migrations/0006_report_views.sql` by name, and their rows written as
//! an aligned table, RFC 4180 CSV or a JSON array of objects. The same names serve the
//! `boxoffice report` command and `GET /reports/{name}`.

use std::io::{self, Write};

use serde_json::{Map, Value};

/// A report, named as on the command line and in the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Report {
    /// Per movie, now: capacity, booked, held, free, occupancy %.
    Occupancy,
    /// Per day and movie: seats booked.
    SalesDaily,
    /// Per movie: holds started, confirmed, released, expired; conversion; time to pay.
    HoldFunnel,
    /// Per movie and seat: times held, times booked, the order seats sold in.
    SeatPopularity,
    /// Every seat change, without session ids.
    Ledger,
    /// Every booking: its reference, movie, seats, who and when.
    Bookings,
}

impl Report {
    pub const ALL: [Self; 6] = [
        Self::Occupancy,
        Self::SalesDaily,
        Self::HoldFunnel,
        Self::SeatPopularity,
        Self::Ledger,
        Self::Bookings,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Occupancy => "occupancy",
            Self::SalesDaily => "sales-daily",
            Self::HoldFunnel => "hold-funnel",
            Self::SeatPopularity => "seat-popularity",
            Self::Ledger => "ledger",
            Self::Bookings => "bookings",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|report| report.name() == name)
    }

    /// The view it reads.
    pub fn view(self) -> &'static str {
        match self {
            Self::Occupancy => "report_occupancy",
            Self::SalesDaily => "report_sales_daily",
            Self::HoldFunnel => "report_hold_funnel",
            Self::SeatPopularity => "report_seat_popularity",
            Self::Ledger => "report_ledger",
            Self::Bookings => "report_bookings",
        }
    }

    /// The order its rows are listed in.
    pub fn order(self) -> &'static str {
        match self {
            Self::Occupancy | Self::HoldFunnel => "movie_id",
            Self::SalesDaily => "day, movie_id",
            Self::SeatPopularity => "movie_id, row_number, seat_number",
            Self::Ledger => "id",
            Self::Bookings => "confirmed_at, booking_reference",
        }
    }
}

/// How a report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns, for a terminal.
    #[default]
    Table,
    /// RFC 4180: CRLF line ends, fields with commas, quotes or line breaks quoted.
    Csv,
    /// An array of objects, one per row and line, keys in column order.
    Json,
}

/// A report's rows, each an object with a key per column, in column order.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Map<String, Value>>,
}

impl Rows {
    pub fn render(&self, format: Format) -> String {
        let mut out = Vec::new();
        let mut writer = RowWriter::new(format, self.columns.clone(), &mut out).expect("in memory");
        for row in &self.rows {
            writer.row(row).expect("in memory");
        }
        writer.finish().expect("in memory");
        String::from_utf8(out).expect("UTF-8 fields")
    }
}

/// Writes rows as they come: CSV and JSON row by row, in constant memory; a table needs every
/// row for its widths, so it keeps them until `finish`.
pub struct RowWriter<W: Write> {
    columns: Vec<String>,
    sink: Sink<W>,
}

enum Sink<W: Write> {
    Table { out: W, rows: Vec<Vec<Cell>> },
    Csv(Box<csv::Writer<W>>),
    Json { out: W, rows: usize },
}

/// A value as text, and whether it is a number (right-aligned in a table).
type Cell = (String, bool);

impl<W: Write> RowWriter<W> {
    pub fn new(format: Format, columns: Vec<String>, mut out: W) -> io::Result<Self> {
        let sink = match format {
            Format::Table => Sink::Table {
                out,
                rows: Vec::new(),
            },
            Format::Csv => {
                let mut csv = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::CRLF)
                    .from_writer(out);
                csv.write_record(&columns)?;
                Sink::Csv(Box::new(csv))
            }
            Format::Json => {
                out.write_all(b"[")?;
                Sink::Json { out, rows: 0 }
            }
        };
        Ok(Self { columns, sink })
    }

    pub fn row(&mut self, row: &Map<String, Value>) -> io::Result<()> {
        match &mut self.sink {
            Sink::Table { rows, .. } => rows.push(cells(&self.columns, row)),
            Sink::Csv(csv) => {
                csv.write_record(cells(&self.columns, row).into_iter().map(|(text, _)| text))?
            }
            Sink::Json { out, rows } => {
                out.write_all(if *rows == 0 { b"\n  " } else { b",\n  " })?;
                serde_json::to_writer(&mut *out, row)?;
                *rows += 1;
            }
        }
        Ok(())
    }

    pub fn finish(self) -> io::Result<()> {
        match self.sink {
            Sink::Table { mut out, rows } => out.write_all(table(&self.columns, &rows).as_bytes()),
            Sink::Csv(mut csv) => csv.flush(),
            Sink::Json { mut out, rows } => {
                out.write_all(if rows == 0 { b"]\n" } else { b"\n]\n" })?;
                out.flush()
            }
        }
    }
}

/// A row's cells as text, in column order (null is empty).
fn cells(columns: &[String], row: &Map<String, Value>) -> Vec<Cell> {
    columns
        .iter()
        .map(|column| match row.get(column) {
            None | Some(Value::Null) => (String::new(), false),
            Some(Value::String(text)) => (text.clone(), false),
            Some(number @ Value::Number(_)) => (number.to_string(), true),
            Some(other) => (other.to_string(), false),
        })
        .collect()
}

/// Columns padded to their widest cell, numbers to the right, like psql.
fn table(columns: &[String], rows: &[Vec<Cell>]) -> String {
    let width = |i: usize| {
        rows.iter()
            .map(|row| row[i].0.chars().count())
            .chain([columns[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..columns.len()).map(width).collect();
    let line = |cells: &[Cell]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|((text, number), &w)| {
                if *number {
                    format!("{text:>w$}")
                } else {
                    format!("{text:<w$}")
                }
            })
            .collect();
        format!("{}\n", padded.join(" | ").trim_end())
    };
    let header: Vec<Cell> = columns.iter().map(|c| (c.clone(), false)).collect();
    let mut out = line(&header);
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    out.push_str(&rule.join("-+-"));
    out.push('\n');
    for row in rows {
        out.push_str(&line(row));
    }
    let count = rows.len();
    out.push_str(&format!(
        "({count} row{})\n",
        if count == 1 { "" } else { "s" }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rows(columns: &[&str], values: Value) -> Rows {
        let Value::Array(values) = values else {
            panic!("an array")
        };
        Rows {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: values
                .into_iter()
                .map(|row| match row {
                    Value::Object(map) => map,
                    _ => panic!("an object"),
                })
                .collect(),
        }
    }

    #[test]
    fn names_are_the_command_lines_and_the_urls() {
        for report in Report::ALL {
            assert_eq!(Report::parse(report.name()), Some(report));
            let parsed = <Report as clap::ValueEnum>::from_str(report.name(), false);
            assert_eq!(parsed, Ok(report));
        }
        assert_eq!(Report::parse("report_occupancy"), None);
    }

    #[test]
    fn csv_is_rfc_4180_quoting_only_what_needs_it() {
        let out = rows(
            &["movie_id", "title", "booked"],
            json!([
                {"movie_id": "a", "title": "Crouching Tiger, \"Hidden\" Dragon", "booked": 3},
                {"movie_id": "b", "title": "Two\nLines", "booked": null},
            ]),
        )
        .render(Format::Csv);
        assert_eq!(
            out,
            "movie_id,title,booked\r\n\
             a,\"Crouching Tiger, \"\"Hidden\"\" Dragon\",3\r\n\
             b,\"Two\nLines\",\r\n"
        );
    }

    #[test]
    fn a_table_aligns_text_left_and_numbers_right() {
        let out = rows(
            &["movie_id", "pct"],
            json!([{"movie_id": "dune", "pct": 4.2}, {"movie_id": "inception", "pct": 12.5}]),
        )
        .render(Format::Table);
        assert_eq!(
            out,
            "movie_id  | pct\n\
             ----------+-----\n\
             dune      |  4.2\n\
             inception | 12.5\n\
             (2 rows)\n"
        );
    }

    #[test]
    fn json_keeps_the_column_order() {
        let out = rows(&["z", "a"], json!([{"z": 1, "a": "x"}])).render(Format::Json);
        assert_eq!(out, "[\n  {\"z\":1,\"a\":\"x\"}\n]\n");
        let none = rows(&["z"], json!([])).render(Format::Json);
        assert_eq!(none, "[]\n");
    }
}
