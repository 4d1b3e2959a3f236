//! `template.yaml` read as CloudFormation reads it for one set of parameters: the short-form
//! tags (`!Ref`, `!If`, `!Sub`, …) and their `Fn::` forms, conditions, mappings and
//! `AWS::NoValue`, so that the harness serves what a deploy with those parameters would. Only the
//! intrinsic functions the template uses are known; anything else panics with its name, so a
//! template that outgrows this reader fails the tests rather than being misread.
//!
//! A reference to a resource, or an attribute of one, cannot be resolved here: it evaluates to
//! `{"Ref": "<logical id>"}` or `{"Fn::GetAtt": "<logical id>.<attribute>"}` for the reader to
//! follow, and to the logical id inside a `!Sub`.

use std::{collections::BTreeMap, path::Path};

use serde_json::{json, Map, Value};

/// The pseudo parameters, as a deploy to one account and region would see them.
const PSEUDO: [(&str, &str); 5] = [
    ("AWS::StackName", "users-api"),
    ("AWS::Region", "eu-west-1"),
    ("AWS::AccountId", "123456789012"),
    ("AWS::Partition", "aws"),
    ("AWS::URLSuffix", "amazonaws.com"),
];

pub struct Template {
    /// The whole document, tags turned into their `Fn::` forms.
    document: Value,
    /// Every parameter's value: its default, or the one given.
    parameters: BTreeMap<String, Value>,
}

/// A resource whose condition holds, its properties evaluated.
#[derive(Debug, Clone)]
pub struct Resource {
    pub logical_id: String,
    pub kind: String,
    pub properties: Value,
}

impl Template {
    /// `template.yaml` at the workspace's root, with these parameters over the defaults.
    pub fn workspace(parameters: &[(&str, &str)]) -> Self {
        Self::load(&crate::workspace().join("template.yaml"), parameters)
    }

    pub fn load(path: &Path, parameters: &[(&str, &str)]) -> Self {
        let text = std::fs::read_to_string(path).expect("read the template");
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text).expect("the template is YAML");
        let document = from_yaml(yaml);
        let declared = document["Parameters"]
            .as_object()
            .expect("the template declares parameters");
        for (name, _) in parameters {
            assert!(declared.contains_key(*name), "no parameter {name}");
        }
        let parameters = declared
            .iter()
            .map(|(name, declaration)| {
                let given = parameters.iter().find(|(given, _)| given == name);
                let text = match given {
                    Some((_, value)) => (*value).to_owned(),
                    // Without a default or a value, a deploy would be refused; here it is
                    // empty, for the parameters a test has no use for (the VPC's ids).
                    None => scalar(&declaration["Default"]).unwrap_or_default(),
                };
                let value = match declaration["Type"].as_str() {
                    Some("CommaDelimitedList") => {
                        Value::Array(text.split(',').map(|item| json!(item.trim())).collect())
                    }
                    Some(kind) if kind.starts_with("List<") => {
                        Value::Array(text.split(',').map(|item| json!(item.trim())).collect())
                    }
                    _ => Value::String(text),
                };
                (name.clone(), value)
            })
            .collect();
        Self {
            document,
            parameters,
        }
    }

    /// Whether the condition `name` holds.
    pub fn condition(&self, name: &str) -> bool {
        let condition = &self.document["Conditions"][name];
        assert!(!condition.is_null(), "no condition {name}");
        truth(&self.eval(condition).unwrap_or(Value::Null))
    }

    /// The resource `logical_id`, if the template has it and its condition holds.
    pub fn resource(&self, logical_id: &str) -> Option<Resource> {
        let resource = self.document["Resources"].get(logical_id)?;
        if let Some(condition) = resource["Condition"].as_str() {
            if !self.condition(condition) {
                return None;
            }
        }
        Some(Resource {
            logical_id: logical_id.to_owned(),
            kind: resource["Type"].as_str().unwrap_or_default().to_owned(),
            properties: self
                .eval(&resource["Properties"])
                .unwrap_or(Value::Object(Map::new())),
        })
    }

    /// Every resource of type `kind` whose condition holds.
    pub fn resources_of(&self, kind: &str) -> Vec<Resource> {
        let all = self.document["Resources"]
            .as_object()
            .expect("the template has resources");
        all.iter()
            .filter(|(_, resource)| resource["Type"] == kind)
            .filter_map(|(logical_id, _)| self.resource(logical_id))
            .collect()
    }

    /// A parameter's value (a list for a list parameter).
    pub fn parameter(&self, name: &str) -> &Value {
        self.parameters
            .get(name)
            .unwrap_or_else(|| panic!("no parameter {name}"))
    }

    /// `value` evaluated; `None` for `AWS::NoValue`.
    pub fn eval(&self, value: &Value) -> Option<Value> {
        match value {
            Value::Array(items) => Some(Value::Array(
                items.iter().filter_map(|item| self.eval(item)).collect(),
            )),
            Value::Object(map) if map.len() == 1 => {
                let (key, argument) = map.iter().next().expect("one entry");
                match intrinsic(key) {
                    Some(function) => self.call(function, argument),
                    None => Some(json!({ key: self.eval(argument)? })),
                }
            }
            Value::Object(map) => Some(Value::Object(
                map.iter()
                    .filter_map(|(key, value)| Some((key.clone(), self.eval(value)?)))
                    .collect(),
            )),
            scalar => Some(scalar.clone()),
        }
    }

    fn call(&self, function: &str, argument: &Value) -> Option<Value> {
        let args = |count: usize| -> Vec<Value> {
            let items = argument
                .as_array()
                .unwrap_or_else(|| panic!("{function} takes a list: {argument}"));
            assert_eq!(items.len(), count, "{function} takes {count} arguments");
            items.iter().map(|item| self.eval_or_null(item)).collect()
        };
        let value = match function {
            "Ref" => {
                let name = argument.as_str().expect("Ref names something");
                if name == "AWS::NoValue" {
                    return None;
                }
                self.reference(name)
            }
            "Condition" => json!(self.condition(argument.as_str().expect("a condition name"))),
            "Fn::If" => {
                let items = argument.as_array().expect("Fn::If takes a list");
                assert_eq!(items.len(), 3, "Fn::If takes 3 arguments");
                let name = items[0].as_str().expect("Fn::If names a condition");
                let chosen = if self.condition(name) { 1 } else { 2 };
                return self.eval(&items[chosen]);
            }
            "Fn::Equals" => {
                let [left, right] = <[Value; 2]>::try_from(args(2)).expect("two");
                json!(scalar(&left).is_some() && scalar(&left) == scalar(&right))
            }
            "Fn::Not" => json!(!truth(&args(1)[0])),
            "Fn::And" => json!(self.all_of(argument).iter().all(truth)),
            "Fn::Or" => json!(self.all_of(argument).iter().any(truth)),
            "Fn::Contains" => {
                let [list, item] = <[Value; 2]>::try_from(args(2)).expect("two");
                let list = list.as_array().expect("Fn::Contains takes a list first");
                json!(list
                    .iter()
                    .any(|candidate| scalar(candidate) == scalar(&item)))
            }
            "Fn::FindInMap" => {
                let [map, key, attribute] = <[Value; 3]>::try_from(args(3)).expect("three");
                let found = &self.document["Mappings"][text(&map)][text(&key)][text(&attribute)];
                assert!(!found.is_null(), "no mapping {map}/{key}/{attribute}");
                found.clone()
            }
            "Fn::Join" => {
                let [separator, items] = <[Value; 2]>::try_from(args(2)).expect("two");
                let items = items.as_array().cloned().unwrap_or_default();
                let items: Vec<String> = items.iter().map(text).collect();
                json!(items.join(&text(&separator)))
            }
            "Fn::Split" => {
                let [separator, whole] = <[Value; 2]>::try_from(args(2)).expect("two");
                let whole = text(&whole);
                json!(whole.split(&text(&separator)).collect::<Vec<_>>())
            }
            "Fn::Select" => {
                let [index, items] = <[Value; 2]>::try_from(args(2)).expect("two");
                let index: usize = text(&index).parse().expect("Fn::Select takes an index");
                items[index].clone()
            }
            "Fn::Sub" => json!(self.substitute(argument)),
            "Fn::GetAtt" => {
                let path = match argument {
                    Value::Array(parts) => parts.iter().map(text).collect::<Vec<_>>().join("."),
                    other => text(other),
                };
                json!({ "Fn::GetAtt": path })
            }
            other => panic!("the template reader does not know {other}"),
        };
        Some(value)
    }

    fn eval_or_null(&self, value: &Value) -> Value {
        self.eval(value).unwrap_or(Value::Null)
    }

    fn all_of(&self, argument: &Value) -> Vec<Value> {
        let items = argument.as_array().expect("a list of conditions");
        items.iter().map(|item| self.eval_or_null(item)).collect()
    }

    /// `Ref name`: a parameter's value, a pseudo parameter, or a resource's reference.
    fn reference(&self, name: &str) -> Value {
        if let Some(value) = self.parameters.get(name) {
            return value.clone();
        }
        if let Some((_, value)) = PSEUDO.iter().find(|(pseudo, _)| *pseudo == name) {
            return json!(value);
        }
        let logical_id = name.split('.').next().unwrap_or(name);
        assert!(
            !self.document["Resources"][logical_id].is_null(),
            "Ref to nothing: {name}"
        );
        json!({ "Ref": name })
    }

    /// `Fn::Sub`: `${Parameter}`, `${AWS::…}`, `${Variable}` from its map, and a resource's
    /// logical id for `${Resource}` or `${Resource.Attribute}`.
    fn substitute(&self, argument: &Value) -> String {
        let (pattern, variables) = match argument {
            Value::Array(items) => (
                text(&items[0]),
                self.eval_or_null(&items[1])
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
            other => (text(other), Map::new()),
        };
        let mut out = String::new();
        let mut rest = pattern.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').expect("a closed ${…}") + start;
            let name = &rest[start + 2..end];
            let value = match variables.get(name) {
                Some(value) => text(value),
                None => match self.reference(name) {
                    Value::Object(_) => name.split('.').next().unwrap_or(name).to_owned(),
                    value => text(&value),
                },
            };
            out.push_str(&value);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// The `Fn::` name of a key that is an intrinsic function.
fn intrinsic(key: &str) -> Option<&str> {
    (key == "Ref" || key == "Condition" || key.starts_with("Fn::")).then_some(key)
}

/// A scalar as CloudFormation compares it: as text.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn text(value: &Value) -> String {
    scalar(value).unwrap_or_else(|| panic!("not a scalar: {value}"))
}

fn truth(value: &Value) -> bool {
    match value {
        Value::Bool(flag) => *flag,
        Value::String(text) => text == "true",
        _ => false,
    }
}

/// YAML to JSON, each short-form tag (`!Ref X`) turned into its long form (`{"Ref": "X"}`,
/// `{"Fn::If": […]}`); `!GetAtt A.B` keeps its dotted form.
fn from_yaml(yaml: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Yaml;
    match yaml {
        Yaml::Null => Value::Null,
        Yaml::Bool(flag) => Value::Bool(flag),
        Yaml::Number(number) => serde_json::to_value(number).unwrap_or(Value::Null),
        Yaml::String(text) => Value::String(text),
        Yaml::Sequence(items) => Value::Array(items.into_iter().map(from_yaml).collect()),
        Yaml::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    let key = match from_yaml(key) {
                        Value::String(key) => key,
                        other => other.to_string(),
                    };
                    (key, from_yaml(value))
                })
                .collect(),
        ),
        Yaml::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let key = match name {
                "Ref" | "Condition" => name.to_owned(),
                other => format!("Fn::{other}"),
            };
            json!({ key: from_yaml(tagged.value) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_mappings_and_novalue_evaluate_as_cloudformation_does() {
        let template =
            Template::workspace(&[("CorsAllowedOrigins", "https://a.test,https://b.test")]);

        assert!(template.condition("HasCors"));
        assert_eq!(
            template.parameter("CorsAllowedOrigins"),
            &json!(["https://a.test", "https://b.test"])
        );
        let api = template.resource("Api").expect("the API");
        assert_eq!(api.properties["Name"], "users-api-api");
        assert_eq!(
            api.properties["CorsConfiguration"]["AllowOrigins"],
            json!(["https://a.test", "https://b.test"])
        );
        let without = Template::workspace(&[]);
        assert!(!without.condition("HasCors"));
        let api = without.resource("Api").expect("the API");
        assert!(api.properties.get("CorsConfiguration").is_none());
    }
}
