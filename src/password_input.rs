//! Getting the signing password from the person, and only from them: one line of standard
//! input (`--pin-stdin`) or the terminal with echo off. Never argv, never the environment.

use std::io::{BufRead, Read};

use zeroize::Zeroizing;

/// Longest line accepted; anything longer is not a password and is not kept.
const MAX_LINE: usize = 256;

/// Reads one line from standard input, without the line ending.
pub fn read_stdin_line() -> Result<Zeroizing<String>, String> {
    let stdin = std::io::stdin();
    let mut reader = stdin.lock().take(MAX_LINE as u64 + 2);
    read_line(&mut reader)
}

pub fn read_line(reader: &mut impl BufRead) -> Result<Zeroizing<String>, String> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(32));
    reader
        .read_until(b'\n', &mut bytes)
        .map_err(|e| format!("standard input: {e}"))?;
    if bytes.is_empty() {
        return Err("standard input is empty".into());
    }
    while matches!(bytes.last(), Some(b'\n' | b'\r')) {
        bytes.pop();
    }
    if bytes.len() > MAX_LINE {
        return Err("the input line is too long".into());
    }
    let text = String::from_utf8(bytes.to_vec()).map_err(|_| "the input is not UTF-8".to_string());
    // The copy made for the conversion is zeroized by the wrapper on every path.
    text.map(Zeroizing::new)
}

/// Asks on the terminal with echo off.
pub fn prompt(prompt: &str) -> Result<Zeroizing<String>, String> {
    rpassword::prompt_password(prompt)
        .map(Zeroizing::new)
        .map_err(|e| format!("terminal: {e}"))
}

/// Asks a yes/no question on the terminal.
pub fn confirm(question: &str) -> bool {
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    match std::fs::File::open("/dev/tty") {
        Ok(tty) => {
            let _ = std::io::BufReader::new(tty).read_line(&mut answer);
        }
        Err(_) => {
            let _ = std::io::stdin().read_line(&mut answer);
        }
    }
    matches!(answer.trim(), "y" | "Y" | "yes" | "はい")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_without_ending() {
        let mut input: &[u8] = b"test1234\r\nnext line\n";
        assert_eq!(read_line(&mut input).expect("line").as_str(), "test1234");
        let mut input: &[u8] = b"NOEOL";
        assert_eq!(read_line(&mut input).expect("line").as_str(), "NOEOL");
        let mut input: &[u8] = b"";
        assert!(read_line(&mut input).is_err());
        let mut input: &[u8] = b"\xff\xfe\n";
        assert!(read_line(&mut input).is_err());
    }
}
