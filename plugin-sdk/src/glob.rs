//! Shell-style globs for model and provider names (`gpt-4o*`, `*-mini`, `claude-?-*`),
//! as virtual keys and routing rules use them. `*` matches any run of characters, `?` one
//! character, `[abc]` one of a set; everything else matches itself.
//!
//! ```
//! use aigw_plugin_sdk::glob::Glob;
//! let g = Glob::new("gpt-4o*").unwrap();
//! assert!(g.matches("gpt-4o-mini") && !g.matches("gpt-4.1"));
//! assert!(aigw_plugin_sdk::glob::matches_any(&["o3*", "*-mini"], "gpt-4o-mini"));
//! ```

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(::glob::Pattern);

impl Glob {
    /// Compiles `pattern`; the error names the pattern and what is wrong.
    ///
    /// ```
    /// assert!(aigw_plugin_sdk::glob::Glob::new("gpt-[4").is_err());
    /// ```
    pub fn new(pattern: &str) -> Result<Glob, String> {
        ::glob::Pattern::new(pattern)
            .map(Glob)
            .map_err(|e| format!("'{pattern}' is not a valid glob: {}", e.msg))
    }

    /// Whether `text` matches (case-sensitive).
    ///
    /// ```
    /// assert!(aigw_plugin_sdk::glob::Glob::new("*").unwrap().matches(""));
    /// ```
    pub fn matches(&self, text: &str) -> bool {
        self.0.matches(text)
    }

    /// The pattern as written.
    ///
    /// ```
    /// assert_eq!(aigw_plugin_sdk::glob::Glob::new("a*").unwrap().as_str(), "a*");
    /// ```
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// Whether `text` matches one of `patterns`; an invalid pattern matches nothing.
///
/// ```
/// assert!(!aigw_plugin_sdk::glob::matches_any(&["gpt-[4"], "gpt-4"));
/// ```
pub fn matches_any<S: AsRef<str>>(patterns: &[S], text: &str) -> bool {
    patterns
        .iter()
        .any(|p| Glob::new(p.as_ref()).is_ok_and(|g| g.matches(text)))
}
