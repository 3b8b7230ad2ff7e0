// SPDX-License-Identifier: GPL-2.0
//! What commands print: `key=value` lines by default, JSON with --json.
//! Records are flat; a list field becomes one line per item (each item's
//! pairs separated by spaces), or a JSON array of objects.

use std::fmt::Write;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Num(u64),
    Int(i64),
    List(Vec<Record>),
}

/// Ordered key/value pairs: the order is the order of the lines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record(pub Vec<(&'static str, Value)>);

impl Record {
    pub fn new() -> Self {
        Record(Vec::new())
    }

    pub fn str(mut self, key: &'static str, value: impl ToString) -> Self {
        self.0.push((key, Value::Str(value.to_string())));
        self
    }

    pub fn num(mut self, key: &'static str, value: impl Into<u64>) -> Self {
        self.0.push((key, Value::Num(value.into())));
        self
    }

    pub fn int(mut self, key: &'static str, value: impl Into<i64>) -> Self {
        self.0.push((key, Value::Int(value.into())));
        self
    }

    pub fn list(mut self, key: &'static str, items: Vec<Record>) -> Self {
        self.0.push((key, Value::List(items)));
        self
    }
}

/// A value as it appears after `=`: line breaks escaped so that one value
/// stays on one line.
fn plain(v: &Value) -> String {
    match v {
        Value::Str(s) => s.replace('\\', "\\\\").replace('\n', "\\n"),
        Value::Num(n) => n.to_string(),
        Value::Int(n) => n.to_string(),
        Value::List(items) => items.len().to_string(),
    }
}

/// All pairs of `r` on one line, separated by spaces.
pub fn one_line(r: &Record) -> String {
    let pairs: Vec<String> =
        r.0.iter()
            .map(|(k, v)| format!("{k}={}", plain(v)))
            .collect();
    pairs.join(" ") + "\n"
}

/// One `key=value` line per field; a list field, one line per item.
pub fn key_value(r: &Record) -> String {
    let mut out = String::new();
    for (k, v) in &r.0 {
        match v {
            Value::List(items) => items.iter().for_each(|i| out.push_str(&one_line(i))),
            _ => {
                let _ = writeln!(out, "{k}={}", plain(v));
            }
        }
    }
    out
}

fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_object(r: &Record, out: &mut String) {
    out.push('{');
    for (i, (k, v)) in r.0.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(k, out);
        out.push(':');
        match v {
            Value::Str(s) => json_string(s, out),
            Value::Num(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Value::List(items) => {
                out.push('[');
                for (j, item) in items.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    json_object(item, out);
                }
                out.push(']');
            }
        }
    }
    out.push('}');
}

/// `r` as one JSON object on one line.
pub fn json(r: &Record) -> String {
    let mut out = String::new();
    json_object(r, &mut out);
    out.push('\n');
    out
}

/// Prints records to standard output in the format asked for.
pub struct Printer {
    pub json: bool,
}

impl Printer {
    /// A command's result.
    pub fn record(&self, r: &Record) {
        print!("{}", if self.json { json(r) } else { key_value(r) });
    }

    /// One entry of a stream (events): one line either way.
    pub fn line(&self, r: &Record) {
        print!("{}", if self.json { json(r) } else { one_line(r) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record::new()
            .num("block_size", 65536u32)
            .int("error_code", -28)
            .str("image", "/dev/blksnap-image_252:0")
            .list(
                "extents",
                vec![Record::new().num("offset", 0u64).num("length", 512u64)],
            )
    }

    #[test]
    fn key_value_lines() {
        assert_eq!(
            key_value(&sample()),
            "block_size=65536\nerror_code=-28\nimage=/dev/blksnap-image_252:0\noffset=0 length=512\n"
        );
    }

    #[test]
    fn json_object_with_a_list() {
        assert_eq!(
            json(&sample()),
            "{\"block_size\":65536,\"error_code\":-28,\"image\":\"/dev/blksnap-image_252:0\",\
             \"extents\":[{\"offset\":0,\"length\":512}]}\n"
        );
    }

    #[test]
    fn json_escapes_strings() {
        let r = Record::new().str("path", "a\"b\\c\nd\u{1}");
        assert_eq!(json(&r), "{\"path\":\"a\\\"b\\\\c\\nd\\u0001\"}\n");
        assert_eq!(key_value(&r), "path=a\"b\\\\c\\nd\u{1}\n");
    }

    #[test]
    fn empty_list_prints_no_lines() {
        let r = Record::new().list("snapshots", vec![]);
        assert_eq!(key_value(&r), "");
        assert_eq!(json(&r), "{\"snapshots\":[]}\n");
    }
}
