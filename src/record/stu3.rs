//! FHIR STU3 resources built in element order, for GP Connect Send Document over MESH.
//! FHIR's XML form (the one ITK3 requires) is order-sensitive, so resources are
//! assembled as ordered elements and written as XML — or as JSON, which ignores order.

use serde_json::{Map, Value};

use crate::model::markup::escape;

/// An element: a primitive value, a complex element, a list, or a resource.
#[derive(Debug, Clone, PartialEq)]
pub enum El {
    Str(String),
    Bool(bool),
    /// A number, kept as written.
    Num(String),
    Obj(Vec<(String, El)>),
    List(Vec<El>),
    Resource(String, Vec<(String, El)>),
    /// Narrative XHTML (`div`), already well-formed.
    Xhtml(String),
}

/// `("name", value)` pairs as a complex element.
pub fn obj(fields: Vec<(&str, El)>) -> El {
    El::Obj(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// A resource of `kind`.
pub fn resource(kind: &str, fields: Vec<(&str, El)>) -> El {
    El::Resource(
        kind.to_string(),
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

pub fn s(v: impl Into<String>) -> El {
    El::Str(v.into())
}

impl El {
    pub fn to_json(&self) -> Value {
        match self {
            El::Str(s) | El::Xhtml(s) => Value::String(s.clone()),
            El::Bool(b) => Value::Bool(*b),
            El::Num(n) => serde_json::from_str(n).unwrap_or(Value::String(n.clone())),
            El::List(items) => Value::Array(items.iter().map(El::to_json).collect()),
            El::Obj(fields) => Value::Object(fields_json(fields)),
            El::Resource(kind, fields) => {
                let mut m = Map::new();
                m.insert("resourceType".into(), Value::String(kind.clone()));
                m.extend(fields_json(fields));
                Value::Object(m)
            }
        }
    }

    /// The resource as FHIR XML, with its XML declaration.
    pub fn to_xml(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        match self {
            El::Resource(kind, fields) => {
                write_resource(&mut out, kind, fields, true);
            }
            other => write_element(&mut out, "value", other),
        }
        out
    }
}

fn fields_json(fields: &[(String, El)]) -> Map<String, Value> {
    fields
        .iter()
        .map(|(k, v)| (k.clone(), v.to_json()))
        .collect()
}

fn write_resource(out: &mut String, kind: &str, fields: &[(String, El)], root: bool) {
    out.push('<');
    out.push_str(kind);
    if root {
        out.push_str(" xmlns=\"http://hl7.org/fhir\"");
    }
    out.push('>');
    for (k, v) in fields {
        write_element(out, k, v);
    }
    out.push_str("</");
    out.push_str(kind);
    out.push('>');
}

fn write_element(out: &mut String, name: &str, el: &El) {
    match el {
        El::Str(v) | El::Num(v) => {
            out.push_str(&format!("<{name} value=\"{}\"/>", escape(v)));
        }
        El::Bool(b) => out.push_str(&format!("<{name} value=\"{b}\"/>")),
        El::Xhtml(div) => out.push_str(div),
        El::List(items) => items.iter().for_each(|i| write_element(out, name, i)),
        El::Resource(kind, fields) => {
            out.push_str(&format!("<{name}>"));
            write_resource(out, kind, fields, false);
            out.push_str(&format!("</{name}>"));
        }
        El::Obj(fields) => {
            out.push('<');
            out.push_str(name);
            // Extension urls and element ids are attributes in XML.
            for (k, v) in fields {
                if ((k == "url" && name.ends_with("xtension")) || k == "id")
                    && let El::Str(v) = v
                {
                    out.push_str(&format!(" {k}=\"{}\"", escape(v)));
                }
            }
            out.push('>');
            for (k, v) in fields {
                if (k == "url" && name.ends_with("xtension")) || k == "id" {
                    continue;
                }
                write_element(out, k, v);
            }
            out.push_str(&format!("</{name}>"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_keeps_order_attributes_and_escapes() {
        let r = resource(
            "Patient",
            vec![
                ("id", s("p1")),
                (
                    "extension",
                    El::List(vec![obj(vec![
                        ("url", s("https://x/ext")),
                        ("valueBoolean", El::Bool(true)),
                    ])]),
                ),
                (
                    "name",
                    El::List(vec![obj(vec![
                        ("family", s("O'Neil & <Co>")),
                        ("given", El::List(vec![s("A"), s("B")])),
                    ])]),
                ),
                ("birthDate", s("1970-09-11")),
            ],
        );
        let xml = r.to_xml();
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"p1\"/>\
             <extension url=\"https://x/ext\"><valueBoolean value=\"true\"/></extension>\
             <name><family value=\"O'Neil &amp; &lt;Co&gt;\"/><given value=\"A\"/><given value=\"B\"/></name>\
             <birthDate value=\"1970-09-11\"/></Patient>"
        );
        let j = r.to_json();
        assert_eq!(j["resourceType"], "Patient");
        assert_eq!(j["extension"][0]["url"], "https://x/ext");
        assert_eq!(j["name"][0]["given"][1], "B");
    }

    #[test]
    fn nested_resources_sit_inside_their_element() {
        let b = resource(
            "Bundle",
            vec![(
                "entry",
                El::List(vec![obj(vec![
                    ("fullUrl", s("urn:uuid:1")),
                    (
                        "resource",
                        resource("Binary", vec![("contentType", s("application/pdf"))]),
                    ),
                ])]),
            )],
        );
        let xml = b.to_xml();
        assert!(xml.contains("<entry><fullUrl value=\"urn:uuid:1\"/><resource><Binary><contentType value=\"application/pdf\"/></Binary></resource></entry>"), "{xml}");
    }
}
