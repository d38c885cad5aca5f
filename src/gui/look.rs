//! Shared pieces of both windows: fonts, sizes, colours, and small view helpers.

use iced::widget::{container, text};
use iced::{Color, Element, Font, Length, Theme};

use mynalink_link::FlowError;

use super::i18n::{error_text, Lang};

/// A Japanese default font: without it, kanji fall back per script and may be drawn in
/// Chinese glyph forms. Debian: fonts-noto-cjk.
pub const JAPANESE_FONT: Font = Font::with_name("Noto Sans CJK JP");

pub const STAFF_TEXT: f32 = 18.0;
pub const KIOSK_TEXT: f32 = 30.0;

pub fn settings(text_size: f32) -> iced::Settings {
    iced::Settings {
        id: Some("mynalink".into()),
        default_font: JAPANESE_FONT,
        default_text_size: text_size.into(),
        antialiasing: true,
        ..iced::Settings::default()
    }
}

pub const WARNING: Color = Color::from_rgb(0.60, 0.35, 0.0);
pub const DANGER: Color = Color::from_rgb(0.70, 0.05, 0.05);
pub const SUCCESS: Color = Color::from_rgb(0.05, 0.45, 0.15);
pub const MUTED: Color = Color::from_rgb(0.35, 0.35, 0.38);

/// A boxed message in one colour: errors, warnings, outcomes.
pub fn notice<'a, M: 'a>(content: impl Into<String>, color: Color) -> Element<'a, M> {
    container(text(content.into()).color(color))
        .padding(12)
        .width(Length::Fill)
        .style(move |_theme: &Theme| container::Style {
            border: iced::Border {
                color,
                width: 2.0,
                radius: 6.0.into(),
            },
            background: Some(iced::Background::Color(Color { a: 0.06, ..color })),
            ..container::Style::default()
        })
        .into()
}

pub fn error<'a, M: 'a>(lang: Lang, e: &FlowError) -> Element<'a, M> {
    notice(error_text(lang, e), DANGER)
}

pub fn warning<'a, M: 'a>(content: impl Into<String>) -> Element<'a, M> {
    notice(content, WARNING)
}

pub fn heading<'a, M: 'a>(content: impl Into<String>, size: f32) -> Element<'a, M> {
    text(content.into()).size(size).into()
}

/// Paragraph text with `｜base《reading》` ruby marks: the kiosk shows the reading after the
/// word in small type; the staff window shows the base only.
pub fn ruby_segments(source: &str) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    let mut rest = source;
    while let Some(bar) = rest.find('｜') {
        let after = &rest[bar + '｜'.len_utf8()..];
        let (Some(open), Some(close)) = (after.find('《'), after.find('》')) else {
            break;
        };
        if close < open {
            break;
        }
        let base = &after[..open];
        let reading = &after[open + '《'.len_utf8()..close];
        if reading.is_empty() {
            // "｜…《》" marks nothing (e.g. text explaining the marks): shown as written.
            out.push((rest[..bar + '｜'.len_utf8()].to_string(), None));
            rest = after;
            continue;
        }
        if bar > 0 {
            out.push((rest[..bar].to_string(), None));
        }
        out.push((base.to_string(), Some(reading.to_string())));
        rest = &after[close + '》'.len_utf8()..];
    }
    if !rest.is_empty() {
        out.push((rest.to_string(), None));
    }
    out
}

/// The text without ruby marks.
pub fn plain(source: &str) -> String {
    ruby_segments(source)
        .into_iter()
        .map(|(base, _)| base)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruby_marks_split_into_base_and_reading() {
        let segments =
            ruby_segments("次に｜署名《しょめい》用の｜暗証番号《あんしょうばんごう》です");
        assert_eq!(
            segments,
            vec![
                ("次に".to_string(), None),
                ("署名".to_string(), Some("しょめい".to_string())),
                ("用の".to_string(), None),
                (
                    "暗証番号".to_string(),
                    Some("あんしょうばんごう".to_string())
                ),
                ("です".to_string(), None),
            ]
        );
        assert_eq!(plain("｜署名《しょめい》"), "署名");
        // Unbalanced marks are shown as they are.
        assert_eq!(plain("a｜b《c"), "a｜b《c");
    }
}
