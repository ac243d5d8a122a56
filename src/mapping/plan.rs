//! A compiled fast path for the FHIRPath that mappings use most: member paths,
//! `where(path = 'literal')`, `first()`, `[n]`, `exists()`, unions, `%constants` and
//! string literals. It walks the input by reference (no copying of the document), where the
//! general evaluator copies sub-trees at every step. Expressions outside this subset
//! keep using the general evaluator; `tests` check both give the same results.

use std::borrow::Cow;
use std::collections::BTreeMap;

use rh_fhirpath::{EqualityOperator, Expression, Invocation, Literal, Term};
use serde_json::Value;

#[derive(Debug, Clone)]
pub enum Plan {
    Path(Vec<Step>),
    Constant(String),
    Text(String),
    Union(Box<Plan>, Box<Plan>),
    /// `path.exists()`: true when the path finds anything.
    Exists(Box<Plan>),
}

#[derive(Debug, Clone)]
pub enum Step {
    Member(String),
    First,
    /// `[n]`: the n-th item (0-based) of the collection so far.
    Index(usize),
    /// Keep items whose relative path gives exactly one value equal to the literal.
    WhereEq(Vec<Step>, Value),
}

impl Plan {
    /// The plan for `e`, or None when `e` needs the general evaluator.
    pub fn compile(e: &Expression) -> Option<Plan> {
        match e {
            Expression::Term(Term::Literal(Literal::String(s))) => Some(Plan::Text(s.clone())),
            Expression::Term(Term::ExternalConstant(name)) => Some(Plan::Constant(name.clone())),
            Expression::Term(Term::Parenthesized(inner)) => Plan::compile(inner),
            Expression::Union { left, right } => Some(Plan::Union(
                Box::new(Plan::compile(left)?),
                Box::new(Plan::compile(right)?),
            )),
            Expression::Invocation {
                left,
                invocation: Invocation::Function { name, parameters },
            } if name == "exists" && parameters.is_empty() => {
                Some(Plan::Exists(Box::new(Plan::Path(steps(left)?))))
            }
            _ => steps(e).map(Plan::Path),
        }
    }

    /// Evaluates, borrowing from the input wherever the result is part of it.
    pub fn eval<'v>(
        &self,
        root: &'v Value,
        constants: &BTreeMap<String, String>,
    ) -> Vec<Cow<'v, Value>> {
        let mut out = Vec::new();
        self.eval_into(root, constants, &mut out);
        out
    }

    fn eval_into<'v>(
        &self,
        root: &'v Value,
        constants: &BTreeMap<String, String>,
        out: &mut Vec<Cow<'v, Value>>,
    ) {
        match self {
            Plan::Path(steps) => out.extend(navigate(steps, root).into_iter().map(Cow::Borrowed)),
            Plan::Constant(name) => out.extend(
                constants
                    .get(name)
                    .map(|v| Cow::Owned(Value::String(v.clone()))),
            ),
            Plan::Text(s) => out.push(Cow::Owned(Value::String(s.clone()))),
            Plan::Union(a, b) => {
                // FHIRPath `|` merges and drops duplicates, keeping first-seen order.
                let mut items = Vec::new();
                a.eval_into(root, constants, &mut items);
                b.eval_into(root, constants, &mut items);
                for v in items {
                    if !out.iter().any(|o| **o == *v) {
                        out.push(v);
                    }
                }
            }
            Plan::Exists(p) => {
                let mut found = Vec::new();
                p.eval_into(root, constants, &mut found);
                out.push(Cow::Owned(Value::Bool(!found.is_empty())));
            }
        }
    }
}

/// A member path with `first()` / `where(path = 'literal')` steps, outermost last.
fn steps(e: &Expression) -> Option<Vec<Step>> {
    match e {
        Expression::Indexer { left, index } => {
            let Expression::Term(Term::Literal(Literal::Integer(n))) = index.as_ref() else {
                return None;
            };
            let mut s = steps(left)?;
            s.push(Step::Index(usize::try_from(*n).ok()?));
            Some(s)
        }
        Expression::Term(Term::Invocation(Invocation::Member(m))) => {
            Some(vec![Step::Member(m.clone())])
        }
        Expression::Invocation { left, invocation } => {
            let mut s = steps(left)?;
            s.push(match invocation {
                Invocation::Member(m) => Step::Member(m.clone()),
                Invocation::Function { name, parameters } => match (name.as_str(), &parameters[..])
                {
                    ("first", []) => Step::First,
                    ("where", [cond]) => where_eq(cond)?,
                    _ => return None,
                },
                _ => return None,
            });
            Some(s)
        }
        _ => None,
    }
}

fn where_eq(cond: &Expression) -> Option<Step> {
    let Expression::Equality {
        left,
        operator: EqualityOperator::Equal,
        right,
    } = cond
    else {
        return None;
    };
    let Expression::Term(Term::Literal(lit)) = right.as_ref() else {
        return None;
    };
    let value = match lit {
        Literal::String(s) => Value::String(s.clone()),
        Literal::Boolean(b) => Value::Bool(*b),
        _ => return None,
    };
    let path = steps(left)?;
    Some(Step::WhereEq(path, value))
}

fn navigate<'v>(steps: &[Step], start: &'v Value) -> Vec<&'v Value> {
    let mut current = vec![start];
    for step in steps {
        match step {
            Step::Member(m) => {
                let mut next = Vec::with_capacity(current.len());
                for v in current {
                    member(v, m, &mut next);
                }
                current = next;
            }
            Step::First => current.truncate(1),
            Step::Index(n) => current = current.get(*n).map(|v| vec![*v]).unwrap_or_default(),
            Step::WhereEq(path, literal) => current.retain(|item| {
                let found = navigate(path, item);
                found.len() == 1 && found[0] == literal
            }),
        }
    }
    current
}

/// Member access as FHIRPath defines it on JSON: lists flatten, nulls vanish, a
/// resource's own type name selects the resource, and `value` finds `valueQuantity`.
fn member<'v>(v: &'v Value, name: &str, out: &mut Vec<&'v Value>) {
    let Value::Object(obj) = v else { return };
    if obj.get("resourceType").and_then(Value::as_str) == Some(name) {
        out.push(v);
        return;
    }
    let found = obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| {
                k.len() > name.len()
                    && k.starts_with(name)
                    && k[name.len()..].starts_with(|c: char| c.is_ascii_uppercase())
            })
            .map(|(_, v)| v)
    });
    match found {
        Some(Value::Array(items)) => out.extend(items.iter().filter(|i| !i.is_null())),
        Some(Value::Null) | None => {}
        Some(other) => out.push(other),
    }
}
