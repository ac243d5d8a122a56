//! A FHIR Bundle's entries, indexed so references (`urn:uuid:`, `Type/id`, absolute
//! URLs, `#contained`) resolve to the resource they point at.

use serde_json::Value;

use super::json::Node;
use crate::error::Result;

pub struct BundleIndex<'a> {
    entries: Vec<(Option<&'a str>, Node<'a>)>,
}

impl<'a> BundleIndex<'a> {
    pub fn new(bundle: &Node<'a>) -> Result<Self> {
        let mut entries = Vec::new();
        for entry in bundle.items("entry")? {
            let full_url = entry.str("fullUrl")?;
            let resource = entry.req("resource")?;
            if resource.resource_type().is_none() {
                return Err(resource.err("has no resourceType"));
            }
            entries.push((full_url, resource));
        }
        Ok(BundleIndex { entries })
    }

    pub fn resources(&self) -> impl Iterator<Item = &Node<'a>> {
        self.entries.iter().map(|(_, r)| r)
    }

    pub fn of_type(&self, resource_type: &str) -> Vec<&Node<'a>> {
        self.resources()
            .filter(|r| r.resource_type() == Some(resource_type))
            .collect()
    }

    pub fn first(&self) -> Option<&Node<'a>> {
        self.entries.first().map(|(_, r)| r)
    }

    fn by_type_and_id(&self, rtype: &str, id: &str) -> Option<&Node<'a>> {
        self.entries.iter().map(|(_, r)| r).find(|r| {
            r.resource_type() == Some(rtype)
                && r.value.get("id").and_then(Value::as_str) == Some(id)
        })
    }

    /// Resolves the Reference at `reference` (a FHIR Reference object) made from `container`.
    /// Ok(None) when the Reference carries no `reference` (a logical, identifier-only
    /// reference); an error naming the path when it points at nothing in the Bundle.
    pub fn resolve(&self, container: &Node<'a>, reference: &Node<'a>) -> Result<Option<Node<'a>>> {
        let Some(target) = reference.str("reference")? else {
            return Ok(None);
        };
        let found = if let Some(local) = target.strip_prefix('#') {
            container
                .items("contained")?
                .into_iter()
                .find(|c| c.value.get("id").and_then(Value::as_str) == Some(local))
        } else if let Some((_, r)) = self.entries.iter().find(|(u, _)| *u == Some(target)) {
            Some(r.clone())
        } else {
            // Relative `Type/id`, or the tail of an absolute URL: .../Type/id[/_history/n]
            let trimmed = match target.find("/_history/") {
                Some(i) => &target[..i],
                None => target,
            };
            let mut parts = trimmed.rsplit('/');
            match (parts.next(), parts.next()) {
                (Some(id), Some(rtype)) if !id.is_empty() => self
                    .entries
                    .iter()
                    .find(|(u, _)| u.is_some_and(|u| u.ends_with(&format!("/{rtype}/{id}"))))
                    .map(|(_, r)| r)
                    .or_else(|| self.by_type_and_id(rtype, id))
                    .cloned(),
                _ => None,
            }
        };
        match found {
            Some(node) => Ok(Some(node)),
            None => Err(reference
                .get("reference")
                .unwrap_or_else(|| reference.clone())
                .err("reference does not resolve to an entry in the Bundle")),
        }
    }

    /// Resolves a reference that must point at a resource of one of `types`.
    pub fn resolve_typed(
        &self,
        container: &Node<'a>,
        reference: &Node<'a>,
        types: &[&str],
    ) -> Result<Option<Node<'a>>> {
        match self.resolve(container, reference)? {
            Some(node) if node.resource_type().is_some_and(|t| types.contains(&t)) => {
                Ok(Some(node))
            }
            Some(node) => Err(reference.err(format!(
                "must reference a {}, found {}",
                types.join(" or "),
                node.resource_type().unwrap_or("resource without a type")
            ))),
            None => Ok(None),
        }
    }
}
