//! FHIRPath expressions, parsed once at load (rh-fhirpath; see
//! docs/decisions/0004-fhirpath-engine.md), evaluated per message, and read statically
//! for the paths they touch so an allow-list can be enforced before anything runs.

use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::collections::BTreeMap;

use rh_fhirpath::{
    EvaluationContext, Expression, FhirPathEvaluator, FhirPathExpression, FhirPathParser,
    FhirPathValue, Invocation, Term,
};
use serde_json::Value;

use super::plan::Plan;

thread_local! {
    // The evaluator holds its function table in non-Send closures: one per thread,
    // built once, rather than one per message.
    static EVALUATOR: FhirPathEvaluator = FhirPathEvaluator::new();
    static PARSER: RefCell<Option<FhirPathParser>> = const { RefCell::new(None) };
}

/// One compiled FHIRPath expression.
#[derive(Debug, Clone)]
pub struct Expr {
    pub source: String,
    parsed: FhirPathExpression,
    /// The by-reference fast path, when the expression is within its subset.
    plan: Option<Plan>,
}

/// The input an expression runs on, shared by all of a message's fields. The general
/// evaluator's context (a copy of the document) is built only if an expression needs it.
pub struct Input<'a> {
    root: &'a Value,
    constants: &'a BTreeMap<String, String>,
    context: OnceCell<EvaluationContext>,
}

impl<'a> Input<'a> {
    /// `constants` become `%name` in expressions (destination settings such as a
    /// Lamplight work area id).
    pub fn new(root: &'a Value, constants: &'a BTreeMap<String, String>) -> Input<'a> {
        Input {
            root,
            constants,
            context: OnceCell::new(),
        }
    }

    pub fn constants(&self) -> &BTreeMap<String, String> {
        self.constants
    }

    fn context(&self) -> &EvaluationContext {
        self.context.get_or_init(|| {
            let mut context = EvaluationContext::new(self.root.clone());
            for (k, v) in self.constants {
                context.add_constant(k.clone(), FhirPathValue::String(v.clone()));
            }
            context
        })
    }
}

impl Expr {
    pub fn parse(source: &str) -> Result<Expr, String> {
        let parsed = PARSER.with(|p| {
            p.borrow_mut()
                .get_or_insert_with(FhirPathParser::new)
                .parse(source)
                .map_err(|e| e.to_string())
        })?;
        Ok(Expr {
            source: source.to_string(),
            plan: Plan::compile(&parsed.root),
            parsed,
        })
    }

    /// Evaluates to a flat collection of JSON values (FHIRPath results are collections).
    pub fn eval(&self, input: &Input) -> Result<Vec<Value>, String> {
        Ok(self
            .eval_borrowed(input)?
            .into_iter()
            .map(Cow::into_owned)
            .collect())
    }

    /// As [`Expr::eval`], borrowing the parts of the input the result consists of (no
    /// copy of a sub-document until the caller needs one).
    pub fn eval_borrowed<'a>(&self, input: &Input<'a>) -> Result<Vec<Cow<'a, Value>>, String> {
        match &self.plan {
            Some(plan) => Ok(plan.eval(input.root, input.constants)),
            None => Ok(self
                .eval_general(input)?
                .into_iter()
                .map(Cow::Owned)
                .collect()),
        }
    }

    /// Whether the by-reference fast path evaluates it (else the general evaluator).
    pub fn is_compiled(&self) -> bool {
        self.plan.is_some()
    }

    /// Evaluation by the general (rh-fhirpath) evaluator, whatever the expression.
    pub fn eval_general(&self, input: &Input) -> Result<Vec<Value>, String> {
        let result = EVALUATOR
            .with(|e| e.evaluate(&self.parsed, input.context()))
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        flatten(result.to_json(), &mut out);
        Ok(out)
    }

    /// Dotted input paths the expression reads (`person_demographics.name.family`,
    /// `person_demographics.telecom.system` for a `where(system = ...)` filter).
    pub fn paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(p) = path_of(&self.parsed.root, &[], &mut out) {
            out.push(p);
        }
        let mut paths: Vec<String> = out
            .into_iter()
            .filter(|p| !p.is_empty())
            .map(|p| p.join("."))
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }
}

fn flatten(v: Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(items) => items.into_iter().for_each(|i| flatten(i, out)),
        Value::Null => {}
        other => out.push(other),
    }
}

/// The member path `e` denotes relative to `base`, if it is a path; every path read
/// along the way (function arguments, operands) is pushed onto `out`.
fn path_of(e: &Expression, base: &[String], out: &mut Vec<Vec<String>>) -> Option<Vec<String>> {
    let extend = |p: &[String], m: &str| {
        let mut p = p.to_vec();
        p.push(m.to_string());
        p
    };
    match e {
        Expression::Term(Term::Invocation(inv)) => invoke(inv, base, out),
        Expression::Term(Term::Parenthesized(inner)) => path_of(inner, base, out),
        Expression::Term(_) => None,
        Expression::Invocation { left, invocation } => {
            let left_path = path_of(left, base, out);
            match &left_path {
                Some(lp) => invoke(invocation, lp, out),
                None => match invocation {
                    Invocation::Member(m) => Some(extend(base, m)),
                    _ => None,
                },
            }
        }
        other => {
            for child in children(other) {
                if let Some(p) = path_of(child, base, out) {
                    out.push(p);
                }
            }
            None
        }
    }
}

/// An invocation on `target` (a path). Function arguments are evaluated per element of
/// the target, so their paths are relative to it.
fn invoke(inv: &Invocation, target: &[String], out: &mut Vec<Vec<String>>) -> Option<Vec<String>> {
    match inv {
        Invocation::Member(m) => {
            let mut p = target.to_vec();
            p.push(m.clone());
            Some(p)
        }
        Invocation::Function { parameters, .. } => {
            for a in parameters {
                if let Some(p) = path_of(a, target, out) {
                    out.push(p);
                }
            }
            Some(target.to_vec())
        }
        _ => Some(target.to_vec()),
    }
}

fn children(e: &Expression) -> Vec<&Expression> {
    match e {
        Expression::Indexer { left, index } => vec![left, index],
        Expression::Polarity { operand, .. } => vec![operand],
        Expression::Multiplicative { left, right, .. }
        | Expression::Additive { left, right, .. }
        | Expression::Union { left, right }
        | Expression::Inequality { left, right, .. }
        | Expression::Equality { left, right, .. }
        | Expression::Membership { left, right, .. }
        | Expression::And { left, right }
        | Expression::Or { left, right, .. }
        | Expression::Implies { left, right } => vec![left, right],
        Expression::Type { left, .. } => vec![left],
        Expression::Term(_) | Expression::Invocation { .. } => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Evaluates both ways and insists the fast path agrees with the general evaluator.
    fn eval(src: &str, v: Value) -> Vec<Value> {
        let e = Expr::parse(src).unwrap();
        let consts = BTreeMap::new();
        let input = Input::new(&v, &consts);
        let general = e.eval_general(&input).unwrap();
        assert_eq!(e.eval(&input).unwrap(), general, "{src}");
        general
    }

    #[test]
    fn evaluates_paths_filters_and_functions() {
        let v = json!({"p": {"name": {"given": ["Ann", "Bo"], "family": "Lee"},
            "telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "a@b"}]}});
        assert_eq!(eval("p.name.given", v.clone()), [json!("Ann"), json!("Bo")]);
        assert_eq!(eval("p.name.given.first()", v.clone()), [json!("Ann")]);
        assert_eq!(
            eval("p.telecom.where(system = 'email').value", v.clone()),
            [json!("a@b")]
        );
        assert_eq!(eval("p.missing", v), Vec::<Value>::new());
    }

    #[test]
    fn fast_path_agrees_with_the_general_evaluator_on_fhir_resources() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/uk-core");
        let read = |n: &str| -> Value {
            serde_json::from_str(&std::fs::read_to_string(dir.join(n)).unwrap()).unwrap()
        };
        let patient = read("UKCore-Patient-RichardSmith-Example.json");
        for src in [
            "Patient.name.given",
            "name.family",
            "Patient.identifier.where(system = 'https://fhir.nhs.uk/Id/nhs-number').value",
            "telecom.where(system = 'phone').value.first()",
            "address.postalCode | address.city",
            "birthDate",
            "name.where(use = 'official').given.first()",
            "Patient.missing.exists()",
            "name.exists()",
            "extension.url",
            "'fixed'",
            "(name.family)",
            "name.given[0]",
            "address.line[1]",
            "name[0].given[5]",
        ] {
            assert!(
                Expr::parse(src).unwrap().plan.is_some(),
                "{src} takes the fast path"
            );
            eval(src, patient.clone());
        }
        // Outside the subset: the general evaluator answers.
        for src in [
            "name.given.count()",
            "birthDate > @1960-01-01",
            "name.given.last()",
        ] {
            assert!(Expr::parse(src).unwrap().plan.is_none(), "{src}");
            eval(src, patient.clone());
        }
    }

    #[test]
    fn constants_are_available() {
        let mut c = BTreeMap::new();
        c.insert("work_area".to_string(), "12".to_string());
        let e = Expr::parse("%work_area").unwrap();
        let root = json!({});
        let input = Input::new(&root, &c);
        assert_eq!(e.eval(&input).unwrap(), [json!("12")]);
        assert_eq!(e.eval_general(&input).unwrap(), [json!("12")]);
    }

    #[test]
    fn paths_read_are_found() {
        let p = |s: &str| Expr::parse(s).unwrap().paths();
        assert_eq!(p("a.b.c.first()"), ["a.b.c"]);
        assert_eq!(
            p("a.telecom.where(system = 'email').value"),
            ["a.telecom.system", "a.telecom.value"]
        );
        assert_eq!(p("a.x | b.y"), ["a.x", "b.y"]);
        assert_eq!(p("(a.b).c"), ["a.b.c"]);
        assert_eq!(p("'literal'"), Vec::<String>::new());
        assert_eq!(p("a.b.exists() and c.d = 'x'"), ["a.b", "c.d"]);
    }

    #[test]
    fn bad_syntax_is_an_error() {
        assert!(Expr::parse("a.where(").is_err());
    }
}
