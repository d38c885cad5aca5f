//! 運転免許証番号: parsing, commission codes, the check digit and its disputed remainder-0 case.

use mynalink_link::license::{
    expected_check_digit, LicenseNumber, LicenseNumberError, LicenseWarning,
};

fn ok(input: &str) -> LicenseNumber {
    let (number, warning) = LicenseNumber::parse(input).expect("valid license number");
    assert_eq!(warning, None, "{input}");
    number
}

fn err(input: &str) -> LicenseNumberError {
    LicenseNumber::parse(input).expect_err("invalid license number")
}

fn digits(s: &str) -> [u8; 10] {
    let mut out = [0u8; 10];
    for (o, b) in out.iter_mut().zip(s.bytes()) {
        *o = b - b'0';
    }
    out
}

#[test]
fn published_examples_are_valid() {
    let n = ok("729913281070");
    assert_eq!(n.as_str(), "729913281070");
    assert_eq!(n.to_string(), "729913281070");
    assert_eq!(n.commission_code(), "72");
    assert_eq!(n.commission_name_ja(), "岡山");
    assert_eq!(n.commission_name_en(), "Okayama");
    assert_eq!(n.first_issue_year_2digits(), 99);
    assert_eq!(n.reissue_count(), 0);
    assert_eq!(n.warning(), None);

    // Delphix's masking example: its check digit is right, but "28" is not one of the 51
    // commission codes, so the number as a whole is refused.
    assert_eq!(expected_check_digit(&digits("2829830106")), 9);
    assert_eq!(
        err("282983010691"),
        LicenseNumberError::UnknownCommissionCode { code: "28".into() }
    );
    // The same check digit under a real code (新潟 = 46) is accepted.
    let first = "4629830106";
    let check = expected_check_digit(&digits(first));
    let n = ok(&format!("{first}{check}1"));
    assert_eq!(n.commission_name_ja(), "新潟");
    assert_eq!(n.reissue_count(), 1);
}

#[test]
fn commission_names() {
    // Build a valid number for a given code.
    let with_code = |code: &str| {
        let first = format!("{code}05123456");
        let check = expected_check_digit(&digits(&first));
        ok(&format!("{first}{check}0"))
    };
    assert_eq!(with_code("30").commission_name_ja(), "東京");
    assert_eq!(with_code("30").commission_name_en(), "Tokyo");
    assert_eq!(with_code("10").commission_name_ja(), "札幌方面");
    assert_eq!(with_code("14").commission_name_ja(), "北見方面");
    assert_eq!(with_code("97").commission_name_ja(), "沖縄");
    assert_eq!(with_code("65").commission_name_ja(), "和歌山");

    let known = (0..100)
        .map(|n| format!("{n:02}"))
        .filter(|code| mynalink_link::license::is_commission_code(code))
        .count();
    assert_eq!(known, 51);
    for unknown in [
        "00", "01", "15", "26", "31", "39", "56", "66", "75", "84", "98", "99",
    ] {
        assert!(
            !mynalink_link::license::is_commission_code(unknown),
            "{unknown}"
        );
    }
}

#[test]
fn police_sample_has_an_unknown_commission_code() {
    assert_eq!(
        err("012345678900"),
        LicenseNumberError::UnknownCommissionCode { code: "01".into() }
    );
}

#[test]
fn every_error_variant() {
    assert_eq!(err(""), LicenseNumberError::Empty);
    assert_eq!(err("   \u{3000} "), LicenseNumberError::Empty);
    assert_eq!(
        err("72991328107"),
        LicenseNumberError::WrongLength { length: 11 }
    );
    assert_eq!(
        err("7299132810700"),
        LicenseNumberError::WrongLength { length: 13 }
    );
    assert_eq!(err("7"), LicenseNumberError::WrongLength { length: 1 });
    assert_eq!(
        err("7299a3281070"),
        LicenseNumberError::NotADigit { position: 5 }
    );
    assert_eq!(
        err("A29913281070"),
        LicenseNumberError::NotADigit { position: 1 }
    );
    assert_eq!(
        err("72991328107O"),
        LicenseNumberError::NotADigit { position: 12 }
    );
    assert_eq!(
        err("999999999999"),
        LicenseNumberError::UnknownCommissionCode { code: "99".into() }
    );
    assert_eq!(
        err("729913281080"),
        LicenseNumberError::CheckDigitMismatch {
            expected: 7,
            found: 8
        }
    );
}

#[test]
fn errors_say_which_digit_and_why() {
    let text = err("7299a3281070").to_string();
    assert!(text.contains("digit 5"), "{text}");
    let text = err("729913281080").to_string();
    assert!(
        text.contains("11") && text.contains('8') && text.contains('7'),
        "{text}"
    );
    let text = err("72991328107").to_string();
    assert!(text.contains("11 digits"), "{text}");
    let text = err("012345678900").to_string();
    assert!(text.contains("\"01\""), "{text}");
}

#[test]
fn full_width_whitespace_and_separators() {
    let expected = ok("729913281070");
    for input in [
        "７２９９１３２８１０７０",
        "  729913281070\n",
        "\u{3000}729913281070\u{3000}",
        "7299-1328-1070",
        "7299 1328 1070",
        "72 99 132810 7 0",
        "7299 - 132810 - 70",
        "７２９９－１３２８１０－７０",
        "７２９９ー１３２８１０ー７０",
        "7299\u{3000}1328\u{3000}1070",
        "7299１３２８1070",
    ] {
        assert_eq!(ok(input), expected, "{input:?}");
    }
    // Separators only between digits, at most one hyphen per gap, nothing else.
    assert_eq!(
        err("-729913281070"),
        LicenseNumberError::NotADigit { position: 1 }
    );
    assert_eq!(
        err("729913281070-"),
        LicenseNumberError::NotADigit { position: 13 }
    );
    assert_eq!(
        err("7299--13281070"),
        LicenseNumberError::NotADigit { position: 5 }
    );
    assert_eq!(
        err("7299 - - 13281070"),
        LicenseNumberError::NotADigit { position: 5 }
    );
    assert_eq!(
        err("7299\t13281070"),
        LicenseNumberError::NotADigit { position: 5 }
    );
    assert_eq!(
        err("7299_13281070"),
        LicenseNumberError::NotADigit { position: 5 }
    );
    assert_eq!(
        err("7299.13281070"),
        LicenseNumberError::NotADigit { position: 5 }
    );
    assert_eq!(
        err("第729913281070"),
        LicenseNumberError::NotADigit { position: 1 }
    );
    assert_eq!(
        err("72991328107０号"),
        LicenseNumberError::NotADigit { position: 13 }
    );
    // Other Unicode digits (Arabic-Indic, superscript) are not digits here.
    assert_eq!(
        err("٧29913281070"),
        LicenseNumberError::NotADigit { position: 1 }
    );
    assert_eq!(
        err("²29913281070"),
        LicenseNumberError::NotADigit { position: 1 }
    );
}

/// Finds digits 1–10 with a valid commission code whose weighted sum is ≡ 0 (mod 11).
fn remainder_zero_prefix() -> String {
    for serial in 0..1_000_000u32 {
        let first = format!("3015{serial:06}");
        let d = digits(&first);
        let s: u32 = d
            .iter()
            .zip([5, 4, 3, 2, 7, 6, 5, 4, 3, 2])
            .map(|(&d, w)| u32::from(d) * w)
            .sum();
        let remainder = s % 11;
        if remainder == 0 {
            return first;
        }
    }
    unreachable!("one in eleven prefixes qualifies");
}

#[test]
fn remainder_zero_case() {
    let first = remainder_zero_prefix();
    assert_eq!(expected_check_digit(&digits(&first)), 1);

    // The formula's digit: accepted without a warning.
    let (n, warning) = LicenseNumber::parse(&format!("{first}13")).expect("formula digit");
    assert_eq!(warning, None);
    assert_eq!(n.reissue_count(), 3);

    // The "remainder 0 → 0" variant: accepted with a warning.
    let (n, warning) = LicenseNumber::parse(&format!("{first}00")).expect("variant digit");
    assert_eq!(warning, Some(LicenseWarning::CheckDigitRemainderZero));
    assert_eq!(n.warning(), Some(LicenseWarning::CheckDigitRemainderZero));
    assert!(!LicenseWarning::CheckDigitRemainderZero
        .to_string()
        .is_empty());

    // Anything else is a mismatch that names the formula's digit.
    assert_eq!(
        err(&format!("{first}20")),
        LicenseNumberError::CheckDigitMismatch {
            expected: 1,
            found: 2
        }
    );

    // Delphix's masked example 156642855303 (S = 176) is the same case; its code "15" is not
    // a commission code, so only the digit rule is checked here.
    assert_eq!(expected_check_digit(&digits("1566428553")), 1);
}

#[test]
fn a_printed_zero_is_only_excused_for_remainder_zero() {
    // 729913281070 has remainder 4 (check 7); a 0 there is a plain mismatch.
    assert_eq!(
        err("729913281000"),
        LicenseNumberError::CheckDigitMismatch {
            expected: 7,
            found: 0
        }
    );
}

#[test]
fn serde_is_a_plain_string() {
    let n = ok("729913281070");
    let json = serde_json::to_string(&n).expect("serialises");
    assert_eq!(json, "\"729913281070\"");
    let back: LicenseNumber = serde_json::from_str(&json).expect("deserialises");
    assert_eq!(back, n);
    assert!(serde_json::from_str::<LicenseNumber>("\"729913281080\"").is_err());
    assert!(serde_json::from_str::<LicenseNumber>("729913281070").is_err());
    // Input normalisation also applies when deserialising.
    let spaced: LicenseNumber = serde_json::from_str("\"7299-1328-1070\"").expect("deserialises");
    assert_eq!(spaced, n);
}

/// Small deterministic generator so the property test needs no extra dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const CODES: [&str; 51] = [
    "10", "11", "12", "13", "14", "20", "21", "22", "23", "24", "25", "30", "40", "41", "42", "43",
    "44", "45", "46", "47", "48", "49", "50", "51", "52", "53", "54", "55", "60", "61", "62", "63",
    "64", "65", "70", "71", "72", "73", "74", "80", "81", "82", "83", "90", "91", "92", "93", "94",
    "95", "96", "97",
];

#[test]
fn property_generated_numbers() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut remainder_zero_seen = 0;
    for _ in 0..20_000 {
        let code = CODES[rng.below(51) as usize];
        let rest: String = (0..8)
            .map(|_| char::from(b'0' + rng.below(10) as u8))
            .collect();
        let first = format!("{code}{rest}");
        let d = digits(&first);
        let s: u32 = d
            .iter()
            .zip([5, 4, 3, 2, 7, 6, 5, 4, 3, 2])
            .map(|(&d, w)| u32::from(d) * w)
            .sum();
        let check = expected_check_digit(&d);
        assert_eq!(u32::from(check), (11 - s % 11) % 10);
        let reissue = rng.below(10);
        let number = format!("{first}{check}{reissue}");

        let (parsed, warning) = LicenseNumber::parse(&number).expect("generated number");
        assert_eq!(warning, None);
        assert_eq!(parsed.as_str(), number);
        assert_eq!(parsed.commission_code(), code);
        assert_eq!(u64::from(parsed.reissue_count()), reissue);

        // Full-width spelling parses to the same number.
        let wide: String = number
            .chars()
            .map(|c| char::from_u32(u32::from(c) - u32::from('0') + 0xFF10).unwrap_or(c))
            .collect();
        assert_eq!(LicenseNumber::parse(&wide).expect("full-width").0, parsed);

        // Every other check digit is refused, except 0 in the remainder-0 case.
        for wrong in (0..10u8).filter(|&w| w != check) {
            let altered = format!("{first}{wrong}{reissue}");
            match LicenseNumber::parse(&altered) {
                Ok((_, Some(LicenseWarning::CheckDigitRemainderZero))) => {
                    assert_eq!((s % 11, wrong), (0, 0), "{altered}");
                    remainder_zero_seen += 1;
                }
                Ok(other) => panic!("{altered} accepted: {other:?}"),
                Err(e) => assert_eq!(
                    e,
                    LicenseNumberError::CheckDigitMismatch {
                        expected: check,
                        found: wrong
                    }
                ),
            }
        }

        // Truncation and extension change the length error, never panic.
        assert!(matches!(
            LicenseNumber::parse(&number[..11]),
            Err(LicenseNumberError::WrongLength { length: 11 })
        ));
    }
    assert!(remainder_zero_seen > 0);
}

#[test]
fn arbitrary_strings_never_panic() {
    let mut rng = XorShift(42);
    let alphabet: Vec<char> = "0123456789０１２３４５６７８９ -ー－\u{3000}aZ\t\n!é漢"
        .chars()
        .collect();
    for _ in 0..20_000 {
        let len = rng.below(20) as usize;
        let s: String = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
            .collect();
        let _ = LicenseNumber::parse(&s);
    }
    // Very long input.
    assert_eq!(
        err(&"7".repeat(100_000)),
        LicenseNumberError::WrongLength { length: 100_000 }
    );
}
