//! Typed views of the ARM bodies flightdeck reads: only the fields the mapping uses, everything
//! else ignored. List pages are parsed straight from the body bytes into these structs, never
//! into a `serde_json::Value` tree (issue #11: the `Value` pages of a 1,000-endpoint workspace
//! were the agent's largest allocation).
//!
//! The types are as strict as the shape check ([`super::shape`], [AML §2.1]): an item and its
//! `properties` must be JSON objects (serde would otherwise take an array for a struct), `name`
//! a string, `provisioningState` a string when present. When the typed parse fails, the page
//! is read again the old way ([`legacy_page`]) so the error is the located one the shape check
//! words, and a page the old way accepts is never refused.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::client::ArmResponse;
use super::error::AzureMlError;
use super::shape::{self, Shape, checked};
use flightdeck_core::model::Weights;

/// A `T` that must be written as a JSON object: an array is refused (serde's derived structs
/// accept both).
#[derive(Debug)]
pub(crate) struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = Object<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Object<T>, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(Object)
            }
        }
        d.deserialize_map(ObjectVisitor(PhantomData))
    }
}

/// A string when present: `null` is refused (the shape check's rule for `provisioningState`).
fn present_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

/// A string, or `None` for anything else: a non-string `nextLink` ends the list, as it always did.
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        _ => None,
    })
}

/// An endpoint or deployment as read [AML §2.1]: `name` and `properties` are required.
#[derive(Debug, Deserialize)]
pub(crate) struct ArmResource<P> {
    pub name: String,
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub sku: Option<ArmSku>,
    pub properties: Object<P>,
}

pub(crate) type ArmEndpoint = ArmResource<EndpointProps>;
pub(crate) type ArmDeployment = ArmResource<DeploymentProps>;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct ArmSku {
    pub capacity: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct EndpointProps {
    pub auth_mode: Option<String>,
    pub description: Option<String>,
    pub traffic: Option<Weights>,
    pub mirror_traffic: Option<Weights>,
    pub public_network_access: Option<String>,
    pub scoring_uri: Option<String>,
    #[serde(deserialize_with = "present_string")]
    pub provisioning_state: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct DeploymentProps {
    pub description: Option<String>,
    pub model: Option<String>,
    pub model_mount_path: Option<String>,
    pub environment_id: Option<String>,
    pub environment_variables: Option<BTreeMap<String, String>>,
    pub code_configuration: Option<ArmCode>,
    pub instance_type: Option<String>,
    pub request_settings: Option<ArmRequestSettings>,
    pub liveness_probe: Option<ArmProbe>,
    pub readiness_probe: Option<ArmProbe>,
    #[serde(deserialize_with = "present_string")]
    pub provisioning_state: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct ArmCode {
    pub code_id: Option<String>,
    pub scoring_script: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct ArmRequestSettings {
    pub request_timeout: Option<String>,
    pub max_concurrent_requests_per_instance: Option<u32>,
    pub max_queue_wait: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct ArmProbe {
    pub initial_delay: Option<String>,
    pub period: Option<String>,
    pub timeout: Option<String>,
    pub failure_threshold: Option<u32>,
    pub success_threshold: Option<u32>,
}

/// One list page [AML §1]: `value` an array of objects, `nextLink` the next page if any.
#[derive(Debug, Deserialize)]
struct Page<T> {
    value: Vec<Object<T>>,
    #[serde(rename = "nextLink", default, deserialize_with = "lenient_string")]
    next_link: Option<String>,
}

/// The items of one page and the link to the next.
#[derive(Debug)]
pub(crate) struct ListPage<T> {
    pub items: Vec<T>,
    pub next_link: Option<String>,
}

/// A resource body already checked to be `shape`, decoded; the error names `shape`'s kind.
pub(crate) fn decode<T: DeserializeOwned>(shape: Shape, body: &Value) -> Result<T, AzureMlError> {
    T::deserialize(body).map_err(|e| AzureMlError::Unexpected {
        what: match shape {
            Shape::Deployment => "deployment",
            _ => "endpoint",
        }
        .to_string(),
        message: e.to_string(),
    })
}

/// A listed item checked against its shape; the status is that of the list page (200).
fn listed(body: &Value, shape: Shape) -> Result<(), AzureMlError> {
    shape::check(body, shape).map_err(|detail| AzureMlError::Malformed {
        status: 200,
        what: format!("{} in the list", shape.noun()),
        detail,
    })
}

/// A list page of `item`s, parsed from the body bytes in one pass.
pub(crate) fn list_page<T: DeserializeOwned>(
    resp: &ArmResponse,
    item: Shape,
) -> Result<ListPage<T>, AzureMlError> {
    match serde_json::from_slice::<Object<Page<T>>>(&resp.body) {
        Ok(Object(page)) => Ok(ListPage {
            items: page.value.into_iter().map(|Object(t)| t).collect(),
            next_link: page.next_link.filter(|l| !l.is_empty()),
        }),
        Err(_) => legacy_page(resp, item),
    }
}

/// The page read as a `Value` and checked step by step: the page's shape, each item's shape,
/// each item's fields. Only a page the typed parse refused comes here, so the cost of the tree
/// is paid for bad answers only; the error is the first problem, worded as before.
fn legacy_page<T: DeserializeOwned>(
    resp: &ArmResponse,
    item: Shape,
) -> Result<ListPage<T>, AzureMlError> {
    let page = checked(resp, Shape::Page)?;
    let mut items = Vec::new();
    for body in page["value"].as_array().into_iter().flatten() {
        listed(body, item)?;
        items.push(decode(item, body)?);
    }
    let next_link = page
        .get("nextLink")
        .and_then(Value::as_str)
        .filter(|l| !l.is_empty())
        .map(str::to_owned);
    Ok(ListPage { items, next_link })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;
    use serde_json::json;

    fn page(body: Value) -> ArmResponse {
        ArmResponse {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_string()),
        }
    }

    fn endpoints(body: Value) -> Result<ListPage<ArmEndpoint>, String> {
        list_page(&page(body), Shape::Endpoint).map_err(|e| e.to_string())
    }

    #[test]
    fn a_page_is_read_into_the_typed_items_ignoring_unknown_fields() {
        let got = endpoints(json!({
            "value": [{
                "name": "scoring",
                "location": "westus2",
                "systemData": {"createdBy": "someone"},
                "properties": {"authMode": "Key", "traffic": {"blue": 100}, "extra": [1, 2]}
            }],
            "nextLink": "https://arm/next",
            "odata.count": 1
        }))
        .unwrap();
        assert_eq!(got.items.len(), 1);
        assert_eq!(got.items[0].name, "scoring");
        assert_eq!(got.items[0].properties.0.auth_mode.as_deref(), Some("Key"));
        assert_eq!(got.next_link.as_deref(), Some("https://arm/next"));
    }

    #[test]
    fn an_empty_or_non_string_next_link_ends_the_list() {
        for link in [json!(""), json!(null), json!(7)] {
            let got = endpoints(json!({"value": [], "nextLink": link})).unwrap();
            assert_eq!(got.next_link, None, "{link}");
        }
    }

    #[test]
    fn a_bad_page_is_worded_by_the_shape_check() {
        let cases = [
            (
                json!([]),
                "not a list page object: expected a JSON object, got an array",
            ),
            (
                json!({}),
                "not a list page object: required field `value` is missing",
            ),
            (
                json!({"value": {}}),
                "`value` is an object, expected an array",
            ),
            (
                json!({"value": [1]}),
                "`value[0]` is a number, expected an object",
            ),
        ];
        for (body, want) in cases {
            let err = endpoints(body.clone()).unwrap_err();
            assert!(err.contains(want), "{body}: {err}");
        }
    }

    #[test]
    fn an_item_that_is_not_an_endpoint_object_is_refused_with_the_field_named() {
        let cases = [
            (
                json!({"name": "e"}),
                "required field `properties` is missing",
            ),
            (
                json!({"name": "e", "properties": []}),
                "`properties` is an array, expected an object",
            ),
            (
                json!({"name": "e", "properties": {"provisioningState": null}}),
                "`properties.provisioningState` is null, expected a string",
            ),
            (
                json!({"name": 3, "properties": {}}),
                "`name` is a number, expected a string",
            ),
        ];
        for (item, want) in cases {
            let err = endpoints(json!({"value": [item]})).unwrap_err();
            assert!(
                err.starts_with(
                    "ARM answered 200 with a body that is not an endpoint object in the list: "
                ),
                "{item}: {err}"
            );
            assert!(err.ends_with(want), "{item}: {err}");
        }
    }

    #[test]
    fn an_item_with_a_field_of_the_wrong_type_is_an_unexpected_endpoint() {
        let err = endpoints(json!({"value": [
            {"name": "e", "properties": {"traffic": {"blue": "all"}}}
        ]}))
        .unwrap_err();
        assert!(err.starts_with("endpoint: "), "{err}");
    }

    #[test]
    fn a_page_the_tree_reading_accepts_is_never_refused() {
        // A duplicated key is an error for a typed struct but not for a `Value` (last wins).
        let body = r#"{"value": [{"name": "a", "name": "b", "properties": {}}]}"#;
        let resp = ArmResponse {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from(body),
        };
        let got: ListPage<ArmEndpoint> = list_page(&resp, Shape::Endpoint).unwrap();
        assert_eq!(got.items[0].name, "b");
    }
}
