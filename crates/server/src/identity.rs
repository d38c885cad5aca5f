//! Does the signing certificate's holder match the license record?
//!
//! The certificate's name comes from the resident register, the record's from the police
//! system; they differ in spacing and in full-width versus ASCII forms, so both are folded
//! before an exact comparison. Where the certificate marks substitute characters (a
//! character the register could not encode), the names cannot be compared by machine and
//! staff must confirm the holder at the counter.

use mynalink_link::certificate::Basic4;
use zeroize::Zeroizing;

/// The result of comparing a certificate's basic-4 with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityMatch {
    /// Name and birth date agree.
    Matches,
    /// Birth date agrees; the name uses substitute characters, so a person must decide.
    NeedsConfirmation,
    /// Name or birth date differs (or the certificate lacks the birth date).
    Mismatch(MismatchField),
}

/// What did not match, for the operator's detail (never the values themselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MismatchField {
    Name,
    BirthDate,
}

impl MismatchField {
    pub fn as_str(self) -> &'static str {
        match self {
            MismatchField::Name => "name",
            MismatchField::BirthDate => "birth_date",
        }
    }
}

/// Folds what differs only in form: full-width ASCII (U+FF01–U+FF5E) to ASCII, and drops
/// spaces of any width, since the register separates family and given name with U+3000
/// and the police record may not.
pub fn normalize_name(name: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(name.len()));
    for c in name.chars() {
        if c.is_whitespace() || c == '\u{3000}' {
            continue;
        }
        let folded = match u32::from(c) {
            code @ 0xFF01..=0xFF5E => char::from_u32(code - 0xFEE0).unwrap_or(c),
            _ => c,
        };
        out.push(folded);
    }
    out
}

/// A record's birth date, `YYYY-MM-DD` or `YYYYMMDD`, as a calendar date.
pub fn parse_record_date(text: &str) -> Option<time::Date> {
    let digits: String = match text.len() {
        10 => {
            let b = text.as_bytes();
            if b[4] != b'-' || b[7] != b'-' {
                return None;
            }
            text.chars().filter(|&c| c != '-').collect()
        }
        8 => text.to_string(),
        _ => return None,
    };
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i32 = digits[..4].parse().ok()?;
    let month: u8 = digits[4..6].parse().ok()?;
    let day: u8 = digits[6..8].parse().ok()?;
    if year == 0 {
        return None;
    }
    time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()
}

/// Compares the certificate's basic-4 with the record's name and birth date.
pub fn compare(basic4: &Basic4, record_name: &str, record_birth_date: &str) -> IdentityMatch {
    let cert_date = basic4.birth_date.as_ref().and_then(|d| d.to_date());
    let record_date = parse_record_date(record_birth_date);
    match (cert_date, record_date) {
        (Some(a), Some(b)) if a == b => {}
        _ => return IdentityMatch::Mismatch(MismatchField::BirthDate),
    }
    let substitutes = basic4
        .name_substitute_flags
        .as_deref()
        .is_some_and(|flags| flags.contains('1'));
    if substitutes {
        return IdentityMatch::NeedsConfirmation;
    }
    let cert_name = normalize_name(&basic4.name);
    let record_name = normalize_name(record_name);
    if !cert_name.is_empty() && cert_name == record_name {
        IdentityMatch::Matches
    } else {
        IdentityMatch::Mismatch(MismatchField::Name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mynalink_link::certificate::SigningCertificate;

    #[test]
    fn normalisation_folds_width_and_spaces() {
        assert_eq!(normalize_name("試験　花子").as_str(), "試験花子");
        assert_eq!(normalize_name(" 試験 花子 ").as_str(), "試験花子");
        assert_eq!(normalize_name("ＳＭＩＴＨ　Ｊｏｈｎ").as_str(), "SMITHJohn");
        assert_eq!(normalize_name("山田\t太郎").as_str(), "山田太郎");
        // Kana and kanji stay as they are.
        assert_eq!(normalize_name("髙橋").as_str(), "髙橋");
        assert_ne!(
            normalize_name("髙橋").as_str(),
            normalize_name("高橋").as_str()
        );
    }

    #[test]
    fn record_dates() {
        let d = time::Date::from_calendar_date(1990, time::Month::January, 2).expect("date");
        assert_eq!(parse_record_date("1990-01-02"), Some(d));
        assert_eq!(parse_record_date("19900102"), Some(d));
        for bad in [
            "1990-1-2",
            "1990/01/02",
            "19900230",
            "00000102",
            "1990-01-0x",
            "",
            "１９９００１０２",
            "1990-01-022",
        ] {
            assert_eq!(parse_record_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn compares_the_simulated_holder() {
        let id = mynalink_simcard::test_identity(mynalink_simcard::Validity::Current);
        let cert = SigningCertificate::parse(&id.sign_cert_der).expect("cert");
        let b4 = cert.basic4().expect("basic4");
        assert_eq!(
            compare(&b4, "試験 花子", "1990-01-02"),
            IdentityMatch::Matches
        );
        assert_eq!(compare(&b4, "試験花子", "19900102"), IdentityMatch::Matches);
        assert_eq!(
            compare(&b4, "試験 花代", "1990-01-02"),
            IdentityMatch::Mismatch(MismatchField::Name)
        );
        assert_eq!(
            compare(&b4, "試験 花子", "1990-01-03"),
            IdentityMatch::Mismatch(MismatchField::BirthDate)
        );
        assert_eq!(
            compare(&b4, "試験 花子", "garbage"),
            IdentityMatch::Mismatch(MismatchField::BirthDate)
        );
        let mut substitute = b4.clone();
        substitute.name_substitute_flags = Some("0100".into());
        assert_eq!(
            compare(&substitute, "試験 花子", "1990-01-02"),
            IdentityMatch::NeedsConfirmation
        );
        // The birth date still decides first.
        assert_eq!(
            compare(&substitute, "試験 花子", "1991-01-02"),
            IdentityMatch::Mismatch(MismatchField::BirthDate)
        );
        let mut no_date = b4.clone();
        no_date.birth_date = None;
        assert_eq!(
            compare(&no_date, "試験 花子", "1990-01-02"),
            IdentityMatch::Mismatch(MismatchField::BirthDate)
        );
    }
}
