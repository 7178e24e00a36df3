//! The page, its script, its style and its icon, compiled into fluxctl:
//! the dashboard loads nothing from anywhere else (its Content-Security-
//! Policy allows this origin only). The script is plain JavaScript that
//! builds the page with `textContent` (never HTML from data) and draws its
//! charts as SVG.

pub const INDEX_HTML: &str = include_str!("assets/index.html");
pub const APP_JS: &str = include_str!("assets/app.js");
pub const STYLE_CSS: &str = include_str!("assets/style.css");
pub const FAVICON_SVG: &str = include_str!("assets/favicon.svg");
