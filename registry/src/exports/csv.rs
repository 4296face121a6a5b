//! One export line per journey, written by the `csv` crate (RFC 4180 quoting, CRLF) over any
//! `io::Write`: a response body's chunks or a zip entry. The bytes are those the synchronous
//! export has always answered.

use crate::store::lifecycle::ExportRow;
use chrono::{DateTime, SecondsFormat, Utc};
use std::fmt::Write as _;
use std::io;

/// The columns of an export, in order.
pub const COLUMNS: [&str; 14] = [
    "journey_id",
    "operator_id",
    "operator_journey_id",
    "operator_trip_id",
    "operator_class",
    "start_datetime",
    "start_lat",
    "start_lon",
    "end_datetime",
    "end_lat",
    "end_lon",
    "distance",
    "status",
    "incentive",
];

/// Writes export lines to `W`, the header first.
pub struct RowWriter<W: io::Write> {
    csv: csv::Writer<W>,
    /// Reused to format numbers and dates without an allocation per field.
    scratch: String,
}

fn writer<W: io::Write>(out: W) -> csv::Writer<W> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(out)
}

impl<W: io::Write> RowWriter<W> {
    /// A writer over `out` that has written the header line.
    pub fn new(out: W) -> Result<Self, csv::Error> {
        let mut csv = writer(out);
        csv.write_record(COLUMNS)?;
        Ok(Self {
            csv,
            scratch: String::with_capacity(32),
        })
    }

    /// Writes one journey's line.
    pub fn row(&mut self, r: &ExportRow) -> Result<(), csv::Error> {
        self.display(r.journey_id)?;
        self.display(r.operator_id)?;
        self.text(&r.operator_journey_id)?;
        self.text(&r.operator_trip_id)?;
        self.csv.write_field(&r.operator_class)?;
        self.time(r.start)?;
        self.display(r.start_lat)?;
        self.display(r.start_lon)?;
        self.time(r.end)?;
        self.display(r.end_lat)?;
        self.display(r.end_lon)?;
        self.display(r.distance)?;
        self.csv.write_field(r.status.as_str())?;
        self.display(r.incentive)?;
        self.csv.write_record(None::<&[u8]>)
    }

    /// Flushes and hands back the underlying writer.
    pub fn into_inner(self) -> Result<W, io::Error> {
        self.csv.into_inner().map_err(|e| e.into_error())
    }

    fn display(&mut self, value: impl std::fmt::Display) -> Result<(), csv::Error> {
        self.scratch.clear();
        // Writing into a String cannot fail.
        let _ = write!(self.scratch, "{value}");
        self.csv.write_field(&self.scratch)
    }

    fn time(&mut self, at: DateTime<Utc>) -> Result<(), csv::Error> {
        self.scratch.clear();
        let _ = write!(
            self.scratch,
            "{}",
            at.to_rfc3339_opts(SecondsFormat::Millis, true)
        );
        self.csv.write_field(&self.scratch)
    }

    /// An operator's free text; one a spreadsheet would read as a formula gets a leading
    /// `'` (the `csv` crate then quotes it as RFC 4180 needs).
    fn text(&mut self, s: &str) -> Result<(), csv::Error> {
        if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            self.scratch.clear();
            self.scratch.push('\'');
            self.scratch.push_str(s);
            self.csv.write_field(&self.scratch)
        } else {
            self.csv.write_field(s)
        }
    }
}

impl RowWriter<Vec<u8>> {
    /// Bytes of whole lines ready to be taken (the `csv` crate buffers up to 8 KiB more).
    pub fn ready(&self) -> usize {
        self.csv.get_ref().len()
    }

    /// Every line written so far; the writer goes on with an empty buffer of `capacity`.
    pub fn take(&mut self, capacity: usize) -> Result<Vec<u8>, io::Error> {
        let full = std::mem::replace(&mut self.csv, writer(Vec::with_capacity(capacity)));
        full.into_inner().map_err(|e| e.into_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::JourneyStatus;

    fn row(operator_journey_id: &str, operator_trip_id: &str) -> ExportRow {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        ExportRow {
            journey_id: 12,
            operator_id: 3,
            operator_journey_id: operator_journey_id.to_owned(),
            operator_trip_id: operator_trip_id.to_owned(),
            operator_class: "C".to_owned(),
            start: at("2026-05-20T06:00:00Z"),
            start_lat: 48.85,
            start_lon: 2.0,
            end: at("2026-05-20T06:30:00.250Z"),
            end_lat: -0.5,
            end_lon: 2.4,
            distance: 12_000,
            status: JourneyStatus::Ok,
            incentive: 120,
        }
    }

    fn written(rows: &[ExportRow]) -> String {
        let mut w = RowWriter::new(Vec::new()).unwrap();
        for r in rows {
            w.row(r).unwrap();
        }
        String::from_utf8(w.into_inner().unwrap()).unwrap()
    }

    #[test]
    fn lines_are_the_header_then_one_crlf_line_per_journey() {
        assert_eq!(
            written(&[row("j-1", "t-1")]),
            "journey_id,operator_id,operator_journey_id,operator_trip_id,operator_class,\
             start_datetime,start_lat,start_lon,end_datetime,end_lat,end_lon,distance,status,\
             incentive\r\n\
             12,3,j-1,t-1,C,2026-05-20T06:00:00.000Z,48.85,2,2026-05-20T06:30:00.250Z,-0.5,2.4,\
             12000,ok,120\r\n"
        );
    }

    #[test]
    fn taken_chunks_join_into_the_whole_text() {
        let rows = [row("a", "t"), row("b", "t"), row("c", "t")];
        let mut w = RowWriter::new(Vec::new()).unwrap();
        let mut chunks = Vec::new();
        for r in &rows {
            w.row(r).unwrap();
            chunks.extend(w.take(16).unwrap());
        }
        chunks.extend(w.into_inner().unwrap());
        assert_eq!(String::from_utf8(chunks).unwrap(), written(&rows));
    }

    #[test]
    fn operator_text_is_quoted_and_defused() {
        let cases = [
            ("plain-id", "plain-id"),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("line\nbreak", "\"line\nbreak\""),
            ("carriage\rreturn", "\"carriage\rreturn\""),
            ("=SUM(A1)", "'=SUM(A1)"),
            ("+33", "'+33"),
            ("@cmd", "'@cmd"),
            ("\tTab", "'\tTab"),
            ("-1,2", "\"'-1,2\""),
            ("", ""),
        ];
        for (text, field) in cases {
            let csv = written(&[row(text, "t")]);
            let line = csv.split_once("\r\n").unwrap().1;
            assert!(
                line.starts_with(&format!("12,3,{field},t,C,")),
                "{text:?} gave {line:?}"
            );
        }
    }
}
