//! Reading a component's JSON config: unknown keys are errors with a
//! suggestion, and every bad value is named with its key.

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Parses a config given as JSON text. An empty string or `null` means "all defaults".
pub fn parse_json(component: &str, text: &str) -> Result<Value> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(text).map_err(|e| {
        Error::invalid_config(format!(
            "{component} config: malformed JSON at line {} column {}: {e}",
            e.line(),
            e.column()
        ))
    })
}

/// A checked view of one component's config object.
pub struct ConfigReader<'a> {
    component: &'static str,
    map: Option<&'a Map<String, Value>>,
}

impl<'a> ConfigReader<'a> {
    /// Checks that `value` is an object (or null) whose keys are all in `known`.
    pub fn new(component: &'static str, value: &'a Value, known: &[&str]) -> Result<Self> {
        let map = match value {
            Value::Null => None,
            Value::Object(m) => Some(m),
            other => {
                return Err(Error::invalid_config(format!(
                    "{component} config: expected an object of options, got {}",
                    describe(other)
                )));
            }
        };
        if let Some(m) = map {
            for key in m.keys() {
                if !known.contains(&key.as_str()) {
                    return Err(Error::invalid_config(unknown_key_message(component, key, known)));
                }
            }
        }
        Ok(ConfigReader { component, map })
    }

    /// The raw value of a key; `null` counts as absent.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.and_then(|m| m.get(key)).filter(|v| !v.is_null())
    }

    /// An error naming `key`, its value and what was expected.
    pub fn bad(&self, key: &str, expected: &str) -> Error {
        let got = self.get(key).map(describe).unwrap_or_else(|| "nothing".into());
        Error::invalid_config(format!(
            "{} config: invalid value for '{key}': expected {expected}, got {got}",
            self.component
        ))
    }

    /// A number accepted by `ok`, or `default` when absent.
    pub fn f64(&self, key: &str, default: f64, expected: &str, ok: impl Fn(f64) -> bool) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() && ok(x) => Ok(x),
                _ => Err(self.bad(key, expected)),
            },
        }
    }

    pub fn bool(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(self.bad(key, "true or false")),
        }
    }

    /// A whole non-negative number.
    pub fn u64(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| self.bad(key, "a whole number >= 0")),
        }
    }

    pub fn str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.bad(key, "a string")),
        }
    }

    /// One of a fixed set of strings.
    pub fn choice(&self, key: &str, default: &'a str, choices: &[&str]) -> Result<&'a str> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::String(s)) if choices.contains(&s.as_str()) => Ok(s),
            Some(_) => {
                let list: Vec<String> = choices.iter().map(|c| format!("'{c}'")).collect();
                Err(self.bad(key, &format!("one of {}", list.join(", "))))
            }
        }
    }

    pub fn component(&self) -> &'static str {
        self.component
    }
}

fn unknown_key_message(component: &str, key: &str, known: &[&str]) -> String {
    let best = known
        .iter()
        .map(|k| (strsim::jaro_winkler(key, k), *k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, k)) => format!("{component} config: unknown key '{key}'; did you mean '{k}'?"),
        None => format!("{component} config: unknown key '{key}'; known keys are {}", known.join(", ")),
    }
}

/// A short description of a JSON value for error messages: its text for scalars
/// (strings quoted), its type otherwise.
pub fn describe(v: &Value) -> String {
    match v {
        Value::String(s) if s.chars().count() > 60 => {
            format!("'{}...'", s.chars().take(60).collect::<String>())
        }
        Value::String(s) => format!("'{s}'"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_key_suggests_the_closest() {
        let v = json!({"max_sise": 3});
        let e = ConfigReader::new("MemoryPool", &v, &["max_size", "min_size"]).err().unwrap();
        assert_eq!(e.message(), "MemoryPool config: unknown key 'max_sise'; did you mean 'max_size'?");
    }

    #[test]
    fn bad_values_name_key_and_value() {
        let v = json!({"t": "high", "b": 1});
        let r = ConfigReader::new("X", &v, &["t", "b"]).unwrap();
        let e = r.f64("t", 0.5, "a number", |_| true).unwrap_err();
        assert!(e.message().contains("'t'") && e.message().contains("'high'"), "{e}");
        assert!(r.bool("b", false).unwrap_err().message().contains("got 1"));
    }

    #[test]
    fn malformed_json_and_non_objects() {
        assert!(parse_json("X", "{").unwrap_err().message().contains("malformed JSON"));
        assert_eq!(parse_json("X", "  ").unwrap(), Value::Null);
        let e = ConfigReader::new("X", &json!([1]), &[]).err().unwrap();
        assert!(e.message().contains("expected an object"));
    }
}
