//! Shared helpers for the certificate and trust tests: the real J-LIS roots and small DER
//! surgery on the simulated card's certificates (re-serialising, re-signing).

#![allow(dead_code)]

use mynalink_link::trust::TrustAnchor;
use mynalink_simcard::der;
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use sha2::{Digest, Sha256};

pub fn jlis_pem(file: &str) -> Vec<u8> {
    // Public J-LIS root certificates, kept with the project's fixtures.
    let path = format!("{}/../../fixtures/jlis/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn jlis_der(file: &str) -> Vec<u8> {
    TrustAnchor::from_pem_or_der(&jlis_pem(file))
        .expect("J-LIS root parses")
        .der()
        .to_vec()
}

/// One DER element: tag, contents, and the whole encoding.
pub struct Element {
    pub tag: u8,
    pub contents: Vec<u8>,
}

impl Element {
    pub fn encode(&self) -> Vec<u8> {
        der::tlv(self.tag, &self.contents)
    }
}

/// Splits DER contents into their elements (test data only: panics on bad input).
pub fn elements(mut input: &[u8]) -> Vec<Element> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let tag = input[0];
        let first = input[1];
        let (len, header) = if first < 0x80 {
            (usize::from(first), 2)
        } else {
            let n = usize::from(first & 0x7F);
            let len = input[2..2 + n]
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, 2 + n)
        };
        out.push(Element {
            tag,
            contents: input[header..header + len].to_vec(),
        });
        input = &input[header + len..];
    }
    out
}

pub fn one(input: &[u8]) -> Element {
    let mut all = elements(input);
    assert_eq!(all.len(), 1);
    all.remove(0)
}

fn join(parts: &[Element]) -> Vec<u8> {
    parts.iter().flat_map(Element::encode).collect()
}

/// The certificate's three parts: tbsCertificate, signatureAlgorithm, signatureValue.
pub fn split_certificate(cert: &[u8]) -> (Element, Element, Element) {
    let outer = one(cert);
    let mut parts = elements(&outer.contents).into_iter();
    let (Some(tbs), Some(alg), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        panic!("certificate does not have three parts");
    };
    (tbs, alg, sig)
}

/// Applies `edit` to the tbsCertificate's fields and reassembles the certificate with the
/// original signature (which then no longer matches).
pub fn edit_tbs(cert: &[u8], edit: impl FnOnce(&mut Vec<Element>)) -> Vec<u8> {
    let (tbs, alg, sig) = split_certificate(cert);
    let mut fields = elements(&tbs.contents);
    edit(&mut fields);
    let tbs = Element {
        tag: 0x30,
        contents: join(&fields),
    };
    der::tlv(0x30, &join(&[tbs, alg, sig]))
}

/// Signs the certificate's tbsCertificate again with `key` (sha256WithRSAEncryption).
pub fn resign(cert: &[u8], key: &RsaPrivateKey) -> Vec<u8> {
    let (tbs, alg, _) = split_certificate(cert);
    let tbs_der = tbs.encode();
    let signature = key
        .sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(&tbs_der))
        .expect("signs");
    let mut bits = vec![0u8];
    bits.extend_from_slice(&signature);
    let sig = Element {
        tag: 0x03,
        contents: bits,
    };
    der::tlv(0x30, &join(&[tbs, alg, sig]))
}

/// Replaces the serialNumber INTEGER's contents (field 1, after the [0] version).
pub fn with_serial_contents(cert: &[u8], contents: &[u8]) -> Vec<u8> {
    edit_tbs(cert, |fields| {
        assert_eq!(fields[0].tag, 0xA0, "v3 certificate expected");
        assert_eq!(fields[1].tag, 0x02);
        fields[1].contents = contents.to_vec();
    })
}

const SAN_OID: [u8; 5] = [0x06, 0x03, 0x55, 0x1D, 0x11];

/// Replaces the value (the GeneralNames DER) of the subjectAltName extension, or removes the
/// extension when `san` is `None`.
pub fn with_san(cert: &[u8], san: Option<&[u8]>) -> Vec<u8> {
    edit_tbs(cert, |fields| {
        let extensions = fields
            .iter_mut()
            .find(|f| f.tag == 0xA3)
            .expect("extensions");
        let list = one(&extensions.contents);
        let mut kept = Vec::new();
        for ext in elements(&list.contents) {
            if ext.contents.starts_with(&SAN_OID) {
                if let Some(san) = san {
                    let value = der::octet_string(san);
                    let mut contents = SAN_OID.to_vec();
                    contents.extend_from_slice(&value);
                    kept.push(Element {
                        tag: 0x30,
                        contents,
                    });
                }
            } else {
                kept.push(ext);
            }
        }
        extensions.contents = der::tlv(0x30, &join(&kept));
    })
}

/// `otherName [0] { type-id, [0] EXPLICIT value }` with the value given as full DER.
pub fn other_name_raw(last_arc: u64, value_der: &[u8]) -> Vec<u8> {
    let oid = der::oid(&[1, 2, 392, 200149, 8, 5, 5, last_arc]).expect("oid");
    let explicit = der::tlv(0xA0, value_der);
    let mut contents = oid;
    contents.extend_from_slice(&explicit);
    der::tlv(0xA0, &contents)
}

/// A basic-4 otherName with a UTF8String value.
pub fn other_name(last_arc: u64, value: &str) -> Vec<u8> {
    other_name_raw(last_arc, &der::utf8_string(value))
}

pub fn general_names(names: &[Vec<u8>]) -> Vec<u8> {
    let parts: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
    der::sequence(&parts)
}

/// Replaces (or, when absent, appends) the extension with `oid_arcs`: its criticality and
/// its value (the DER inside the OCTET STRING). `None` removes it.
pub fn with_extension(
    cert: &[u8],
    oid_arcs: &[u64],
    replacement: Option<(bool, &[u8])>,
) -> Vec<u8> {
    let oid = der::oid(oid_arcs).expect("oid");
    edit_tbs(cert, |fields| {
        let extensions = fields
            .iter_mut()
            .find(|f| f.tag == 0xA3)
            .expect("extensions");
        let list = one(&extensions.contents);
        let encode = |(critical, value): (bool, &[u8])| {
            let mut contents = oid.clone();
            if critical {
                contents.extend_from_slice(&der::boolean(true));
            }
            contents.extend_from_slice(&der::octet_string(value));
            Element {
                tag: 0x30,
                contents,
            }
        };
        let mut kept = Vec::new();
        let mut replaced = false;
        for ext in elements(&list.contents) {
            if ext.contents.starts_with(&oid) {
                replaced = true;
                if let Some(new) = replacement {
                    kept.push(encode(new));
                }
            } else {
                kept.push(ext);
            }
        }
        if let (false, Some(new)) = (replaced, replacement) {
            kept.push(encode(new));
        }
        extensions.contents = der::tlv(0x30, &join(&kept));
    })
}

/// Replaces a tbsCertificate field by index (0 version, 1 serial, 2 signature, 3 issuer,
/// 4 validity, 5 subject, 6 subjectPublicKeyInfo, 7 extensions) with a whole DER element.
pub fn with_field(cert: &[u8], index: usize, element_der: &[u8]) -> Vec<u8> {
    edit_tbs(cert, |fields| {
        assert_eq!(fields[0].tag, 0xA0, "v3 certificate expected");
        fields[index] = one(element_der);
    })
}

/// The DER of a tbsCertificate field by index (see [`with_field`]).
pub fn field(cert: &[u8], index: usize) -> Vec<u8> {
    let (tbs, _, _) = split_certificate(cert);
    elements(&tbs.contents)[index].encode()
}
