//! Reads back the QR codes the CLI prints or saves, with rqrr: the tests' own reader, so that what the
//! CLI draws is checked by something other than the CLI.

/// The text of the QR code in a PNG image.
pub fn read_png(bytes: &[u8]) -> Result<String, String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| format!("not a PNG image: {e}"))?;
    let mut buf = vec![0; reader.output_buffer_size().ok_or("PNG image too large")?];
    let info = reader.next_frame(&mut buf).map_err(|e| format!("bad PNG image: {e}"))?;
    let channels = info.color_type.samples();
    let w = info.width as usize;
    decode(w, info.height as usize, |x, y| buf[(y * w + x) * channels])
}

/// The text of a QR code drawn in the terminal with half blocks: each character is two pixels, top
/// and bottom, and a space is dark.
pub fn read_terminal_art(art: &str) -> Result<String, String> {
    let rows: Vec<Vec<char>> = art.lines().map(|l| l.chars().collect()).collect();
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let scale = 4;
    let dark = |x: usize, y: usize| {
        let ch = rows.get(y / 2).and_then(|r| r.get(x)).copied().unwrap_or('█');
        matches!((ch, y % 2), (' ', _) | ('▀', 1) | ('▄', 0))
    };
    decode(width * scale, rows.len() * 2 * scale, |x, y| {
        if dark(x / scale, y / scale) { 0 } else { 255 }
    })
}

fn decode(w: usize, h: usize, luma: impl FnMut(usize, usize) -> u8) -> Result<String, String> {
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, luma);
    let grids = img.detect_grids();
    let grid = grids.first().ok_or("no QR code found")?;
    grid.decode()
        .map(|(_, text)| text)
        .map_err(|e| format!("cannot read the QR code: {e}"))
}
