//! Screenshots from `xwd`: the X Window Dump format (file version 7, as written by `xwd` and
//! read by `xwud`), decoded to RGB, plus a small PNG writer so that people can look at them.
//!
//! An XWD file is a header of 25 big-endian 32-bit fields, the window name (NUL-terminated,
//! padding up to `header_size`), `ncolors` colormap entries of 12 bytes, then the pixels:
//! `height` rows of `bytes_per_line` bytes. In ZPixmap format each pixel is `bits_per_pixel`
//! bits in the file's `byte_order`; for TrueColor and DirectColor visuals its red, green and
//! blue are the bits under the three masks.
#![allow(dead_code)]

const HEADER_FIELDS: usize = 25;
const HEADER_BYTES: usize = HEADER_FIELDS * 4;
const COLOR_ENTRY_BYTES: usize = 12;
const FILE_VERSION: u32 = 7;
const Z_PIXMAP: u32 = 2;
const LSB_FIRST: u32 = 0;
const MSB_FIRST: u32 = 1;
const TRUE_COLOR: u32 = 4;
const DIRECT_COLOR: u32 = 5;

/// An RGB image, rows top to bottom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<[u8; 3]>,
}

impl Image {
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        self.pixels[(y * self.width + x) as usize]
    }

    /// The part inside `x, y, width, height`, clipped to the image.
    pub fn crop(&self, x: i64, y: i64, width: u32, height: u32) -> Image {
        let x0 = x.clamp(0, self.width as i64) as u32;
        let y0 = y.clamp(0, self.height as i64) as u32;
        let x1 = (x + width as i64).clamp(0, self.width as i64) as u32;
        let y1 = (y + height as i64).clamp(0, self.height as i64) as u32;
        let mut pixels = Vec::with_capacity(((x1 - x0) * (y1 - y0)) as usize);
        for row in y0..y1 {
            for col in x0..x1 {
                pixels.push(self.pixel(col, row));
            }
        }
        Image {
            width: x1 - x0,
            height: y1 - y0,
            pixels,
        }
    }
}

/// The header fields this decoder uses.
#[derive(Debug)]
struct Header {
    header_size: usize,
    pixmap_format: u32,
    width: u32,
    height: u32,
    byte_order: u32,
    bits_per_pixel: u32,
    bytes_per_line: usize,
    visual_class: u32,
    masks: [u32; 3],
    ncolors: usize,
}

fn field(data: &[u8], index: usize) -> u32 {
    let at = index * 4;
    u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

fn header(data: &[u8]) -> Result<Header, String> {
    if data.len() < HEADER_BYTES {
        return Err(format!(
            "XWD data of {} bytes is shorter than its {HEADER_BYTES}-byte header",
            data.len()
        ));
    }
    let version = field(data, 1);
    if version != FILE_VERSION {
        return Err(format!(
            "XWD file version {version} (expected {FILE_VERSION}; a byte-swapped or non-XWD file?)"
        ));
    }
    let header = Header {
        header_size: field(data, 0) as usize,
        pixmap_format: field(data, 2),
        width: field(data, 4),
        height: field(data, 5),
        byte_order: field(data, 7),
        bits_per_pixel: field(data, 11),
        bytes_per_line: field(data, 12) as usize,
        visual_class: field(data, 13),
        masks: [field(data, 14), field(data, 15), field(data, 16)],
        ncolors: field(data, 19) as usize,
    };
    if header.header_size < HEADER_BYTES {
        return Err(format!(
            "XWD header_size {} is too small",
            header.header_size
        ));
    }
    Ok(header)
}

/// Shift and width of a contiguous colour mask.
fn mask_shape(mask: u32) -> Result<(u32, u32), String> {
    if mask == 0 {
        return Err("XWD colour mask is 0".into());
    }
    let shift = mask.trailing_zeros();
    let bits = (mask >> shift).trailing_ones();
    if (mask >> shift) >> bits != 0 {
        return Err(format!("XWD colour mask {mask:#x} is not contiguous"));
    }
    Ok((shift, bits))
}

/// Decodes a ZPixmap XWD of a TrueColor or DirectColor visual with 16, 24 or 32 bits per
/// pixel (what `xwd` writes for Xvfb's default 24-bit screen: 32 bits per pixel,
/// least significant byte first).
pub fn parse(data: &[u8]) -> Result<Image, String> {
    let h = header(data)?;
    if h.pixmap_format != Z_PIXMAP {
        return Err(format!(
            "XWD pixmap format {} is not ZPixmap ({Z_PIXMAP})",
            h.pixmap_format
        ));
    }
    if h.visual_class != TRUE_COLOR && h.visual_class != DIRECT_COLOR {
        return Err(format!(
            "XWD visual class {} is not TrueColor or DirectColor",
            h.visual_class
        ));
    }
    let bytes_per_pixel = match h.bits_per_pixel {
        16 | 24 | 32 => (h.bits_per_pixel / 8) as usize,
        other => return Err(format!("XWD with {other} bits per pixel is not supported")),
    };
    if h.byte_order != LSB_FIRST && h.byte_order != MSB_FIRST {
        return Err(format!(
            "XWD byte order {} is neither 0 nor 1",
            h.byte_order
        ));
    }
    if h.bytes_per_line < h.width as usize * bytes_per_pixel {
        return Err(format!(
            "XWD bytes_per_line {} is less than {} pixels of {bytes_per_pixel} bytes",
            h.bytes_per_line, h.width
        ));
    }
    let shapes = [
        mask_shape(h.masks[0])?,
        mask_shape(h.masks[1])?,
        mask_shape(h.masks[2])?,
    ];
    let start = h
        .ncolors
        .checked_mul(COLOR_ENTRY_BYTES)
        .and_then(|c| c.checked_add(h.header_size))
        .ok_or("XWD colormap size overflows")?;
    let size = h
        .bytes_per_line
        .checked_mul(h.height as usize)
        .ok_or("XWD image size overflows")?;
    let end = start.checked_add(size).ok_or("XWD image size overflows")?;
    if data.len() < end {
        return Err(format!(
            "XWD data truncated: {} bytes, the header needs {end}",
            data.len()
        ));
    }
    let mut pixels = Vec::with_capacity(h.width as usize * h.height as usize);
    for row in data[start..end].chunks_exact(h.bytes_per_line) {
        for bytes in row[..h.width as usize * bytes_per_pixel].chunks_exact(bytes_per_pixel) {
            let value = if h.byte_order == MSB_FIRST {
                bytes.iter().fold(0u32, |v, &b| (v << 8) | b as u32)
            } else {
                bytes.iter().rev().fold(0u32, |v, &b| (v << 8) | b as u32)
            };
            let channel = |(shift, bits): (u32, u32)| {
                let max = (1u64 << bits) - 1;
                let v = ((value >> shift) as u64) & max;
                ((v * 255 + max / 2) / max) as u8
            };
            pixels.push([channel(shapes[0]), channel(shapes[1]), channel(shapes[2])]);
        }
    }
    Ok(Image {
        width: h.width,
        height: h.height,
        pixels,
    })
}

/// The CRC-32 of PNG chunks (ISO 3309, polynomial 0xEDB88320).
pub fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for part in parts {
        for &byte in *part {
            crc ^= byte as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
    }
    !crc
}

pub fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &byte in chunk {
            a += byte as u32;
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    (b << 16) | a
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(&[kind, data]).to_be_bytes());
}

/// An 8-bit RGB PNG, its pixels in uncompressed ("stored") deflate blocks: larger than a
/// compressed PNG, but every viewer reads it.
pub fn png(image: &Image) -> Vec<u8> {
    let mut raw = Vec::with_capacity(image.pixels.len() * 3 + image.height as usize);
    for row in image.pixels.chunks(image.width.max(1) as usize) {
        raw.push(0); // filter: none
        for p in row {
            raw.extend_from_slice(p);
        }
    }
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = if raw.is_empty() {
        vec![&[]]
    } else {
        raw.chunks(65_535).collect()
    };
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    zlib.extend_from_slice(&adler32(&raw).to_be_bytes());

    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&image.width.to_be_bytes());
    ihdr.extend_from_slice(&image.height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8 bits, RGB, deflate, adaptive, no interlace
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &zlib);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes an XWD file the way `xwd` lays it out.
    struct Synthetic {
        width: u32,
        height: u32,
        bits_per_pixel: u32,
        byte_order: u32,
        bytes_per_line: u32,
        masks: [u32; 3],
        name: &'static [u8],
        ncolors: u32,
    }

    impl Synthetic {
        fn write(&self, pixel: impl Fn(u32, u32) -> u32) -> Vec<u8> {
            let header_size = HEADER_BYTES as u32 + self.name.len() as u32;
            let fields: [u32; HEADER_FIELDS] = [
                header_size,
                FILE_VERSION,
                Z_PIXMAP,
                24,
                self.width,
                self.height,
                0,
                self.byte_order,
                32,
                self.byte_order,
                32,
                self.bits_per_pixel,
                self.bytes_per_line,
                TRUE_COLOR,
                self.masks[0],
                self.masks[1],
                self.masks[2],
                8,
                self.ncolors,
                self.ncolors,
                self.width,
                self.height,
                0,
                0,
                0,
            ];
            let mut out: Vec<u8> = fields.iter().flat_map(|f| f.to_be_bytes()).collect();
            out.extend_from_slice(self.name);
            // Colormap entries: pixel, red, green, blue, flags, pad — junk the decoder must skip.
            for i in 0..self.ncolors {
                out.extend_from_slice(&i.to_be_bytes());
                out.extend_from_slice(&[0xAB; 8]);
            }
            let bytes = (self.bits_per_pixel / 8) as usize;
            for y in 0..self.height {
                let mut row = Vec::new();
                for x in 0..self.width {
                    let v = pixel(x, y).to_be_bytes();
                    let v = &v[4 - bytes..];
                    if self.byte_order == MSB_FIRST {
                        row.extend_from_slice(v);
                    } else {
                        row.extend(v.iter().rev());
                    }
                }
                row.resize(self.bytes_per_line as usize, 0xEE);
                out.extend_from_slice(&row);
            }
            out
        }
    }

    fn xvfb_like(width: u32, height: u32) -> Synthetic {
        Synthetic {
            width,
            height,
            bits_per_pixel: 32,
            byte_order: LSB_FIRST,
            bytes_per_line: width * 4,
            masks: [0xFF0000, 0x00FF00, 0x0000FF],
            name: b"xwdump\0\0",
            ncolors: 256,
        }
    }

    fn gradient(x: u32, y: u32) -> u32 {
        ((x * 40) << 16) | ((y * 50) << 8) | (x + y)
    }

    #[test]
    fn decodes_32_bit_lsb_first_with_colormap_and_name() {
        let data = xvfb_like(5, 3).write(gradient);
        let image = parse(&data).expect("parse");
        assert_eq!((image.width, image.height), (5, 3));
        assert_eq!(image.pixels.len(), 15);
        assert_eq!(image.pixel(0, 0), [0, 0, 0]);
        assert_eq!(image.pixel(4, 2), [160, 100, 6]);
        assert_eq!(image.pixel(3, 1), [120, 50, 4]);
    }

    #[test]
    fn decodes_24_bit_msb_first_with_row_padding() {
        let spec = Synthetic {
            width: 3,
            height: 2,
            bits_per_pixel: 24,
            byte_order: MSB_FIRST,
            bytes_per_line: 12, // 9 bytes of pixels, padded to 32 bits
            masks: [0x0000FF, 0x00FF00, 0xFF0000], // BGR
            name: b"\0",
            ncolors: 0,
        };
        let data = spec.write(|x, y| (x * 10) | ((y * 20) << 8) | (200 << 16));
        let image = parse(&data).expect("parse");
        assert_eq!(image.pixel(2, 1), [20, 20, 200]);
        assert_eq!(image.pixel(0, 0), [0, 0, 200]);
    }

    #[test]
    fn scales_narrow_masks_to_8_bits() {
        let spec = Synthetic {
            width: 2,
            height: 1,
            bits_per_pixel: 16,
            byte_order: LSB_FIRST,
            bytes_per_line: 4,
            masks: [0xF800, 0x07E0, 0x001F], // RGB565
            name: b"\0",
            ncolors: 0,
        };
        let image = parse(&spec.write(|x, _| if x == 0 { 0xFFFF } else { 0x0410 })).unwrap();
        assert_eq!(image.pixel(0, 0), [255, 255, 255]);
        assert_eq!(image.pixel(1, 0), [0, 130, 132]);
    }

    #[test]
    fn refuses_truncated_or_foreign_data() {
        let data = xvfb_like(4, 4).write(gradient);
        let err = parse(&data[..data.len() - 1]).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        assert!(parse(&data[..50]).unwrap_err().contains("shorter"));
        let mut swapped = data.clone();
        swapped[4..8].copy_from_slice(&7u32.to_le_bytes());
        assert!(parse(&swapped).unwrap_err().contains("version"));
        let mut xy = data.clone();
        xy[8..12].copy_from_slice(&1u32.to_be_bytes());
        assert!(parse(&xy).unwrap_err().contains("ZPixmap"));
        let mut gaps = data;
        gaps[56..60].copy_from_slice(&0x00FF00FFu32.to_be_bytes());
        assert!(parse(&gaps).unwrap_err().contains("contiguous"));
    }

    #[test]
    fn crops_to_the_image() {
        let image = parse(&xvfb_like(5, 3).write(gradient)).unwrap();
        let part = image.crop(3, 1, 10, 10);
        assert_eq!((part.width, part.height), (2, 2));
        assert_eq!(part.pixel(0, 0), image.pixel(3, 1));
        assert_eq!(part.pixel(1, 1), image.pixel(4, 2));
        assert_eq!(image.crop(-2, -2, 3, 3).pixels, vec![image.pixel(0, 0)]);
        assert_eq!(image.crop(9, 9, 3, 3).pixels.len(), 0);
    }

    #[test]
    fn checksums_match_known_values() {
        // The CRC of an empty IEND chunk, as in every PNG file.
        assert_eq!(crc32(&[b"IEND"]), 0xAE42_6082);
        assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        assert_eq!(adler32(&vec![0xFF; 100_000]), {
            let (mut a, mut b) = (1u64, 0u64);
            for _ in 0..100_000 {
                a = (a + 0xFF) % 65521;
                b = (b + a) % 65521;
            }
            ((b << 16) | a) as u32
        });
    }

    #[test]
    fn png_layout() {
        let image = Image {
            width: 300,
            height: 300,
            pixels: vec![[1, 2, 3]; 90_000],
        };
        let png = png(&image);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(&png[16..24], &[0, 0, 1, 44, 0, 0, 1, 44]);
        assert_eq!(&png[png.len() - 12..], b"\0\0\0\0IEND\xAE\x42\x60\x82");
        // 300 rows of 901 bytes need five stored blocks of at most 65,535 bytes.
        let idat_len = u32::from_be_bytes([png[33], png[34], png[35], png[36]]) as usize;
        assert_eq!(&png[37..41], b"IDAT");
        assert_eq!(idat_len, 2 + 5 * 5 + 300 * 901 + 4);
    }
}
