//! The README's settings table is the definition list rendered: this test fails when they
//! disagree, and prints the table to paste.

use super::super::settings::SETTINGS;

const README: &str = include_str!("../../../../../README.md");

fn rendered() -> Vec<String> {
    SETTINGS
        .iter()
        .map(|s| format!("| `{}` | {} | {} |", s.name, s.default, s.doc))
        .collect()
}

/// The rows of the table under `### Settings`.
fn readme_rows() -> Vec<&'static str> {
    let section = README
        .split_once("\n### Settings\n")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    section
        .lines()
        .skip_while(|l| !l.starts_with("| setting |"))
        .skip(2) // the header and its `|---|` line
        .take_while(|l| l.starts_with('|'))
        .collect()
}

#[test]
fn readme_settings_table_matches_the_definitions() {
    let want = rendered();
    let have = readme_rows();
    assert!(
        want == have,
        "README.md's settings table differs from config/settings.rs; replace its rows with:\n{}",
        want.join("\n")
    );
}

#[test]
fn readme_names_every_extra_setting() {
    let syntax = README
        .split_once("\n### Syntax\n")
        .and_then(|(_, rest)| rest.split_once("\n###"))
        .map(|(syntax, _)| syntax)
        .unwrap_or_default();
    for s in SETTINGS.iter().filter(|s| s.list) {
        let extra = format!("`extra-{}`", s.name);
        assert!(
            syntax.contains(&extra),
            "README.md's Syntax section lacks {extra}"
        );
    }
}

#[test]
fn definitions_are_unique_and_well_formed() {
    let mut names: Vec<&str> = Vec::new();
    for s in SETTINGS {
        for name in std::iter::once(s.name).chain(s.aliases.iter().copied()) {
            assert!(!names.contains(&name), "{name} is defined twice");
            assert!(
                !name.starts_with("extra-"),
                "{name}: 'extra-' is the list prefix"
            );
            let kebab = name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            assert!(kebab, "{name} is not kebab-case");
            names.push(name);
        }
        for alias in s.aliases {
            assert!(
                s.doc.contains(&format!("`{alias}`")),
                "{}: document {alias}",
                s.name
            );
        }
        assert!(
            !s.doc.contains('|') && !s.default.contains('|'),
            "{}",
            s.name
        );
    }
}
