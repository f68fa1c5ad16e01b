//! The nix.conf grammar and includes; applies [`Source`]s in order over the defaults.
//!
//! Grammar (mirrors `applyConfigInner` in Nix's `src/libutil/configuration.cc`):
//!
//! ```plain
//! file    = { line "\n" }
//! line    = [ content ] [ "#" comment ]
//! content = key "=" { word }          value = the words joined by single spaces
//!         | "include" path            a missing file is an error
//!         | "!include" path           a missing file is skipped
//! ```
//!
//! A line is split into tokens on space, tab and CR; the second token must be exactly `=`, so
//! `key=value` is an error, as in Nix. `extra-KEY = …` appends to a list setting. Relative
//! include paths resolve against the including file's directory (against the working directory
//! for `NSH_CONFIG`); includes nest at most [`MAX_INCLUDE_DEPTH`] deep. Unlike Nix, an
//! unknown setting is an error, not a warning.

use std::path::{Path, PathBuf};

use super::errors::{describe_line, excerpt, show_key};
use super::settings::{self, Setting};
use super::{Config, ConfigError, Source, permissions, suggest, validate};

/// Include nesting limit; stops include cycles long before the stack is at risk.
pub const MAX_INCLUDE_DEPTH: usize = 16;

/// Applies `sources` in order over the defaults. Does not check required settings (see
/// [`Config::validate`]); does fill `warnings`.
pub fn load_from(sources: &[Source]) -> Result<Config, ConfigError> {
    let mut loader = Loader::default();
    for source in sources {
        match source {
            Source::File { path, required } => {
                let shown = path.display().to_string();
                match read_file(path)? {
                    Some(text) => {
                        loader.config.files_read.push(shown);
                        loader.apply_text(&text, &Origin::File(path.clone()), 0)?;
                    }
                    None if *required => {
                        let source = std::io::Error::from(std::io::ErrorKind::NotFound);
                        return Err(ConfigError::Io {
                            path: shown,
                            source,
                        });
                    }
                    None => loader.config.files_missing.push(shown),
                }
            }
            Source::Text {
                text,
                origin,
                base_dir,
            } => {
                loader.config.files_read.push(origin.clone());
                let origin = Origin::Text {
                    name: origin.clone(),
                    base_dir: base_dir.clone(),
                };
                loader.apply_text(text, &origin, 0)?;
            }
        }
    }
    let mut config = loader.config;
    let mut seen = Vec::new();
    for path in loader.secret_files {
        if !seen.contains(&path) {
            config
                .warnings
                .extend(permissions::warn_if_world_readable(&path));
            seen.push(path);
        }
    }
    let unused = validate::unused_settings(&config);
    config.warnings.extend(unused);
    Ok(config)
}

/// `Ok(None)` if the file does not exist.
fn read_file(path: &Path) -> Result<Option<String>, ConfigError> {
    let io_err = |source| ConfigError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|e| {
            io_err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                e.utf8_error(),
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(e)),
    }
}

enum Origin {
    File(PathBuf),
    Text {
        name: String,
        base_dir: Option<PathBuf>,
    },
}

impl Origin {
    fn name(&self) -> String {
        match self {
            Origin::File(path) => path.display().to_string(),
            Origin::Text { name, .. } => name.clone(),
        }
    }

    fn resolve(&self, include: &str) -> PathBuf {
        let include = Path::new(include);
        let base = match self {
            Origin::File(path) => path.parent().map(Path::to_path_buf),
            Origin::Text { base_dir, .. } => base_dir.clone(),
        };
        match base {
            Some(base) if include.is_relative() => base.join(include),
            _ => include.to_path_buf(),
        }
    }

    /// Where line `at` of this origin is recorded in [`Config::origins`]: files by
    /// `path:line`, text sources by name.
    fn loc(&self, at: String) -> Loc {
        match self {
            Origin::File(path) => Loc {
                origin: at.clone(),
                at,
                file: Some(path.clone()),
            },
            Origin::Text { name, .. } => Loc {
                at,
                origin: name.clone(),
                file: None,
            },
        }
    }
}

/// Where a setting was made: `at` for messages, `origin` for [`Config::origins`].
struct Loc {
    at: String,
    origin: String,
    file: Option<PathBuf>,
}

#[derive(Default)]
struct Loader {
    config: Config,
    /// Files that set a secret setting, checked for permissions at the end.
    secret_files: Vec<PathBuf>,
}

impl Loader {
    fn apply_text(&mut self, text: &str, origin: &Origin, depth: usize) -> Result<(), ConfigError> {
        let name = origin.name();
        for (index, raw) in text.split('\n').enumerate() {
            let line = raw.split('#').next().unwrap_or_default();
            let tokens: Vec<&str> = line
                .split([' ', '\t', '\r'])
                .filter(|t| !t.is_empty())
                .collect();
            let Some(&first) = tokens.first() else {
                continue;
            };
            let at = format!("{name}:{}", index + 1);
            if first == "include" || first == "!include" {
                self.include(first, &tokens, line, origin, at, depth)?;
                continue;
            }
            if tokens.get(1) != Some(&"=") {
                let problem = if line.contains('=') {
                    format!(
                        "expected 'key = value' with spaces around '=', found {}",
                        describe_line(line)
                    )
                } else {
                    format!(
                        "expected 'key = value', 'include PATH' or '!include PATH', found {}",
                        describe_line(line)
                    )
                };
                return Err(ConfigError::Syntax { at, problem });
            }
            let value = tokens.get(2..).unwrap_or_default().join(" ");
            self.set(first, &value, &origin.loc(at))?;
        }
        Ok(())
    }

    /// `include PATH` / `!include PATH` (`keyword`) on line `at`.
    fn include(
        &mut self,
        keyword: &str,
        tokens: &[&str],
        line: &str,
        origin: &Origin,
        at: String,
        depth: usize,
    ) -> Result<(), ConfigError> {
        let [_, include] = tokens[..] else {
            let problem = format!(
                "expected '{keyword} PATH' with a single path, found {}",
                describe_line(line)
            );
            return Err(ConfigError::Syntax { at, problem });
        };
        let path = origin.resolve(include);
        let shown = path.display().to_string();
        if depth + 1 > MAX_INCLUDE_DEPTH {
            return Err(ConfigError::IncludeTooDeep { at, path: shown });
        }
        match read_file(&path)? {
            Some(text) => {
                self.config.files_read.push(shown);
                self.apply_text(&text, &Origin::File(path), depth + 1)
            }
            None if keyword == "!include" => {
                self.config.files_missing.push(shown);
                Ok(())
            }
            None => Err(ConfigError::IncludeNotFound { at, path: shown }),
        }
    }

    /// `key = value`: finds the setting's definition and lets it parse the value.
    fn set(&mut self, key: &str, value: &str, loc: &Loc) -> Result<(), ConfigError> {
        let (setting, append) = lookup(key, loc)?;
        (setting.apply)(&mut self.config, value, append).map_err(|expected| {
            ConfigError::BadValue {
                at: loc.at.clone(),
                key: key.into(),
                value: if setting.secret {
                    super::REDACTED.into()
                } else {
                    excerpt(value)
                },
                expected,
            }
        })?;
        if setting.secret {
            self.secret_files.extend(loc.file.clone());
        }
        self.config
            .origins
            .insert(setting.name.into(), loc.origin.clone());
        Ok(())
    }
}

/// The definition `key` names, and whether it had `extra-` (only list settings take it).
fn lookup(key: &str, loc: &Loc) -> Result<(&'static Setting, bool), ConfigError> {
    if let Some(setting) = settings::find(key) {
        return Ok((setting, false));
    }
    match key.strip_prefix("extra-").and_then(settings::find) {
        Some(setting) if setting.list => Ok((setting, true)),
        Some(_) => Err(ConfigError::NotAppendable {
            at: loc.at.clone(),
            key: key.into(),
            lists: settings::list_names(),
        }),
        None => Err(ConfigError::UnknownSetting {
            at: loc.at.clone(),
            key: show_key(key),
            hint: suggest::suggest(key)
                .map(|s| format!(" (did you mean '{s}'?)"))
                .unwrap_or_default(),
        }),
    }
}
