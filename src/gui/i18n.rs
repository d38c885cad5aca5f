//! The window's two languages. Every string is written as a (Japanese, English) pair at the
//! place it is shown, so neither can be forgotten; switching language is a state change that
//! keeps everything else.

use crate::config::Language;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Ja,
    En,
}

impl Lang {
    pub fn pick<'a>(self, ja: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Ja => ja,
            Lang::En => en,
        }
    }

    /// The same, for strings built at run time.
    pub fn choose(self, ja: String, en: String) -> String {
        match self {
            Lang::Ja => ja,
            Lang::En => en,
        }
    }

    pub fn toggled(self) -> Lang {
        match self {
            Lang::Ja => Lang::En,
            Lang::En => Lang::Ja,
        }
    }

    /// The label of the button that switches to the other language, in that language.
    pub fn switch_label(self) -> &'static str {
        match self {
            Lang::Ja => "English",
            Lang::En => "日本語",
        }
    }
}

impl From<Language> for Lang {
    fn from(language: Language) -> Lang {
        match language {
            Language::Ja => Lang::Ja,
            Language::En => Lang::En,
        }
    }
}

/// An error as shown in the window: the stable code, the message in the current language,
/// and what to do next.
pub fn error_text(lang: Lang, error: &mynalink_link::FlowError) -> String {
    let message = lang.pick(&error.message_ja, &error.message_en);
    format!("[{}] {message}", error.code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toggling_twice_returns_to_the_start() {
        assert_eq!(Lang::Ja.toggled(), Lang::En);
        assert_eq!(Lang::Ja.toggled().toggled(), Lang::Ja);
        assert_eq!(Lang::En.pick("は", "yes"), "yes");
        assert_eq!(Lang::Ja.switch_label(), "English");
    }
}
