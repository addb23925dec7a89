//! The two fields of an X.509 certificate (DER) that device authentication looks at: the
//! subject's common name (IoT Hub requires it to be the device id for CA-signed devices,
//! Microsoft Learn "Authenticate identities with X.509 certificates") and the end of its
//! validity. A minimal DER walk (RFC 5280 §4.1): no full parser in the Pi build.

/// One DER element: (tag, contents, rest).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&len0, rest) = rest.split_first()?;
    let (len, rest) = if len0 < 0x80 {
        (usize::from(len0), rest)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, b| (a << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// TBSCertificate's validity and subject elements (contents).
fn validity_and_subject(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (_, cert, _) = tlv(der)?;
    let (_, tbs, _) = tlv(cert)?;
    let mut rest = tbs;
    // [0] version is optional; then serial, signature algorithm, issuer, validity, subject.
    if rest.first() == Some(&0xA0) {
        rest = tlv(rest)?.2;
    }
    for _ in 0..3 {
        rest = tlv(rest)?.2;
    }
    let (_, validity, rest) = tlv(rest)?;
    let (_, subject, _) = tlv(rest)?;
    Some((validity, subject))
}

/// The subject's common name (OID 2.5.4.3) of a DER certificate.
pub fn subject_cn(der: &[u8]) -> Option<String> {
    let (_, mut subject) = validity_and_subject(der)?;
    let mut cn = None;
    while let Some((_, set, next)) = tlv(subject) {
        let mut atvs = set;
        while let Some((_, atv, more)) = tlv(atvs) {
            if let Some((0x06, oid, value)) = tlv(atv) {
                if oid == [0x55, 0x04, 0x03] {
                    if let Some((_, v, _)) = tlv(value) {
                        cn = Some(String::from_utf8_lossy(v).into_owned());
                    }
                }
            }
            atvs = more;
        }
        subject = next;
    }
    cn
}

/// The end of the certificate's validity (`notAfter`), Unix seconds.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (validity, _) = validity_and_subject(der)?;
    let (_, _, rest) = tlv(validity)?;
    let (tag, t, _) = tlv(rest)?;
    let t = std::str::from_utf8(t).ok()?.strip_suffix('Z')?;
    // UTCTime YYMMDDHHMMSS (years 1950-2049) or GeneralizedTime YYYYMMDDHHMMSS.
    let (year, rest) = match tag {
        0x17 => {
            let yy: i64 = t.get(..2)?.parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, t.get(2..)?)
        }
        0x18 => (t.get(..4)?.parse().ok()?, t.get(4..)?),
        _ => return None,
    };
    let n = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day, h, m, s) = (n(0)?, n(2)?, n(4)?, n(6)?, n(8)?);
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2049, 12, 31), 29_219);
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(subject_cn(b"\x30\x05abc"), None);
        assert_eq!(not_after(&[]), None);
    }
}
