//! `import-licenses`: license records from a CSV file with the header
//! `license_number,holding,name,birth_date,status` (columns in any order).
//!
//! The file is checked whole before anything is written, and written in one transaction:
//! a file with any error changes nothing, and every error is reported with its line.
//! Messages never repeat a name or a birth date.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use mynalink_link::license::LicenseNumber;

use crate::identity::parse_record_date;
use crate::store::{parse_holding, parse_state, LicenseRecord, Store, StoreError, UpsertCounts};

pub const COLUMNS: [&str; 5] = ["license_number", "holding", "name", "birth_date", "status"];

/// Longest name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// Errors reported before the rest are summarised.
const MAX_REPORTED_ERRORS: usize = 100;

/// One problem in the file, at a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

#[derive(Debug)]
pub enum ImportError {
    Io(std::io::Error),
    /// The file is wrong; nothing was imported.
    Invalid(Vec<LineError>),
    Store(StoreError),
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Io(e) => write!(f, "cannot read the file: {e}"),
            ImportError::Invalid(errors) => {
                write!(f, "{} error(s); nothing was imported", errors.len())
            }
            ImportError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ImportError {}

impl From<StoreError> for ImportError {
    fn from(e: StoreError) -> Self {
        ImportError::Store(e)
    }
}

fn err(line: usize, message: impl Into<String>) -> LineError {
    LineError {
        line,
        message: message.into(),
    }
}

/// One CSV record and the line it starts on.
#[derive(Debug, PartialEq, Eq)]
struct CsvRecord {
    line: usize,
    fields: Vec<String>,
}

/// RFC 4180 records: comma-separated, fields optionally in double quotes (`""` for a
/// quote; commas and line breaks allowed inside), LF or CRLF line ends, a UTF-8 BOM
/// ignored. Blank lines are skipped.
fn parse_csv(text: &str) -> Result<Vec<CsvRecord>, LineError> {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut records = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut line = 1usize;
    let mut record_line = 1usize;
    // Whether the current field began with a quote, and whether that quote is still open.
    let mut quoted = false;
    let mut in_quotes = false;
    let mut after_closing_quote = false;
    let mut chars = text.chars().peekable();

    let mut end_record = |fields: &mut Vec<String>, field: &mut String, record_line: usize| {
        fields.push(std::mem::take(field));
        let blank = fields.len() == 1 && fields[0].is_empty();
        let done = std::mem::take(fields);
        if !blank {
            records.push(CsvRecord {
                line: record_line,
                fields: done,
            });
        }
    };

    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => {
                    in_quotes = false;
                    after_closing_quote = true;
                }
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            ',' => {
                fields.push(std::mem::take(&mut field));
                quoted = false;
                after_closing_quote = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                end_record(&mut fields, &mut field, record_line);
                quoted = false;
                after_closing_quote = false;
                line += 1;
                record_line = line;
            }
            '"' if field.is_empty() && !quoted => {
                quoted = true;
                in_quotes = true;
            }
            '"' => {
                return Err(err(
                    line,
                    "a double quote inside an unquoted field (quote the whole field and \
                     double the quote)",
                ))
            }
            _ if after_closing_quote => {
                return Err(err(line, "characters after the closing quote of a field"));
            }
            _ => field.push(c),
        }
    }
    if in_quotes {
        return Err(err(record_line, "a quoted field is not closed"));
    }
    if !field.is_empty() || !fields.is_empty() || quoted {
        end_record(&mut fields, &mut field, record_line);
    }
    Ok(records)
}

/// Checks a whole CSV text and returns its records, or every error found.
pub fn parse_records(text: &str) -> Result<Vec<LicenseRecord>, Vec<LineError>> {
    let rows = parse_csv(text).map_err(|e| vec![e])?;
    let Some((header, rows)) = rows.split_first() else {
        return Err(vec![err(1, "the file is empty; a header line is required")]);
    };
    let positions = column_positions(header).map_err(|e| vec![e])?;

    let mut errors = Vec::new();
    let mut records = Vec::with_capacity(rows.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for row in rows {
        match parse_row(row, &positions) {
            Ok(record) => {
                if let Some(first) = seen.insert(record.license_number.clone(), row.line) {
                    errors.push(err(
                        row.line,
                        format!(
                            "license number {} is also on line {first}",
                            record.license_number
                        ),
                    ));
                } else {
                    records.push(record);
                }
            }
            Err(mut row_errors) => errors.append(&mut row_errors),
        }
    }
    if errors.is_empty() {
        Ok(records)
    } else {
        Err(errors)
    }
}

/// Index of each of [`COLUMNS`] in the header.
fn column_positions(header: &CsvRecord) -> Result<[usize; 5], LineError> {
    let names: Vec<&str> = header.fields.iter().map(|f| f.trim()).collect();
    let mut positions = [0usize; 5];
    for (slot, column) in positions.iter_mut().zip(COLUMNS) {
        let found: Vec<usize> = names
            .iter()
            .enumerate()
            .filter(|(_, n)| **n == column)
            .map(|(i, _)| i)
            .collect();
        match found.as_slice() {
            [i] => *slot = *i,
            [] => {
                return Err(err(
                    header.line,
                    format!(
                        "the header has no column {column} (expected {})",
                        COLUMNS.join(",")
                    ),
                ))
            }
            _ => return Err(err(header.line, format!("column {column} appears twice"))),
        }
    }
    if let Some(unknown) = names.iter().find(|n| !COLUMNS.contains(n)) {
        return Err(err(
            header.line,
            format!(
                "unknown column {unknown:?} (expected {})",
                COLUMNS.join(",")
            ),
        ));
    }
    Ok(positions)
}

fn parse_row(row: &CsvRecord, positions: &[usize; 5]) -> Result<LicenseRecord, Vec<LineError>> {
    let line = row.line;
    if row.fields.len() != COLUMNS.len() {
        return Err(vec![err(
            line,
            format!(
                "{} fields; the header has {}",
                row.fields.len(),
                COLUMNS.len()
            ),
        )]);
    }
    let field = |i: usize| row.fields.get(positions[i]).map_or("", |f| f.trim());
    let mut errors = Vec::new();

    let number = match LicenseNumber::parse(field(0)) {
        Ok((n, _)) => Some(n.as_str().to_string()),
        Err(e) => {
            errors.push(err(line, format!("license_number: {e}")));
            None
        }
    };
    let holding = parse_holding(field(1));
    if holding.is_none() {
        errors.push(err(
            line,
            format!(
                "holding {:?} is not one of myna_only, myna_and_card, card_only, \
                 history_myna_only, history_myna_and_card, history_card_only",
                field(1)
            ),
        ));
    }
    let name = field(2);
    if name.is_empty() {
        errors.push(err(line, "name is empty"));
    } else if name.chars().count() > MAX_NAME_CHARS {
        errors.push(err(
            line,
            format!("name is longer than {MAX_NAME_CHARS} characters"),
        ));
    } else if name.chars().any(char::is_control) {
        errors.push(err(line, "name contains control characters"));
    }
    let birth_date = parse_record_date(field(3));
    if birth_date.is_none() {
        errors.push(err(
            line,
            "birth_date is not a valid date in the form YYYY-MM-DD or YYYYMMDD",
        ));
    }
    let state = parse_state(field(4));
    if state.is_none() {
        errors.push(err(
            line,
            format!(
                "status {:?} is not one of valid, suspended, provisionally_suspended, lapsed, \
                 revoked",
                field(4)
            ),
        ));
    }
    match (number, holding, birth_date, state) {
        (Some(license_number), Some(holding), Some(date), Some(state)) if errors.is_empty() => {
            Ok(LicenseRecord {
                license_number,
                holding,
                name: name.to_string(),
                birth_date: format!(
                    "{:04}-{:02}-{:02}",
                    date.year(),
                    u8::from(date.month()),
                    date.day()
                ),
                state,
            })
        }
        _ => Err(errors),
    }
}

/// Reads, checks and upserts a CSV file.
pub fn import_file(store: &mut Store, path: &Path, now: &str) -> Result<UpsertCounts, ImportError> {
    let bytes = std::fs::read(path).map_err(ImportError::Io)?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
            return Err(ImportError::Invalid(vec![err(
                line,
                "the file is not UTF-8",
            )]));
        }
    };
    import_text(store, &text, now)
}

/// Checks and upserts CSV text.
pub fn import_text(store: &mut Store, text: &str, now: &str) -> Result<UpsertCounts, ImportError> {
    let records = parse_records(text).map_err(|mut errors| {
        if errors.len() > MAX_REPORTED_ERRORS {
            let more = errors.len() - MAX_REPORTED_ERRORS;
            errors.truncate(MAX_REPORTED_ERRORS);
            let line = errors.last().map_or(1, |e| e.line);
            errors.push(err(line, format!("… and {more} more error(s)")));
        }
        ImportError::Invalid(errors)
    })?;
    Ok(store.upsert_licenses(&records, now)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(records: &[CsvRecord]) -> Vec<(usize, Vec<&str>)> {
        records
            .iter()
            .map(|r| (r.line, r.fields.iter().map(String::as_str).collect()))
            .collect()
    }

    #[test]
    fn csv_quoting_and_lines() {
        let text = "\u{FEFF}a,b\r\n\"x,1\",\"say \"\"hi\"\"\"\n\n\"multi\nline\",z\nlast,\"\"";
        let records = parse_csv(text).expect("csv");
        assert_eq!(
            fields(&records),
            vec![
                (1, vec!["a", "b"]),
                (2, vec!["x,1", "say \"hi\""]),
                (4, vec!["multi\nline", "z"]),
                (6, vec!["last", ""]),
            ]
        );
    }

    #[test]
    fn csv_errors_name_the_line() {
        assert_eq!(parse_csv("a,b\nx,\"open\n").map_err(|e| e.line), Err(2));
        assert_eq!(parse_csv("a,b\nx,y\"z\n").map_err(|e| e.line), Err(2));
        assert_eq!(parse_csv("a,b\n\"x\"y,z\n").map_err(|e| e.line), Err(2));
        assert_eq!(parse_csv("").expect("empty").len(), 0);
    }
}
