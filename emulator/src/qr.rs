//! What the emulator returns as a TOTP's `qr`: an `otpauth://` URI, or a `data:image/png;base64,` PNG of it.

use data_encoding::BASE64;

/// The form of the `qr` field of `POST /totps` and `GET /totps/{id}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum QrMode {
    /// `data:image/png;base64,<PNG of the otpauth URI>` (default; what "open it with any browser" suggests).
    #[default]
    Png,
    /// The bare `otpauth://totp/...` URI.
    Uri,
}

impl QrMode {
    /// Parses `png` / `uri` (also `otpauth`).
    pub fn parse(s: &str) -> Option<QrMode> {
        match s.to_ascii_lowercase().as_str() {
            "png" | "image" | "data" => Some(QrMode::Png),
            "uri" | "otpauth" | "url" => Some(QrMode::Uri),
            _ => None,
        }
    }

    /// `png` or `uri`.
    pub fn as_str(self) -> &'static str {
        match self {
            QrMode::Png => "png",
            QrMode::Uri => "uri",
        }
    }
}

fn uri_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `otpauth://totp/<issuer>:<account>?secret=<base32>&issuer=<issuer>&algorithm=SHA1&digits=6&period=30`.
pub fn otpauth_uri(issuer: &str, account: &str, secret_b32: &str) -> String {
    format!(
        "otpauth://totp/{}:{}?secret={secret_b32}&issuer={}&algorithm=SHA1&digits=6&period=30",
        uri_component(issuer),
        uri_component(account),
        uri_component(issuer)
    )
}

/// A PNG (8-bit grey, 4 px per module, 4-module quiet zone) of a QR code holding `text`.
pub fn qr_png(text: &str) -> Result<Vec<u8>, String> {
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|e| e.to_string())?;
    let modules = code.width();
    let colors = code.to_colors();
    const SCALE: usize = 4;
    const QUIET: usize = 4;
    let side = (modules + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, c) in colors.iter().enumerate() {
        if *c != qrcode::Color::Dark {
            continue;
        }
        let (mx, my) = (i % modules + QUIET, i / modules + QUIET);
        for dy in 0..SCALE {
            let row = (my * SCALE + dy) * side;
            pixels[row + mx * SCALE..row + mx * SCALE + SCALE].fill(0);
        }
    }
    let mut png_bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png_bytes, side as u32, side as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(|e| e.to_string())?;
        w.write_image_data(&pixels).map_err(|e| e.to_string())?;
        w.finish().map_err(|e| e.to_string())?;
    }
    Ok(png_bytes)
}

/// `data:image/png;base64,...` of [`qr_png`].
pub fn png_data_uri(text: &str) -> Result<String, String> {
    Ok(format!("data:image/png;base64,{}", BASE64.encode(&qr_png(text)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_shape() {
        assert_eq!(
            otpauth_uri("Latch", "bob@example.com", "JBSWY3DPEHPK3PXP"),
            "otpauth://totp/Latch:bob%40example.com?secret=JBSWY3DPEHPK3PXP&issuer=Latch&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn png_is_a_png() {
        let png = qr_png("otpauth://totp/Latch:x?secret=JBSWY3DPEHPK3PXP").expect("png");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let uri = png_data_uri("hello").expect("uri");
        assert!(uri.starts_with("data:image/png;base64,iVBORw0KGgo"));
    }
}
