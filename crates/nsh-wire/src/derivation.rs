//! `.drv` files: the ATerm `Derive(...)` text Nix writes into the store.
//!
//! ```plain
//! Derive([("out","/nix/store/…-x","",""),…],      outputs: (name, path, hashAlgo, hash)
//!        [("/nix/store/…-d.drv",["out"]),…],      inputDrvs
//!        ["/nix/store/…-src"],                    inputSrcs
//!        "x86_64-linux","/bin/sh",["-c","…"],     system, builder, args
//!        [("key","value"),…])                     env
//! ```
//! One line, no spaces, no trailing newline. Strings escape only `"` `\` LF CR TAB
//! (`\"` `\\` `\n` `\r` `\t`); the reader maps `\X` to `X` for any other X, and every
//! other byte (UTF-8 included) is raw. Mirrors Nix `src/libstore/derivations.cc`
//! (`parseDerivation`, `printString`, `unparse`). Nix 2.8 through 2.34 write this same
//! form; `DrvWithVersion(...)` (dynamic derivations) is refused.
//!
//! Per-derivation scheduler attributes (`extraSlurmParams`, `pbsResources`,
//! `slurmNativeConstraints`) are JSON, read with [`Derivation::attr_json`] either from
//! the plain env or from `__json` (structured attrs).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One output: `path` is empty for floating content-addressed outputs; `hash_algo`
/// and `hash` are empty for input-addressed ones (`r:sha256` = recursive FOD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivationOutput {
    pub path: String,
    pub hash_algo: String,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derivation {
    pub outputs: BTreeMap<String, DerivationOutput>,
    pub input_drvs: BTreeMap<String, Vec<String>>,
    pub input_srcs: Vec<String>,
    pub system: String,
    pub builder: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DrvError {
    #[error("malformed derivation at byte {offset}: expected {expected}")]
    Syntax {
        offset: usize,
        expected: &'static str,
    },
    #[error("derivation string at byte {offset} is not valid UTF-8")]
    NotUtf8 { offset: usize },
    #[error(
        "unsupported derivation format at byte 0: '{got}' (only Derive(...) is supported; \
         dynamic derivations are not)"
    )]
    UnsupportedFormat { got: String },
    #[error("derivation has duplicate {what} '{key}' at byte {offset}")]
    Duplicate {
        what: &'static str,
        key: String,
        offset: usize,
    },
    #[error("trailing bytes after the derivation at byte {offset}")]
    Trailing { offset: usize },
    #[error("derivation attribute '{attr}' is not valid JSON")]
    Json {
        attr: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Derivation {
    /// Parses the ATerm text of a `.drv` file.
    pub fn parse(text: &[u8]) -> Result<Derivation, DrvError> {
        let mut p = Parser { s: text, pos: 0 };
        if !text.starts_with(b"Derive(") {
            let head = text.get(..text.len().min(32)).unwrap_or_default();
            let end = head.iter().position(|&c| c == b'(').unwrap_or(head.len());
            return Err(DrvError::UnsupportedFormat {
                got: String::from_utf8_lossy(head.get(..end).unwrap_or(head)).into_owned(),
            });
        }
        p.lit(b"Derive(", "'Derive('")?;

        let mut outputs = BTreeMap::new();
        p.list(|p| {
            let at = p.pos;
            p.lit(b"(", "'('")?;
            let name = p.string()?;
            p.lit(b",", "','")?;
            let path = p.string()?;
            p.lit(b",", "','")?;
            let hash_algo = p.string()?;
            p.lit(b",", "','")?;
            let hash = p.string()?;
            p.lit(b")", "')'")?;
            insert_unique(
                &mut outputs,
                name,
                DerivationOutput {
                    path,
                    hash_algo,
                    hash,
                },
                "output",
                at,
            )
        })?;
        p.lit(b",", "','")?;

        let mut input_drvs = BTreeMap::new();
        p.list(|p| {
            let at = p.pos;
            p.lit(b"(", "'('")?;
            let path = p.string()?;
            p.lit(b",", "','")?;
            let outs = p.string_list()?;
            p.lit(b")", "')'")?;
            insert_unique(&mut input_drvs, path, outs, "input derivation", at)
        })?;
        p.lit(b",", "','")?;
        let input_srcs = p.string_list()?;
        p.lit(b",", "','")?;
        let system = p.string()?;
        p.lit(b",", "','")?;
        let builder = p.string()?;
        p.lit(b",", "','")?;
        let args = p.string_list()?;
        p.lit(b",", "','")?;

        let mut env = BTreeMap::new();
        p.list(|p| {
            let at = p.pos;
            p.lit(b"(", "'('")?;
            let k = p.string()?;
            p.lit(b",", "','")?;
            let v = p.string()?;
            p.lit(b")", "')'")?;
            insert_unique(&mut env, k, v, "environment variable", at)
        })?;
        p.lit(b")", "')'")?;
        if p.pos != text.len() {
            return Err(DrvError::Trailing { offset: p.pos });
        }
        Ok(Derivation {
            outputs,
            input_drvs,
            input_srcs,
            system,
            builder,
            args,
            env,
        })
    }

    /// Prints the ATerm form, byte-identical to what Nix writes for the same data.
    pub fn to_aterm(&self) -> String {
        let mut s = String::from("Derive([");
        for (i, (name, o)) in self.outputs.iter().enumerate() {
            sep(&mut s, i);
            s.push('(');
            quote_all(&mut s, &[name, &o.path, &o.hash_algo, &o.hash]);
            s.push(')');
        }
        s.push_str("],[");
        for (i, (path, outs)) in self.input_drvs.iter().enumerate() {
            sep(&mut s, i);
            s.push('(');
            quote(&mut s, path);
            s.push(',');
            quote_list(&mut s, outs);
            s.push(')');
        }
        s.push_str("],");
        quote_list(&mut s, &self.input_srcs);
        s.push(',');
        quote(&mut s, &self.system);
        s.push(',');
        quote(&mut s, &self.builder);
        s.push(',');
        quote_list(&mut s, &self.args);
        s.push_str(",[");
        for (i, (k, v)) in self.env.iter().enumerate() {
            sep(&mut s, i);
            s.push('(');
            quote_all(&mut s, &[k, v]);
            s.push(')');
        }
        s.push_str("])");
        s
    }

    /// The structured attributes (`__json`), if the derivation has them.
    pub fn structured_attrs(&self) -> Option<Result<serde_json::Value, DrvError>> {
        let raw = self.env.get("__json")?;
        Some(serde_json::from_str(raw).map_err(|source| DrvError::Json {
            attr: "__json".to_owned(),
            source,
        }))
    }

    /// Attribute `name` as JSON: from `__json` (the value itself, or, if it is a
    /// string, that string parsed as JSON) or from the plain env (parsed as JSON).
    /// `Ok(None)` if the attribute is absent.
    pub fn attr_json(&self, name: &str) -> Result<Option<serde_json::Value>, DrvError> {
        let parse = |s: &str| {
            serde_json::from_str(s).map_err(|source| DrvError::Json {
                attr: name.to_owned(),
                source,
            })
        };
        match self.structured_attrs() {
            Some(attrs) => match attrs?.get(name) {
                None => Ok(None),
                Some(serde_json::Value::String(s)) => parse(s).map(Some),
                Some(v) => Ok(Some(v.clone())),
            },
            None => self.env.get(name).map(|s| parse(s)).transpose(),
        }
    }

    /// `requiredSystemFeatures`: the list under `__json`, or the env value split on
    /// whitespace. Malformed structured attrs give an empty list.
    pub fn required_system_features(&self) -> Vec<String> {
        const KEY: &str = "requiredSystemFeatures";
        match self.structured_attrs() {
            Some(Ok(attrs)) => match attrs.get(KEY) {
                Some(serde_json::Value::Array(items)) => items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                Some(serde_json::Value::String(s)) => {
                    s.split_whitespace().map(str::to_owned).collect()
                }
                _ => Vec::new(),
            },
            Some(Err(_)) => Vec::new(),
            None => self
                .env
                .get(KEY)
                .map(|s| s.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
        }
    }

    /// Whether any output is floating content-addressed (path unknown until built).
    pub fn is_floating_ca(&self) -> bool {
        self.outputs
            .values()
            .any(|o| o.path.is_empty() && !o.hash_algo.is_empty())
    }

    /// The hash output `name` must have, if it is a fixed output (`Ok(None)`: not one, or
    /// no such output).
    pub fn fixed_output(
        &self,
        name: &str,
    ) -> Result<Option<crate::fixed_output::FixedOutputHash>, crate::fixed_output::FodError> {
        match self.outputs.get(name) {
            Some(o) if !o.path.is_empty() => {
                crate::fixed_output::FixedOutputHash::from_drv_output(&o.hash_algo, &o.hash)
            }
            _ => Ok(None),
        }
    }

    /// Whether this is a fixed-output derivation (every output has a known hash).
    pub fn is_fixed_output(&self) -> bool {
        !self.outputs.is_empty()
            && self
                .outputs
                .values()
                .all(|o| !o.path.is_empty() && !o.hash.is_empty())
    }
}

fn insert_unique<V>(
    map: &mut BTreeMap<String, V>,
    key: String,
    value: V,
    what: &'static str,
    offset: usize,
) -> Result<(), DrvError> {
    if map.contains_key(&key) {
        return Err(DrvError::Duplicate {
            what,
            key: key.chars().take(256).collect(),
            offset,
        });
    }
    map.insert(key, value);
    Ok(())
}

fn sep(s: &mut String, i: usize) {
    if i > 0 {
        s.push(',');
    }
}

fn quote(s: &mut String, v: &str) {
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c => {
                let _ = s.write_char(c);
            }
        }
    }
    s.push('"');
}

fn quote_all(s: &mut String, vs: &[&str]) {
    for (i, v) in vs.iter().enumerate() {
        sep(s, i);
        quote(s, v);
    }
}

fn quote_list(s: &mut String, vs: &[String]) {
    s.push('[');
    for (i, v) in vs.iter().enumerate() {
        sep(s, i);
        quote(s, v);
    }
    s.push(']');
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, expected: &'static str) -> DrvError {
        DrvError::Syntax {
            offset: self.pos,
            expected,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn lit(&mut self, lit: &[u8], expected: &'static str) -> Result<(), DrvError> {
        match self.s.get(self.pos..) {
            Some(rest) if rest.starts_with(lit) => {
                self.pos += lit.len();
                Ok(())
            }
            _ => Err(self.err(expected)),
        }
    }

    fn string(&mut self) -> Result<String, DrvError> {
        self.lit(b"\"", "'\"'")?;
        let start = self.pos;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.err("closing '\"'")),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = self.peek().ok_or_else(|| self.err("escaped character"))?;
                    out.push(match c {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        other => other,
                    });
                    self.pos += 1;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        String::from_utf8(out).map_err(|_| DrvError::NotUtf8 { offset: start })
    }

    /// `[item,item,…]`
    fn list(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<(), DrvError>,
    ) -> Result<(), DrvError> {
        self.lit(b"[", "'['")?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            item(self)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.err("',' or ']'")),
            }
        }
    }

    fn string_list(&mut self) -> Result<Vec<String>, DrvError> {
        let mut v = Vec::new();
        self.list(|p| {
            v.push(p.string()?);
            Ok(())
        })?;
        Ok(v)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const SIMPLE: &str = r#"Derive([("out","/nix/store/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-x","","")],[("/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-d.drv",["dev","out"])],["/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-src"],"x86_64-linux","/bin/sh",["-c","echo \"hi\"\n\\"],[("builder","/bin/sh"),("extraSlurmParams","{\"x\":\"a\\\"b\"}"),("out","/nix/store/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-x"),("requiredSystemFeatures","kvm  big-parallel")])"#;

    #[test]
    fn parse_and_print() {
        let d = Derivation::parse(SIMPLE.as_bytes()).unwrap();
        assert_eq!(
            d.outputs["out"].path,
            "/nix/store/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-x"
        );
        assert_eq!(
            d.input_drvs["/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-d.drv"],
            ["dev", "out"]
        );
        assert_eq!(d.args, ["-c", "echo \"hi\"\n\\"]);
        assert_eq!(d.to_aterm(), SIMPLE);
        assert_eq!(
            d.attr_json("extraSlurmParams").unwrap().unwrap(),
            serde_json::json!({"x": "a\"b"})
        );
        assert_eq!(d.attr_json("missing").unwrap(), None);
        assert_eq!(d.required_system_features(), ["kvm", "big-parallel"]);
        assert!(!d.is_floating_ca());
        assert!(!d.is_fixed_output());
    }

    #[test]
    fn malformed_json_names_attr() {
        let mut d = Derivation::parse(SIMPLE.as_bytes()).unwrap();
        d.env.insert("pbsResources".into(), "{nope".into());
        let e = d.attr_json("pbsResources").unwrap_err();
        assert!(e.to_string().contains("pbsResources"), "{e}");
    }

    #[test]
    fn structured_attrs() {
        let mut d = Derivation::parse(SIMPLE.as_bytes()).unwrap();
        d.env.insert(
            "__json".into(),
            r#"{"extraSlurmParams":{"mem":"1G"},"pbsResources":"{\"n\":1}","requiredSystemFeatures":["nsh","kvm"],"bad":"{"}"#.into(),
        );
        assert_eq!(
            d.attr_json("extraSlurmParams").unwrap().unwrap(),
            serde_json::json!({"mem": "1G"})
        );
        assert_eq!(
            d.attr_json("pbsResources").unwrap().unwrap(),
            serde_json::json!({"n": 1})
        );
        assert!(
            d.attr_json("bad")
                .unwrap_err()
                .to_string()
                .contains("'bad'")
        );
        assert_eq!(d.required_system_features(), ["nsh", "kvm"]);
    }

    #[test]
    fn floating_ca() {
        let t = r#"Derive([("out","","r:sha256","")],[],[],"x86_64-linux","/bin/sh",[],[])"#;
        assert!(Derivation::parse(t.as_bytes()).unwrap().is_floating_ca());
    }

    #[test]
    fn rejects() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"DrvWithVersion(\"xp-dyn-drv\",[],[],[],\"\",\"\",[],[])",
                "DrvWithVersion",
            ),
            (b"", "unsupported"),
            (b"Derive([],[],[],\"x\",\"b\",[],[])\n", "trailing"),
            (b"Derive([],[],[],\"x\",\"b\",[],[]", "byte 29"),
            (b"Derive([],[],[],\"x,\"b\",[],[])", "byte"),
            (b"Derive([],[],[],\"\xff\",\"b\",[],[])", "UTF-8"),
            (
                b"Derive([],[],[],\"x\",\"b\",[],[(\"a\",\"1\"),(\"a\",\"2\")])",
                "duplicate",
            ),
            (b"Derive([],[],[],\"x\",\"b\",[,],[])", "byte"),
            (b"Derive([],[],[],\"x\",\"b\\", "byte"),
        ];
        for (text, needle) in cases {
            let e = Derivation::parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{e:?} lacks {needle:?}");
        }
    }
}
