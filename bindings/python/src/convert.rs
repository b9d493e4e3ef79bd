//! Python values <-> JSON: config goes to the core as JSON, every dict result comes back
//! from JSON.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};

use pyo3::exceptions::PyTypeError;

use crate::errors::{config_error, to_pyerr};

/// Converts a config value. `key` names it in errors (`memory_limit`, `thresholds[0]`).
pub fn py_to_json(key: &str, obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    py_to_json_for("MemoryManager", key, obj)
}

/// [`py_to_json`] for the config of `component` (`"MemoryPool"`), named in errors.
pub fn py_to_json_for(component: &str, key: &str, obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    let py = obj.py();
    if obj.is_none() {
        return Ok(Value::Null);
    }
    // bool before int: True is an int in Python.
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::from(i));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(Value::from(u));
        }
        return Err(config_error(py, format!("{component} config: invalid value for '{key}': {obj} is out of range")));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let x = f.value();
        return Number::from_f64(x).map(Value::Number).ok_or_else(|| {
            config_error(py, format!("{component} config: invalid value for '{key}': {x} is not finite"))
        });
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut out = Vec::new();
        for (i, item) in obj.try_iter()?.enumerate() {
            out.push(py_to_json_for(component, &format!("{key}[{i}]"), &item?)?);
        }
        return Ok(Value::Array(out));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut out = Map::new();
        for (k, v) in d.iter() {
            let k: String = k.extract().map_err(|_| {
                config_error(
                    py,
                    format!("{component} config: keys inside '{key}' must be strings, got {}", type_name(&k)),
                )
            })?;
            let v = py_to_json_for(component, &format!("{key}.{k}"), &v)?;
            out.insert(k, v);
        }
        return Ok(Value::Object(out));
    }
    Err(config_error(
        py,
        format!(
            "{component} config: invalid value for '{key}': a Python {} cannot be used in a config \
             (expected a number, string, bool, None, list or dict)",
            type_name(obj)
        ),
    ))
}

/// The JSON value as a Python object: dicts, lists, str, int, float, bool, None.
pub fn json_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(a) => {
            let list = PyList::empty(py);
            for item in a {
                list.append(json_to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(m) => {
            let dict = PyDict::new(py);
            for (k, item) in m {
                dict.set_item(k, json_to_py(py, item)?)?;
            }
            dict.into_any()
        }
    })
}

/// A core result (usage, report, stats) as a Python dict.
/// Takes `serde_json::to_value(&result)`.
pub fn to_py(py: Python<'_>, value: serde_json::Result<Value>) -> PyResult<Bound<'_, PyAny>> {
    let v = value.map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(format!("cannot serialise a result: {e}")))?;
    json_to_py(py, &v)
}

/// `type(obj).__name__`, for messages.
pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "object".into())
}

/// Merges a binding's `config` dict and its keyword arguments into one list of entries, in
/// order, and checks the names against the core's keys plus the binding's own (`known`), with
/// the core's "did you mean" for a typo. A key given both ways is a `ConfigError`.
pub fn config_entries<'py>(
    py: Python<'py>,
    component: &'static str,
    config: Option<&Bound<'py, PyAny>>,
    kwargs: Option<&Bound<'py, PyDict>>,
    known: &[&str],
) -> PyResult<Vec<(String, Bound<'py, PyAny>)>> {
    let mut entries: Vec<(String, Bound<'py, PyAny>)> = Vec::new();
    if let Some(c) = config.filter(|c| !c.is_none()) {
        let d = c.cast::<PyDict>().map_err(|_| {
            PyTypeError::new_err(format!(
                "{component}() argument 'config' must be a dict or None, got {}",
                type_name(c)
            ))
        })?;
        for (k, v) in d.iter() {
            let k: String = k.extract().map_err(|_| {
                config_error(py, format!("{component} config: keys must be strings, got {} {}", type_name(&k), k))
            })?;
            entries.push((k, v));
        }
    }
    if let Some(kw) = kwargs {
        for (k, v) in kw.iter() {
            let k: String = k.extract()?;
            if entries.iter().any(|(e, _)| *e == k) {
                return Err(config_error(
                    py,
                    format!("{component} config: '{k}' is given both in the config dict and as a keyword argument"),
                ));
            }
            entries.push((k, v));
        }
    }
    let names = serde_json::Value::Object(entries.iter().map(|(k, _)| (k.clone(), serde_json::Value::Null)).collect());
    memwarden_core::config::ConfigReader::new(component, &names, known).map_err(|e| to_pyerr(py, e, None))?;
    Ok(entries)
}
