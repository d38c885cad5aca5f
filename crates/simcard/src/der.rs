//! A small DER writer: just enough ASN.1 to build X.509 certificates.
//!
//! Every function returns the complete encoding (tag, length, contents) of one value, so
//! values compose by concatenation. Functions whose input can be out of range for the type
//! (OID arcs, restricted character sets, unused bits) return [`DerError`] instead of
//! producing an invalid encoding.

use thiserror::Error;
use time::{OffsetDateTime, UtcOffset};

/// Universal tag numbers used here.
pub mod tag {
    pub const BOOLEAN: u8 = 0x01;
    pub const INTEGER: u8 = 0x02;
    pub const BIT_STRING: u8 = 0x03;
    pub const OCTET_STRING: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const OID: u8 = 0x06;
    pub const UTF8_STRING: u8 = 0x0C;
    pub const PRINTABLE_STRING: u8 = 0x13;
    pub const IA5_STRING: u8 = 0x16;
    pub const UTC_TIME: u8 = 0x17;
    pub const GENERALIZED_TIME: u8 = 0x18;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
}

/// A value that has no DER encoding for the requested type.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DerError {
    #[error("invalid object identifier arcs {0:?}")]
    InvalidOid(Vec<u64>),
    #[error("character {0:?} is not allowed in a PrintableString")]
    NotPrintable(char),
    #[error("character {0:?} is not allowed in an IA5String")]
    NotIa5(char),
    #[error("a BIT STRING cannot have {0} unused bits")]
    InvalidUnusedBits(u8),
    #[error("context tag number {0} needs the multi-byte tag form, which is not supported")]
    TagNumberTooLarge(u8),
    #[error("year {0} cannot be encoded as an X.509 time")]
    YearOutOfRange(i32),
    /// Not an encoding fault: the issuer's key cannot sign with the chosen algorithm.
    #[error("the issuer's key cannot make a signature of the chosen algorithm")]
    Unsigned,
}

/// Encodes a definite length (short form below 128, long form otherwise).
fn push_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        let significant = &bytes[skip..];
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
}

/// One TLV with an arbitrary single-byte tag.
pub fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len() + 6);
    out.push(tag);
    push_length(&mut out, contents.len());
    out.extend_from_slice(contents);
    out
}

/// A constructed value whose contents are the concatenation of `parts`.
fn constructed(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    tlv(tag, &parts.concat())
}

/// SEQUENCE of already-encoded elements, in the given order.
pub fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    constructed(tag::SEQUENCE, parts)
}

/// SET OF already-encoded elements. DER orders SET OF elements by their encodings.
pub fn set_of(parts: &[&[u8]]) -> Vec<u8> {
    let mut sorted: Vec<&[u8]> = parts.to_vec();
    sorted.sort();
    constructed(tag::SET, &sorted)
}

/// INTEGER holding the unsigned big-endian number `magnitude`: redundant leading zeros are
/// dropped and a `00` is prepended when the high bit would otherwise make it negative.
pub fn integer_unsigned(magnitude: &[u8]) -> Vec<u8> {
    let skip = magnitude.iter().take_while(|&&b| b == 0).count();
    let trimmed = &magnitude[skip..];
    let mut contents = Vec::with_capacity(trimmed.len() + 1);
    match trimmed.first() {
        None => contents.push(0),
        Some(&first) if first & 0x80 != 0 => {
            contents.push(0);
            contents.extend_from_slice(trimmed);
        }
        Some(_) => contents.extend_from_slice(trimmed),
    }
    tlv(tag::INTEGER, &contents)
}

/// INTEGER from a small unsigned value.
pub fn integer_u64(value: u64) -> Vec<u8> {
    integer_unsigned(&value.to_be_bytes())
}

fn push_base128(out: &mut Vec<u8>, mut value: u64) {
    let mut groups = [0u8; 10];
    let mut n = 0;
    loop {
        groups[n] = (value & 0x7F) as u8;
        n += 1;
        value >>= 7;
        if value == 0 {
            break;
        }
    }
    for i in (0..n).rev() {
        let more = if i > 0 { 0x80 } else { 0 };
        out.push(groups[i] | more);
    }
}

/// OBJECT IDENTIFIER from its arcs, e.g. `&[1, 2, 840, 113549, 1, 1, 11]`.
pub fn oid(arcs: &[u64]) -> Result<Vec<u8>, DerError> {
    let invalid = || DerError::InvalidOid(arcs.to_vec());
    let (first, second, rest) = match arcs {
        [first, second, rest @ ..] => (*first, *second, rest),
        _ => return Err(invalid()),
    };
    if first > 2 || (first < 2 && second >= 40) {
        return Err(invalid());
    }
    let head = (first * 40).checked_add(second).ok_or_else(invalid)?;
    let mut contents = Vec::with_capacity(arcs.len() * 2);
    push_base128(&mut contents, head);
    for &arc in rest {
        push_base128(&mut contents, arc);
    }
    Ok(tlv(tag::OID, &contents))
}

/// UTF8String.
pub fn utf8_string(s: &str) -> Vec<u8> {
    tlv(tag::UTF8_STRING, s.as_bytes())
}

/// Whether `c` belongs to the PrintableString character set (X.680 §41.4).
pub fn is_printable_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c)
}

/// PrintableString; fails on characters outside its set.
pub fn printable_string(s: &str) -> Result<Vec<u8>, DerError> {
    if let Some(bad) = s.chars().find(|&c| !is_printable_char(c)) {
        return Err(DerError::NotPrintable(bad));
    }
    Ok(tlv(tag::PRINTABLE_STRING, s.as_bytes()))
}

/// IA5String (ASCII); fails on non-ASCII characters.
pub fn ia5_string(s: &str) -> Result<Vec<u8>, DerError> {
    if let Some(bad) = s.chars().find(|c| !c.is_ascii()) {
        return Err(DerError::NotIa5(bad));
    }
    Ok(tlv(tag::IA5_STRING, s.as_bytes()))
}

/// OCTET STRING.
pub fn octet_string(bytes: &[u8]) -> Vec<u8> {
    tlv(tag::OCTET_STRING, bytes)
}

/// BIT STRING whose last `unused_bits` bits (0..=7) are padding. DER requires the padding
/// bits to be zero; they are cleared here.
pub fn bit_string(bytes: &[u8], unused_bits: u8) -> Result<Vec<u8>, DerError> {
    if unused_bits > 7 || (bytes.is_empty() && unused_bits != 0) {
        return Err(DerError::InvalidUnusedBits(unused_bits));
    }
    let mut contents = Vec::with_capacity(bytes.len() + 1);
    contents.push(unused_bits);
    contents.extend_from_slice(bytes);
    if let Some(last) = contents.last_mut() {
        if !bytes.is_empty() {
            *last &= 0xFFu8 << unused_bits;
        }
    }
    Ok(tlv(tag::BIT_STRING, &contents))
}

/// A named-bit BIT STRING (e.g. KeyUsage) from bit numbers, bit 0 being the most
/// significant bit of the first byte. DER drops trailing zero bits.
pub fn named_bits(bits: &[u8]) -> Vec<u8> {
    let Some(&highest) = bits.iter().max() else {
        return tlv(tag::BIT_STRING, &[0]);
    };
    let len = usize::from(highest) / 8 + 1;
    let mut bytes = vec![0u8; len];
    for &bit in bits {
        bytes[usize::from(bit) / 8] |= 0x80 >> (bit % 8);
    }
    let unused = 7 - highest % 8;
    let mut contents = Vec::with_capacity(len + 1);
    contents.push(unused);
    contents.extend_from_slice(&bytes);
    tlv(tag::BIT_STRING, &contents)
}

/// BOOLEAN (DER: TRUE is `FF`).
pub fn boolean(value: bool) -> Vec<u8> {
    tlv(tag::BOOLEAN, &[if value { 0xFF } else { 0x00 }])
}

/// NULL.
pub fn null() -> Vec<u8> {
    vec![tag::NULL, 0x00]
}

fn utc(t: OffsetDateTime) -> OffsetDateTime {
    t.to_offset(UtcOffset::UTC)
}

fn time_digits(t: OffsetDateTime, year_digits: usize) -> String {
    let year = t.year();
    let year_text = if year_digits == 2 {
        format!("{:02}", year.rem_euclid(100))
    } else {
        format!("{year:04}")
    };
    format!(
        "{year_text}{:02}{:02}{:02}{:02}{:02}Z",
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// UTCTime `YYMMDDHHMMSSZ` (seconds precision; fractions are dropped). Only 1950–2049.
pub fn utc_time(t: OffsetDateTime) -> Result<Vec<u8>, DerError> {
    let t = utc(t);
    if !(1950..=2049).contains(&t.year()) {
        return Err(DerError::YearOutOfRange(t.year()));
    }
    Ok(tlv(tag::UTC_TIME, time_digits(t, 2).as_bytes()))
}

/// GeneralizedTime `YYYYMMDDHHMMSSZ` (seconds precision). Years 0000–9999.
pub fn generalized_time(t: OffsetDateTime) -> Result<Vec<u8>, DerError> {
    let t = utc(t);
    if !(0..=9999).contains(&t.year()) {
        return Err(DerError::YearOutOfRange(t.year()));
    }
    Ok(tlv(tag::GENERALIZED_TIME, time_digits(t, 4).as_bytes()))
}

/// An X.509 `Time`: UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 §4.1.2.5).
pub fn x509_time(t: OffsetDateTime) -> Result<Vec<u8>, DerError> {
    let t = utc(t);
    if t.year() < 2050 {
        utc_time(t)
    } else {
        generalized_time(t)
    }
}

fn context_tag(number: u8, constructed: bool) -> Result<u8, DerError> {
    if number > 30 {
        return Err(DerError::TagNumberTooLarge(number));
    }
    Ok(0x80 | if constructed { 0x20 } else { 0 } | number)
}

/// `[number] EXPLICIT inner`: a constructed context tag wrapping a whole encoding.
pub fn explicit(number: u8, inner: &[u8]) -> Result<Vec<u8>, DerError> {
    Ok(tlv(context_tag(number, true)?, inner))
}

/// `[number] IMPLICIT` for a primitive type: the contents of the replaced value.
pub fn implicit_primitive(number: u8, contents: &[u8]) -> Result<Vec<u8>, DerError> {
    Ok(tlv(context_tag(number, false)?, contents))
}

/// `[number] IMPLICIT` for a constructed type (SEQUENCE, SET, CHOICE of them): the
/// concatenated element encodings of the replaced value.
pub fn implicit_constructed(number: u8, parts: &[&[u8]]) -> Result<Vec<u8>, DerError> {
    Ok(constructed(context_tag(number, true)?, parts))
}

/// The contents of a TLV (everything after tag and length), for re-tagging an encoding
/// produced by another function. Returns `None` for a malformed encoding.
pub fn contents_of(encoding: &[u8]) -> Option<&[u8]> {
    let first = *encoding.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > std::mem::size_of::<usize>() {
            return None;
        }
        let bytes = encoding.get(2..2 + n)?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, 2 + n)
    };
    encoding.get(header..header.checked_add(len)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn lengths() {
        assert_eq!(tlv(0x04, &[]), vec![0x04, 0x00]);
        assert_eq!(tlv(0x04, &[0; 127])[..2], [0x04, 0x7F]);
        assert_eq!(tlv(0x04, &[0; 128])[..3], [0x04, 0x81, 0x80]);
        assert_eq!(tlv(0x04, &[0; 255])[..3], [0x04, 0x81, 0xFF]);
        assert_eq!(tlv(0x04, &[0; 256])[..4], [0x04, 0x82, 0x01, 0x00]);
        assert_eq!(tlv(0x04, &[0; 70000])[..5], [0x04, 0x83, 0x01, 0x11, 0x70]);
    }

    #[test]
    fn integers() {
        assert_eq!(integer_u64(0), [0x02, 0x01, 0x00]);
        assert_eq!(integer_u64(127), [0x02, 0x01, 0x7F]);
        assert_eq!(integer_u64(128), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(integer_u64(256), [0x02, 0x02, 0x01, 0x00]);
        assert_eq!(integer_u64(65537), [0x02, 0x03, 0x01, 0x00, 0x01]);
        assert_eq!(
            integer_unsigned(&[0x00, 0x00, 0x9A, 0x01]),
            [0x02, 0x03, 0x00, 0x9A, 0x01]
        );
        assert_eq!(integer_unsigned(&[]), [0x02, 0x01, 0x00]);
        assert_eq!(
            integer_unsigned(&[0x07, 0x05, 0xD9, 0x90]),
            [0x02, 0x04, 0x07, 0x05, 0xD9, 0x90]
        );
    }

    #[test]
    fn oids() {
        // sha256WithRSAEncryption
        assert_eq!(
            oid(&[1, 2, 840, 113549, 1, 1, 11]).unwrap(),
            [0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0B]
        );
        // id-ce-keyUsage
        assert_eq!(
            oid(&[2, 5, 29, 15]).unwrap(),
            [0x06, 0x03, 0x55, 0x1D, 0x0F]
        );
        // JPKI name otherName type: 1.2.392.200149.8.5.5.1
        assert_eq!(
            oid(&[1, 2, 392, 200149, 8, 5, 5, 1]).unwrap(),
            [0x06, 0x0A, 0x2A, 0x83, 0x08, 0x8C, 0x9B, 0x55, 0x08, 0x05, 0x05, 0x01]
        );
        // first two arcs combine above 127 for joint-iso-itu-t
        assert_eq!(oid(&[2, 999, 3]).unwrap(), [0x06, 0x03, 0x88, 0x37, 0x03]);
        assert!(oid(&[1]).is_err());
        assert!(oid(&[3, 1]).is_err());
        assert!(oid(&[1, 40]).is_err());
    }

    #[test]
    fn strings() {
        assert_eq!(utf8_string("試"), [0x0C, 0x03, 0xE8, 0xA9, 0xA6]);
        assert_eq!(printable_string("JP").unwrap(), [0x13, 0x02, b'J', b'P']);
        assert_eq!(
            printable_string("Bad_name"),
            Err(DerError::NotPrintable('_'))
        );
        assert_eq!(
            ia5_string("http://a/").unwrap(),
            [0x16, 0x09, b'h', b't', b't', b'p', b':', b'/', b'/', b'a', b'/']
        );
        assert!(ia5_string("é").is_err());
        assert_eq!(octet_string(&[1, 2]), [0x04, 0x02, 0x01, 0x02]);
    }

    #[test]
    fn bits_booleans_null() {
        assert_eq!(bit_string(&[0xFF], 1).unwrap(), [0x03, 0x02, 0x01, 0xFE]);
        assert_eq!(bit_string(&[], 0).unwrap(), [0x03, 0x01, 0x00]);
        assert!(bit_string(&[0x01], 8).is_err());
        // KeyUsage digitalSignature + nonRepudiation, as on JPKI signing certificates
        assert_eq!(named_bits(&[0, 1]), [0x03, 0x02, 0x06, 0xC0]);
        // digitalSignature alone
        assert_eq!(named_bits(&[0]), [0x03, 0x02, 0x07, 0x80]);
        // keyCertSign + cRLSign
        assert_eq!(named_bits(&[5, 6]), [0x03, 0x02, 0x01, 0x06]);
        assert_eq!(named_bits(&[0, 8]), [0x03, 0x03, 0x07, 0x80, 0x80]);
        assert_eq!(boolean(true), [0x01, 0x01, 0xFF]);
        assert_eq!(boolean(false), [0x01, 0x01, 0x00]);
        assert_eq!(null(), [0x05, 0x00]);
    }

    #[test]
    fn constructed_values() {
        let a = integer_u64(2);
        let b = integer_u64(1);
        assert_eq!(
            sequence(&[&a, &b]),
            [0x30, 0x06, 0x02, 0x01, 0x02, 0x02, 0x01, 0x01]
        );
        // SET OF is sorted by encoding
        assert_eq!(
            set_of(&[&a, &b]),
            [0x31, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02]
        );
        assert_eq!(explicit(0, &b).unwrap(), [0xA0, 0x03, 0x02, 0x01, 0x01]);
        assert_eq!(implicit_primitive(0, &[0xAB]).unwrap(), [0x80, 0x01, 0xAB]);
        assert_eq!(
            implicit_constructed(4, &[&a]).unwrap(),
            [0xA4, 0x03, 0x02, 0x01, 0x02]
        );
        assert!(explicit(31, &b).is_err());
        assert_eq!(contents_of(&a), Some(&[0x02][..]));
        let long = octet_string(&[7; 300]);
        assert_eq!(contents_of(&long).map(<[u8]>::len), Some(300));
        assert_eq!(contents_of(&[0x04, 0x05, 0x00]), None);
    }

    #[test]
    fn times() {
        let t = datetime!(2024-01-01 00:00:00 UTC);
        assert_eq!(utc_time(t).unwrap(), tlv(0x17, b"240101000000Z"));
        assert_eq!(x509_time(t).unwrap(), tlv(0x17, b"240101000000Z"));
        let late = datetime!(2049-12-31 23:59:59 UTC);
        assert_eq!(x509_time(late).unwrap(), tlv(0x17, b"491231235959Z"));
        let y2050 = datetime!(2050-01-01 00:00:00 UTC);
        assert_eq!(x509_time(y2050).unwrap(), tlv(0x18, b"20500101000000Z"));
        assert!(utc_time(y2050).is_err());
        // offsets are converted, fractions dropped
        let tokyo = datetime!(2024-01-01 09:00:00.75 +09:00);
        assert_eq!(utc_time(tokyo).unwrap(), tlv(0x17, b"240101000000Z"));
        let y1999 = datetime!(1999-06-30 12:34:56 UTC);
        assert_eq!(
            generalized_time(y1999).unwrap(),
            tlv(0x18, b"19990630123456Z")
        );
    }
}
