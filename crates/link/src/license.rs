//! 運転免許証番号: the 12-digit driver's-license number.
//!
//! | digits | meaning |
//! |---|---|
//! | 1–2 | 公安委員会コード of the commission that first issued a license |
//! | 3–4 | last two digits of the Western year of first issue |
//! | 5–10 | 交付番号 (commission-internal serial) |
//! | 11 | check digit over digits 1–10 |
//! | 12 | 再交付記号: reissues after loss or theft (0–9, wrap-around disputed) |
//!
//! Check digit: S = Σ wᵢ·dᵢ with weights 5,4,3,2,7,6,5,4,3,2 and check = (11 − S mod 11) mod 10.
//! For S mod 11 = 0 the formula gives 1, but a "0" variant is also in use; since the police
//! record is authoritative, that case is accepted with a warning instead of being refused.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Number of digits in a license number.
pub const LENGTH: usize = 12;

const WEIGHTS: [u32; 10] = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];

/// A syntactically valid license number: 12 ASCII digits with a known commission code and a
/// check digit that matches (or is the accepted remainder-0 variant).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LicenseNumber(String);

/// Something about an accepted number the operator should compare with the license record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LicenseWarning {
    /// S mod 11 = 0: the formula gives check digit 1 but the number carries 0, which one
    /// variant of the rule produces. Which variant the police system uses is not known.
    CheckDigitRemainderZero,
}

impl fmt::Display for LicenseWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LicenseWarning::CheckDigitRemainderZero => f.write_str(
                "check digit 0 where the formula gives 1 (remainder 0, disputed case); \
                 compare with the license record",
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LicenseNumberError {
    #[error("no license number was entered")]
    Empty,
    #[error("the license number has {length} digits; it must have 12")]
    WrongLength { length: usize },
    #[error("digit {position} of the license number is not a digit (only 0–9, with spaces or one hyphen between groups)")]
    NotADigit { position: usize },
    #[error("digits 1–2 \"{code}\" are not a prefectural public-safety commission code")]
    UnknownCommissionCode { code: String },
    #[error("digit 11 (check digit) is {found} but digits 1–10 give {expected}")]
    CheckDigitMismatch { expected: u8, found: u8 },
}

/// One 公安委員会: code, Japanese short name, English name.
struct Commission {
    code: &'static str,
    ja: &'static str,
    en: &'static str,
}

const fn c(code: &'static str, ja: &'static str, en: &'static str) -> Commission {
    Commission { code, ja, en }
}

/// The 51 commission codes: 47 prefectures, Hokkaido split into five 方面.
const COMMISSIONS: [Commission; 51] = [
    c("10", "札幌方面", "Sapporo (Hokkaido)"),
    c("11", "函館方面", "Hakodate (Hokkaido)"),
    c("12", "旭川方面", "Asahikawa (Hokkaido)"),
    c("13", "釧路方面", "Kushiro (Hokkaido)"),
    c("14", "北見方面", "Kitami (Hokkaido)"),
    c("20", "青森", "Aomori"),
    c("21", "岩手", "Iwate"),
    c("22", "宮城", "Miyagi"),
    c("23", "秋田", "Akita"),
    c("24", "山形", "Yamagata"),
    c("25", "福島", "Fukushima"),
    c("30", "東京", "Tokyo"),
    c("40", "茨城", "Ibaraki"),
    c("41", "栃木", "Tochigi"),
    c("42", "群馬", "Gunma"),
    c("43", "埼玉", "Saitama"),
    c("44", "千葉", "Chiba"),
    c("45", "神奈川", "Kanagawa"),
    c("46", "新潟", "Niigata"),
    c("47", "山梨", "Yamanashi"),
    c("48", "長野", "Nagano"),
    c("49", "静岡", "Shizuoka"),
    c("50", "富山", "Toyama"),
    c("51", "石川", "Ishikawa"),
    c("52", "福井", "Fukui"),
    c("53", "岐阜", "Gifu"),
    c("54", "愛知", "Aichi"),
    c("55", "三重", "Mie"),
    c("60", "滋賀", "Shiga"),
    c("61", "京都", "Kyoto"),
    c("62", "大阪", "Osaka"),
    c("63", "兵庫", "Hyogo"),
    c("64", "奈良", "Nara"),
    c("65", "和歌山", "Wakayama"),
    c("70", "鳥取", "Tottori"),
    c("71", "島根", "Shimane"),
    c("72", "岡山", "Okayama"),
    c("73", "広島", "Hiroshima"),
    c("74", "山口", "Yamaguchi"),
    c("80", "徳島", "Tokushima"),
    c("81", "香川", "Kagawa"),
    c("82", "愛媛", "Ehime"),
    c("83", "高知", "Kochi"),
    c("90", "福岡", "Fukuoka"),
    c("91", "佐賀", "Saga"),
    c("92", "長崎", "Nagasaki"),
    c("93", "熊本", "Kumamoto"),
    c("94", "大分", "Oita"),
    c("95", "宮崎", "Miyazaki"),
    c("96", "鹿児島", "Kagoshima"),
    c("97", "沖縄", "Okinawa"),
];

fn commission(code: &str) -> Option<&'static Commission> {
    COMMISSIONS.iter().find(|c| c.code == code)
}

/// Whether `code` (two digits) is a known 公安委員会コード.
pub fn is_commission_code(code: &str) -> bool {
    commission(code).is_some()
}

/// The weighted sum S over digits 1–10.
fn weighted_sum(first_ten: &[u8; 10]) -> u32 {
    first_ten
        .iter()
        .zip(WEIGHTS)
        .map(|(&d, w)| u32::from(d) * w)
        .sum()
}

/// The check digit (11th digit) for digits 1–10: (11 − S mod 11) mod 10.
/// Remainder 0 gives 1 here; see [`LicenseWarning::CheckDigitRemainderZero`].
pub fn expected_check_digit(first_ten: &[u8; 10]) -> u8 {
    let remainder = weighted_sum(first_ten) % 11;
    // (11 - r) is in 1..=11, so the result is a single digit.
    ((11 - remainder) % 10) as u8
}

/// Compares the printed check digit with the formula; `Ok(Some(_))` for the remainder-0 variant.
fn check(digits: &[u8; LENGTH]) -> Result<Option<LicenseWarning>, LicenseNumberError> {
    let mut first_ten = [0u8; 10];
    first_ten.copy_from_slice(&digits[..10]);
    let expected = expected_check_digit(&first_ten);
    let found = digits[10];
    let remainder = weighted_sum(&first_ten) % 11;
    if found == expected {
        Ok(None)
    } else if found == 0 && remainder == 0 {
        Ok(Some(LicenseWarning::CheckDigitRemainderZero))
    } else {
        Err(LicenseNumberError::CheckDigitMismatch { expected, found })
    }
}

fn digit_value(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        // Full-width digits, as typed with a Japanese input method.
        '\u{FF10}'..='\u{FF19}' => Some((u32::from(c) - 0xFF10) as u8),
        _ => None,
    }
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\u{3000}')
}

/// Hyphen look-alikes a Japanese input method produces for the "-" key, besides ASCII.
fn is_hyphen(c: char) -> bool {
    matches!(
        c,
        '-' | '\u{FF0D}' // －
            | '\u{2010}' // ‐
            | '\u{2011}'
            | '\u{2012}'
            | '\u{2013}' // –
            | '\u{2212}' // −
            | '\u{30FC}' // ー (prolonged sound mark, what the IME gives in kana mode)
            | '\u{FF70}' // ｰ
    )
}

impl LicenseNumber {
    /// Parses what an operator typed. Accepted: surrounding whitespace, ASCII or full-width
    /// digits, and between two digits a separator made of spaces with at most one hyphen.
    /// The warning is `Some` when the number is accepted only as the disputed remainder-0 case.
    pub fn parse(
        input: &str,
    ) -> Result<(LicenseNumber, Option<LicenseWarning>), LicenseNumberError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(LicenseNumberError::Empty);
        }
        let mut digits: Vec<u8> = Vec::with_capacity(LENGTH);
        // State of the separator run since the last digit.
        let mut in_separator = false;
        let mut hyphens = 0usize;
        for c in trimmed.chars() {
            let position = digits.len() + 1;
            if let Some(d) = digit_value(c) {
                digits.push(d);
                in_separator = false;
                hyphens = 0;
            } else if (is_space(c) || is_hyphen(c)) && !digits.is_empty() {
                if is_hyphen(c) {
                    hyphens += 1;
                    if hyphens > 1 {
                        return Err(LicenseNumberError::NotADigit { position });
                    }
                }
                in_separator = true;
            } else {
                return Err(LicenseNumberError::NotADigit { position });
            }
        }
        if in_separator {
            // A separator must stand between two digits.
            return Err(LicenseNumberError::NotADigit {
                position: digits.len() + 1,
            });
        }
        let digits: [u8; LENGTH] = digits
            .try_into()
            .map_err(|d: Vec<u8>| LicenseNumberError::WrongLength { length: d.len() })?;
        let text: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
        let code = &text[..2];
        if commission(code).is_none() {
            return Err(LicenseNumberError::UnknownCommissionCode {
                code: code.to_string(),
            });
        }
        let warning = check(&digits)?;
        Ok((LicenseNumber(text), warning))
    }

    /// The 12 ASCII digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Digits 1–2, the code of the commission that first issued a license.
    pub fn commission_code(&self) -> &str {
        &self.0[..2]
    }

    fn commission(&self) -> &'static Commission {
        // Parsing guarantees a known code; the fallback keeps this total without a panic.
        commission(self.commission_code()).unwrap_or(&UNKNOWN_COMMISSION)
    }

    /// Short Japanese name of the commission, e.g. 東京, 札幌方面.
    pub fn commission_name_ja(&self) -> &'static str {
        self.commission().ja
    }

    pub fn commission_name_en(&self) -> &'static str {
        self.commission().en
    }

    /// Digits 3–4: last two digits of the Western year of first issue.
    pub fn first_issue_year_2digits(&self) -> u8 {
        self.digit(2) * 10 + self.digit(3)
    }

    /// Digit 12: reissues after loss or theft.
    pub fn reissue_count(&self) -> u8 {
        self.digit(11)
    }

    /// The warning [`parse`](Self::parse) gave for this number, recomputed.
    pub fn warning(&self) -> Option<LicenseWarning> {
        let mut digits = [0u8; LENGTH];
        for (i, d) in digits.iter_mut().enumerate() {
            *d = self.digit(i);
        }
        check(&digits).ok().flatten()
    }

    fn digit(&self, index: usize) -> u8 {
        self.0
            .as_bytes()
            .get(index)
            .map_or(0, |b| b.wrapping_sub(b'0'))
    }
}

const UNKNOWN_COMMISSION: Commission = c("", "不明", "unknown");

impl fmt::Display for LicenseNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for LicenseNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LicenseNumber({})", self.0)
    }
}

impl AsRef<str> for LicenseNumber {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for LicenseNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for LicenseNumber {
    /// Validates like [`LicenseNumber::parse`]; the remainder-0 case is accepted (its warning
    /// is available from [`LicenseNumber::warning`]).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        LicenseNumber::parse(&text)
            .map(|(number, _)| number)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits_of(s: &str) -> [u8; 10] {
        let mut out = [0u8; 10];
        for (o, b) in out.iter_mut().zip(s.bytes()) {
            *o = b - b'0';
        }
        out
    }

    #[test]
    fn worked_examples_from_the_domain_notes() {
        assert_eq!(expected_check_digit(&digits_of("7299132810")), 7);
        assert_eq!(expected_check_digit(&digits_of("2829830106")), 9);
        assert_eq!(expected_check_digit(&digits_of("0123456789")), 2);
    }

    #[test]
    fn table_has_51_distinct_two_digit_codes() {
        let mut codes: Vec<&str> = COMMISSIONS.iter().map(|c| c.code).collect();
        assert!(codes
            .iter()
            .all(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_digit())));
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), 51);
    }

    #[test]
    fn remainder_zero_maps_to_one() {
        // 156642855303 (S = 176, remainder 0) is the variant's example: formula gives 1.
        let first = digits_of("1566428553");
        assert_eq!(weighted_sum(&first) % 11, 0);
        assert_eq!(expected_check_digit(&first), 1);
    }
}
