//! Encodings several layers share: dates as RFC 3339 with milliseconds (the studio's
//! documents and the protocols write them so), and the base64 of bulk bytes.

/// Unix milliseconds as RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The base64 of `data_b64` fields: standard alphabet, padded, on SIMD where the CPU has it
/// (chunk payloads are most of every upload and download line).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub fn base64() -> &'static base64::engine::simd::Simd {
    static ENGINE: std::sync::LazyLock<base64::engine::simd::Simd> =
        std::sync::LazyLock::new(|| {
            base64::engine::simd::Simd::standard(base64::engine::general_purpose::PAD)
        });
    &ENGINE
}

/// The base64 of `data_b64` fields, on targets the SIMD engine does not cover.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub fn base64() -> &'static base64::engine::GeneralPurpose {
    &base64::engine::general_purpose::STANDARD
}
