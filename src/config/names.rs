//! IoT Hub naming rules (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-identity-registry) and TOML → JSON conversion for tags and values.

/// Device ids: ≤128 ASCII alphanumerics plus `- : . + % _ # * ? ! ( ) , = @ ; $ '`.
pub(crate) fn check_device_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("device id is empty".into());
    }
    if id.len() > 128 {
        return Err(format!(
            "device id is {} characters long; IoT Hub allows 128",
            id.len()
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-:.+%_#*?!(),=@;$'".contains(*c)))
    {
        return Err(format!(
            "device id `{id}` contains {c:?}; IoT Hub allows letters, digits and - : . + % _ # * ? ! ( ) , = @ ; $ '"
        ));
    }
    Ok(())
}

/// Method names and method payload member names: printable US-ASCII except
/// `$ ( ) < > @ , ; : \ " / [ ] ? = { }`, space and tab.
pub(crate) fn check_method_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !c.is_ascii_graphic() || "$()<>@,;:\\\"/[]?={}".contains(*c))
    {
        return Err(format!(
            "{what} `{name}` contains {c:?}; IoT Hub method names are printable ASCII without spaces or $ ( ) < > @ , ; : \\ \" / [ ] ? = {{ }}"
        ));
    }
    Ok(())
}

/// Twin property and tag names: non-empty, ≤1 KB, no `.`, `$`, space or control characters.
pub(crate) fn check_twin_key(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if name.len() > 1024 {
        return Err(format!("{what} is longer than IoT Hub's 1 KB limit"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '.' || *c == '$' || *c == ' ' || c.is_control())
    {
        return Err(format!(
            "{what} `{name}` contains {c:?}; twin names cannot contain '.', '$', spaces or control characters"
        ));
    }
    Ok(())
}

/// TOML value → JSON value (datetimes become their RFC 3339 text).
pub(crate) fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(a) => J::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => J::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids() {
        assert!(check_device_id("door-01").is_ok());
        assert!(check_device_id("site:43/door").is_err());
        assert!(check_device_id(&"a".repeat(129)).is_err());
    }

    #[test]
    fn method_names() {
        assert!(check_method_name("method name", "lockDoor").is_ok());
        assert!(check_method_name("method name", "lock door").is_err());
        assert!(check_method_name("method name", "a/b").is_err());
    }

    #[test]
    fn twin_keys() {
        assert!(check_twin_key("property name", "doorState").is_ok());
        assert!(check_twin_key("property name", "door.state").is_err());
        assert!(check_twin_key("property name", "$version").is_err());
    }
}
