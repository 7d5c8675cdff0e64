//! Drawing what emonet reports onto a frame: each face's box and a label such as
//! `#3 HAPPY 97%`, for `emonet classify --annotate` and the local web view.
//!
//! Text uses a built-in 5×7 pixel font (upper-case letters, digits, `%#.:-` and space; other
//! characters are drawn as `?`), scaled to the frame so labels stay readable from 320×240 to
//! 1920×1080 without a font file.

use image::RgbImage;

use super::BBox;

/// 5×7 glyphs, one byte per row, bit 4 = leftmost column.
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '#' => [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        ' ' => [0; 7],
        _ => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04],
    }
}

/// Box and label colour for an emotion label (a fixed colour per known label).
pub fn label_color(emotion: &str) -> [u8; 3] {
    match emotion {
        "happy" => [40, 200, 60],
        "neutral" => [230, 230, 230],
        "sad" => [60, 120, 255],
        "surprise" => [255, 200, 0],
        "angry" => [255, 40, 40],
        "fear" => [180, 80, 255],
        "disgust" => [120, 170, 0],
        "contempt" => [255, 120, 200],
        _ => [0, 220, 255],
    }
}

/// One face to draw: its box (normalised to the frame) and label text.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    pub bbox: BBox,
    pub label: String,
    pub color: [u8; 3],
}

impl Annotation {
    /// `#ID EMOTION NN%` (the track id is left out when `None`).
    pub fn for_face(bbox: BBox, track: Option<u64>, emotion: &str, confidence: f32) -> Self {
        let pct = (confidence * 100.0).round() as i32;
        let label = match track {
            Some(id) => format!("#{id} {emotion} {pct}%"),
            None => format!("{emotion} {pct}%"),
        };
        Annotation {
            bbox,
            label,
            color: label_color(emotion),
        }
    }
}

fn fill(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, color: [u8; 3]) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    for y in y0.max(0)..y1.min(h) {
        for x in x0.max(0)..x1.min(w) {
            img.put_pixel(x as u32, y as u32, image::Rgb(color));
        }
    }
}

/// Pixel size of one font dot for a frame: 2 at 640×480, at least 1.
fn dot_size(img: &RgbImage) -> i64 {
    (img.width().max(img.height()) as i64 / 320).max(1)
}

/// Writes `text` with its top-left corner at (x, y), `dot` pixels per font dot.
pub fn draw_text(img: &mut RgbImage, x: i64, y: i64, text: &str, dot: i64, color: [u8; 3]) {
    for (i, c) in text.chars().enumerate() {
        let gx = x + i as i64 * 6 * dot;
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..5 {
                if bits & (0x10 >> col) != 0 {
                    let px = gx + col * dot;
                    let py = y + row as i64 * dot;
                    fill(img, px, py, px + dot, py + dot, color);
                }
            }
        }
    }
}

/// Draws each face's box outline and, above it (inside the frame), its label on a filled bar.
pub fn draw(img: &mut RgbImage, faces: &[Annotation]) {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let dot = dot_size(img);
    for a in faces {
        let t = dot;
        // kept inside the frame so that every edge of the outline is visible
        let x0 = ((a.bbox.x * w).round() as i64).max(t);
        let y0 = ((a.bbox.y * h).round() as i64).max(t);
        let x1 = (((a.bbox.x + a.bbox.w) * w).round() as i64).min(w as i64 - t);
        let y1 = (((a.bbox.y + a.bbox.h) * h).round() as i64).min(h as i64 - t);
        fill(img, x0 - t, y0 - t, x1 + t, y0, a.color);
        fill(img, x0 - t, y1, x1 + t, y1 + t, a.color);
        fill(img, x0 - t, y0, x0, y1, a.color);
        fill(img, x1, y0, x1 + t, y1, a.color);
        let text_w = a.label.chars().count() as i64 * 6 * dot + dot;
        let bar_h = 9 * dot;
        let by = if y0 - t - bar_h >= 0 {
            y0 - t - bar_h
        } else {
            y1 + t
        };
        let bx = (x0 - t).clamp(0, (img.width() as i64 - text_w).max(0));
        fill(img, bx, by, bx + text_w, by + bar_h, a.color);
        draw_text(img, bx + dot, by + dot, &a.label, dot, [0, 0, 0]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_and_label_land_where_the_face_is() {
        let mut img = RgbImage::from_pixel(640, 480, image::Rgb([0, 0, 0]));
        let bbox = BBox {
            x: 0.25,
            y: 0.5,
            w: 0.25,
            h: 0.25,
        };
        let a = Annotation::for_face(bbox, Some(3), "happy", 0.974);
        assert_eq!(a.label, "#3 happy 97%");
        draw(&mut img, &[a]);
        let green = image::Rgb(label_color("happy"));
        // outline: left edge at x = 160 - 2..160, top edge at y = 240 - 2..240
        assert_eq!(*img.get_pixel(159, 300), green);
        assert_eq!(*img.get_pixel(250, 239), green);
        assert_eq!(*img.get_pixel(321, 300), green);
        // inside the box is untouched
        assert_eq!(*img.get_pixel(240, 300), image::Rgb([0, 0, 0]));
        // label bar above the box, with black text dots on it
        let bar: Vec<_> = (158..300).map(|x| *img.get_pixel(x, 225)).collect();
        assert!(bar.contains(&green) && bar.contains(&image::Rgb([0, 0, 0])));
    }

    #[test]
    fn label_moves_below_a_box_at_the_top_edge_and_stays_in_the_frame() {
        let mut img = RgbImage::from_pixel(320, 240, image::Rgb([0, 0, 0]));
        let bbox = BBox {
            x: 0.9,
            y: 0.0,
            w: 0.1,
            h: 0.2,
        };
        draw(&mut img, &[Annotation::for_face(bbox, None, "sad", 0.5)]);
        let blue = image::Rgb(label_color("sad"));
        // bar below the box (y = 48 + 1 ..), right-aligned to the frame edge
        assert_eq!(*img.get_pixel(319, 50), blue);
        // the outline's right and top edges are drawn inside the frame
        assert_eq!(*img.get_pixel(319, 10), blue);
        assert_eq!(*img.get_pixel(300, 0), blue);
        assert_eq!(*img.get_pixel(300, 10), image::Rgb([0, 0, 0]));
    }
}
