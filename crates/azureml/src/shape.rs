//! Checks that a 2xx ARM body has the shape the contract gives it before anything reads it, so a
//! proxy's HTML page, an empty array or a half body is a named error, never a panic or a silent
//! "done". Shapes ([AML §2]): a resource is an object with `name` and a `properties` object
//! (§2.1, `properties` REQUIRED); a list page is an object whose `value` is an array (§1); an
//! operation status is an object with a string `status` (§3 "Operation-status body").

use serde_json::Value;
use url::Url;

use super::client::ArmResponse;
use super::error::{AzureMlError, excerpt};

/// Longest piece of a bad body quoted in the error.
const QUOTE: usize = 120;

/// What a body should be, for the message: "a deployment object", "an operation status object".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    Endpoint,
    Deployment,
    OperationStatus,
    Page,
}

impl Shape {
    pub fn noun(self) -> &'static str {
        match self {
            Shape::Endpoint => "an endpoint object",
            Shape::Deployment => "a deployment object",
            Shape::OperationStatus => "an operation status object",
            Shape::Page => "a list page object",
        }
    }

    /// The resource a URL names: `…/deployments/{d}` is a deployment, anything else an endpoint.
    pub fn of_resource(url: &Url) -> Shape {
        let segments: Vec<&str> = url.path_segments().map(|s| s.collect()).unwrap_or_default();
        match segments.as_slice() {
            [.., "deployments", _] => Shape::Deployment,
            _ => Shape::Endpoint,
        }
    }
}

fn malformed(status: u16, shape: Shape, detail: String) -> AzureMlError {
    AzureMlError::Malformed {
        status,
        what: shape.noun().to_string(),
        detail,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses the body and checks it against `shape`; the checked JSON on success.
pub(crate) fn checked(resp: &ArmResponse, shape: Shape) -> Result<Value, AzureMlError> {
    let status = resp.status.as_u16();
    let value: Value = serde_json::from_slice(&resp.body).map_err(|e| {
        let text = String::from_utf8_lossy(&resp.body);
        malformed(
            status,
            shape,
            format!("not JSON ({e}): {:?}", excerpt(&text, QUOTE)),
        )
    })?;
    check(&value, shape).map_err(|detail| malformed(status, shape, detail))?;
    Ok(value)
}

/// Why `value` is not a `shape`, or Ok.
pub(crate) fn check(value: &Value, shape: Shape) -> Result<(), String> {
    let Value::Object(map) = value else {
        return Err(format!(
            "expected a JSON object, got {}: {}",
            kind(value),
            excerpt(&value.to_string(), QUOTE)
        ));
    };
    let field = |name: &str, want: fn(&Value) -> bool, what: &str| match map.get(name) {
        Some(v) if want(v) => Ok(()),
        Some(v) => Err(format!("`{name}` is {}, expected {what}", kind(v))),
        None => Err(format!("required field `{name}` is missing")),
    };
    match shape {
        Shape::Endpoint | Shape::Deployment => {
            field("name", Value::is_string, "a string")?;
            field("properties", Value::is_object, "an object")?;
            match map["properties"].get("provisioningState") {
                None | Some(Value::String(_)) => Ok(()),
                Some(v) => Err(format!(
                    "`properties.provisioningState` is {}, expected a string",
                    kind(v)
                )),
            }
        }
        Shape::OperationStatus => field("status", Value::is_string, "a string"),
        Shape::Page => {
            match map.get("value") {
                Some(Value::Array(items)) => items
                    .iter()
                    .position(|item| !item.is_object())
                    .map_or(Ok(()), |i| {
                        Err(format!(
                            "`value[{i}]` is {}, expected an object",
                            kind(&items[i])
                        ))
                    }),
                Some(v) => Err(format!("`value` is {}, expected an array", kind(v))),
                None => Err("required field `value` is missing".to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resources_need_a_name_and_a_properties_object() {
        assert!(check(&json!({"name": "e", "properties": {}}), Shape::Endpoint).is_ok());
        let err = check(&json!({}), Shape::Deployment).unwrap_err();
        assert_eq!(err, "required field `name` is missing");
        let err = check(&json!([]), Shape::Deployment).unwrap_err();
        assert!(
            err.starts_with("expected a JSON object, got an array"),
            "{err}"
        );
        let err = check(&json!({"name": "d", "properties": []}), Shape::Deployment).unwrap_err();
        assert_eq!(err, "`properties` is an array, expected an object");
    }

    #[test]
    fn operation_status_needs_a_string_status_and_pages_an_array_of_objects() {
        assert!(check(&json!({"status": "InProgress"}), Shape::OperationStatus).is_ok());
        assert!(check(&json!({}), Shape::OperationStatus).is_err());
        assert!(check(&json!({"value": []}), Shape::Page).is_ok());
        assert!(check(&json!({"value": [1]}), Shape::Page).is_err());
        assert!(check(&json!([]), Shape::Page).is_err());
    }

    #[test]
    fn a_resource_url_names_its_kind() {
        let d = Url::parse("http://x/a/onlineEndpoints/e/deployments/green?api-version=1").unwrap();
        assert_eq!(Shape::of_resource(&d), Shape::Deployment);
        let e = Url::parse("http://x/a/onlineEndpoints/e?api-version=1").unwrap();
        assert_eq!(Shape::of_resource(&e), Shape::Endpoint);
    }
}
