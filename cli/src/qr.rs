//! Showing a TOTP enrolment QR code in the terminal, and saving it as a PNG.
//!
//! The service's `qr` may be an `otpauth://` URI, a `data:image/png;base64,` image, or a URL. What can be
//! rendered is rendered: a URI directly, an image by reading its QR code back (rqrr) and drawing that.

use qrcode::{Color, EcLevel, QrCode};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// What the terminal should show for a `qr` value.
#[derive(Debug, PartialEq, Eq)]
pub enum Shown {
    /// The QR drawn with Unicode half blocks, and the text it holds.
    Drawn { art: String, content: String },
    /// Only a link to open (a URL of an image).
    Link(String),
}

/// Quiet zone around a terminal QR code, in modules: 2 instead of the standard 4 keeps an enrolment code
/// (version 6 at level L, 41 modules) within 23 rows of an 80x24 terminal; phones read it, since the
/// zone is drawn in explicit colours that never blend into the code.
const TERMINAL_QUIET_ZONE: usize = 2;

/// Bright white on black, set at the start of every line and reset at its end, so that the code has the
/// same polarity (dark modules on a light ground) on dark and light terminal themes alike.
pub const COLOURS: &str = "\x1b[97;40m";
pub const RESET: &str = "\x1b[0m";

/// The QR code of `content` drawn for a terminal with Unicode half blocks (two modules a character, top
/// and bottom): a light module is the foreground colour, a dark one the background, so a space is two
/// dark modules. Error correction L: a screen is not a worn label, and the smallest code scans best.
/// Plain text; [`coloured`] adds the colours.
pub fn terminal_art(content: &str) -> Result<String, String> {
    let code = QrCode::with_error_correction_level(content.as_bytes(), EcLevel::L)
        .map_err(|e| format!("cannot make a QR code: {e}"))?;
    let (modules, colors) = (code.width(), code.to_colors());
    let q = TERMINAL_QUIET_ZONE;
    let size = modules + 2 * q;
    let dark = |x: usize, y: usize| {
        x >= q && y >= q && x < q + modules && y < q + modules && colors[(y - q) * modules + (x - q)] == Color::Dark
    };
    let mut art = String::new();
    for row in (0..size).step_by(2) {
        if row > 0 {
            art.push('\n');
        }
        for x in 0..size {
            // Past the last row (an odd size) the lower half is quiet zone: light.
            let bottom_dark = row + 1 < size && dark(x, row + 1);
            art.push(match (dark(x, row), bottom_dark) {
                (false, false) => '█',
                (false, true) => '▀',
                (true, false) => '▄',
                (true, true) => ' ',
            });
        }
    }
    Ok(art)
}

/// `art` with explicit colours on every line.
pub fn coloured(art: &str) -> String {
    art.lines()
        .map(|l| format!("{COLOURS}{l}{RESET}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The size (columns, rows) of the terminal on standard output, if it is one.
pub fn terminal_size() -> Option<(usize, usize)> {
    let (terminal_size::Width(w), terminal_size::Height(h)) = terminal_size::terminal_size()?;
    Some((usize::from(w), usize::from(h)))
}

/// A warning when `art` (plus `extra_rows` of text below it) does not fit a `size` terminal.
pub fn too_small(art: &str, extra_rows: usize, size: Option<(usize, usize)>) -> Option<String> {
    let (cols, rows) = size?;
    let width = art.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    let height = art.lines().count() + extra_rows;
    (width > cols || height > rows).then(|| {
        format!(
            "the terminal ({cols}x{rows}) is smaller than the QR code ({width}x{height}): enlarge the window and \
             run the command again, or enter the key by hand"
        )
    })
}

/// The PNG image (8 pixels a module, quiet zone of 4) of the QR code of `content`.
pub fn png_of(content: &str) -> Result<Vec<u8>, String> {
    let code = QrCode::new(content.as_bytes()).map_err(|e| format!("cannot make a QR code: {e}"))?;
    let (modules, colors) = (code.width(), code.to_colors());
    let scale = 8;
    let size = (modules + 8) * scale;
    let mut pixels = vec![255u8; size * size];
    for (i, color) in colors.iter().enumerate() {
        if *color == Color::Dark {
            let (mx, my) = (i % modules + 4, i / modules + 4);
            for y in my * scale..(my + 1) * scale {
                pixels[y * size + mx * scale..y * size + (mx + 1) * scale].fill(0);
            }
        }
    }
    let side = u32::try_from(size).map_err(|_| "QR image too large".to_string())?;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(&pixels).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

/// Reads the QR code in a PNG image.
pub fn read_png(bytes: &[u8]) -> Result<String, String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| format!("not a PNG image: {e}"))?;
    // A QR code needs a few hundred pixels a side; a larger image is refused before it is unpacked.
    let (width, height) = (reader.info().width, reader.info().height);
    if width > 4096 || height > 4096 {
        return Err(format!("the QR image is too large ({width}x{height})"));
    }
    let mut buf = vec![0; reader.output_buffer_size().ok_or("PNG image too large")?];
    let info = reader.next_frame(&mut buf).map_err(|e| format!("bad PNG image: {e}"))?;
    let channels = info.color_type.samples();
    let (w, h) = (info.width as usize, info.height as usize);
    let luma = |x: usize, y: usize| -> u8 {
        let i = (y * w + x) * channels;
        let px = &buf[i..i + channels];
        match channels {
            1 | 2 => px[0],
            _ => ((u16::from(px[0]) + u16::from(px[1]) + u16::from(px[2])) / 3) as u8,
        }
    };
    decode_grey(w, h, luma)
}

/// Reads the QR code of a greyscale picture given by `pixel(x, y)`.
pub fn decode_grey(w: usize, h: usize, pixel: impl FnMut(usize, usize) -> u8) -> Result<String, String> {
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, pixel);
    let grids = img.detect_grids();
    let grid = grids.first().ok_or("no QR code found in the image")?;
    grid.decode()
        .map(|(_, content)| content)
        .map_err(|e| format!("cannot read the QR code: {e}"))
}

/// Reads back a QR code drawn by [`terminal_art`].
#[cfg(test)]
fn read_terminal_art(art: &str) -> Result<String, String> {
    let rows: Vec<Vec<char>> = art.lines().map(|l| l.chars().collect()).collect();
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let height = rows.len() * 2;
    let scale = 4;
    // Each character holds two pixels, top and bottom; a space is dark (see terminal_art).
    let dark = |x: usize, y: usize| -> bool {
        let ch = rows.get(y / 2).and_then(|r| r.get(x)).copied().unwrap_or('█');
        matches!((ch, y % 2), (' ', _) | ('▀', 1) | ('▄', 0))
    };
    decode_grey(width * scale, height * scale, |x, y| {
        if dark(x / scale, y / scale) { 0 } else { 255 }
    })
}

/// Works out what to show in the terminal for the service's `qr` value.
pub fn show(qr: &str) -> Result<Shown, String> {
    if let Some(png) = data_uri_png(qr)? {
        let content = read_png(&png)?;
        return Ok(Shown::Drawn {
            art: terminal_art(&content)?,
            content,
        });
    }
    if qr.starts_with("https://") || qr.starts_with("http://") {
        return Ok(Shown::Link(qr.to_string()));
    }
    Ok(Shown::Drawn {
        art: terminal_art(qr)?,
        content: qr.to_string(),
    })
}

/// Saves the QR code of the service's `qr` value as a PNG at `path` (the service's own image, or one
/// drawn from the URI).
pub fn save_image(qr: &str, path: &Path) -> Result<(), String> {
    let png = match data_uri_png(qr)? {
        Some(png) => png,
        None if qr.starts_with("https://") || qr.starts_with("http://") => {
            return Err("the service gave a link, not an image: open it to see the QR code".into());
        }
        None => png_of(qr)?,
    };
    save(path, &png)
}

/// The PNG of a `data:image/png;base64,` value; `None` for any other value.
fn data_uri_png(qr: &str) -> Result<Option<Vec<u8>>, String> {
    let Some(data) = qr.strip_prefix("data:image/png;base64,") else {
        return Ok(None);
    };
    data_encoding::BASE64
        .decode(data.trim().as_bytes())
        .map(Some)
        .map_err(|_| "the QR image from the service is not valid base64".to_string())
}

/// Writes the image readable by its owner only: it holds the TOTP secret. A new file only, never
/// through a symbolic link: root must not be tricked into overwriting something else.
fn save(path: &Path, png: &[u8]) -> Result<(), String> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(png)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const URI: &str = "otpauth://totp/lockserver:alice%40host?secret=JBSWY3DPEHPK3PXP&issuer=lockserver";

    #[test]
    fn terminal_art_reads_back() {
        let art = terminal_art(URI).expect("art");
        assert_eq!(read_terminal_art(&art).expect("decoded"), URI);
    }

    #[test]
    fn png_reads_back_and_data_uri_is_drawn() {
        let png = png_of(URI).expect("png");
        assert_eq!(read_png(&png).expect("decoded"), URI);
        let data_uri = format!("data:image/png;base64,{}", data_encoding::BASE64.encode(&png));
        match show(&data_uri).expect("shown") {
            Shown::Drawn { content, art } => {
                assert_eq!(content, URI);
                assert_eq!(read_terminal_art(&art).expect("art"), URI);
            }
            other => panic!("expected a drawing, got {other:?}"),
        }
    }

    #[test]
    fn an_enrolment_code_fits_80x24_and_reads_back_with_the_small_quiet_zone() {
        // What `lockserver totp create` shows for local codes (lockserver::totp::otpauth_uri, defaults).
        let uri = "otpauth://totp/lockserver:alice%40host.example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\
                   &issuer=lockserver";
        let art = terminal_art(uri).expect("art");
        assert_eq!(read_terminal_art(&art).expect("decoded"), uri);
        assert!(art.lines().count() <= 23, "{} rows", art.lines().count());
        assert_eq!(too_small(&art, 1, Some((80, 24))), None);
        let warning = too_small(&art, 1, Some((80, 20))).expect("too small");
        assert!(warning.contains("80x20"), "{warning}");
        assert_eq!(too_small(&art, 1, None), None, "not a terminal: nothing to say");
    }

    #[test]
    fn every_line_sets_and_resets_its_colours() {
        let shown = coloured(&terminal_art(URI).expect("art"));
        for line in shown.lines() {
            assert!(line.starts_with(COLOURS) && line.ends_with(RESET), "{line:?}");
        }
    }

    #[test]
    fn urls_are_links_and_garbage_is_an_error() {
        assert_eq!(
            show("https://x.example/qr.png"),
            Ok(Shown::Link("https://x.example/qr.png".into()))
        );
        assert!(show("data:image/png;base64,@@@").is_err());
        assert!(read_png(b"not a png").is_err());
    }
}
