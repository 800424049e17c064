//! Attribute phase: reads `#[stream(...)]`, and the parts of `#[sea_orm(...)]` and
//! `#[serde(...)]` that decide stream names and how the row is serialized.
//!
//! `stream` is ours, so every mistake in it is reported, all of them at once. `sea_orm` and
//! `serde` belong to other derives that report their own mistakes: here they are read
//! leniently and anything not understood is skipped.

use proc_macro2::{Delimiter, Group, Ident, TokenStream, TokenTree};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::{Attribute, LitStr, Meta, Path};

use crate::case::RenameRule;

/// Errors collected across the whole input, reported together.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub(crate) fn into_compile_error(self) -> TokenStream {
        self.0
            .map(syn::Error::into_compile_error)
            .unwrap_or_default()
    }
}

/// What the struct's attributes say.
#[derive(Default)]
pub(crate) struct StructAttrs {
    /// `#[stream(prefix = "...")]`.
    pub(crate) prefix: Option<LitStr>,
    /// `#[stream(custom_behavior)]`.
    pub(crate) custom_behavior: bool,
    /// `#[stream(broadcasts_refreshes)]`.
    pub(crate) broadcasts_refreshes: bool,
    /// `#[stream(broadcasts_to = ...)]`, with the key for spans.
    pub(crate) broadcasts_to: Option<(Ident, BroadcastsTo)>,
    /// `#[stream(broadcasts)]`, its key for spans.
    pub(crate) broadcasts: Option<Ident>,
    /// `#[stream(template = "...")]`, with the key for spans.
    pub(crate) template: Option<(Ident, LitStr)>,
    /// `#[stream(target = "...")]`, with the key for spans.
    pub(crate) target: Option<(Ident, LitStr)>,
    /// `#[stream(inserts_by = prepend)]`, with the key for spans: whether to prepend.
    pub(crate) inserts_by: Option<(Ident, bool)>,
    /// `#[sea_orm(table_name = "...")]`.
    pub(crate) table_name: Option<LitStr>,
    /// `#[serde(rename_all = "...")]`, the serialize side.
    pub(crate) rename_all: Option<RenameRule>,
}

/// What one field's attributes say.
#[derive(Default)]
pub(crate) struct FieldAttrs {
    /// `#[stream(parent = ...)]`.
    pub(crate) parent: Option<Parent>,
    /// `#[sea_orm(primary_key)]`.
    pub(crate) primary_key: bool,
    /// `#[serde(rename = "...")]`, the serialize side.
    pub(crate) rename: Option<String>,
    /// `#[serde(skip)]` or `#[serde(skip_serializing)]`.
    pub(crate) skip_serializing: bool,
}

/// Where `broadcasts_to` sends.
pub(crate) enum BroadcastsTo {
    /// `broadcasts_to = parent`: the stream of the field marked `#[stream(parent = ...)]`.
    Parent(Ident),
    /// `broadcasts_to = "lobby"`: a stream by name.
    Named(LitStr),
    /// `broadcasts`: not written as `broadcasts_to`, but checked with it.
    Own,
}

/// `#[stream(parent = path::to::Entity)]`; `entity` is `None` when the path was malformed
/// (already reported), so that a stub can still be generated.
pub(crate) struct Parent {
    pub(crate) key: Ident,
    pub(crate) entity: Option<Path>,
}

const STRUCT_KEYS: &str = "`prefix`, `custom_behavior`, `broadcasts_refreshes`, \
     `broadcasts_to`, `broadcasts`, `template`, `target` or `inserts_by`";
const BROADCASTS_TO_EXAMPLE: &str = "expected `parent` (the field marked `#[stream(parent = ...)]`) \
     or a stream name, e.g. `#[stream(broadcasts_to = parent)]`";
const TEMPLATE_EXAMPLE: &str =
    "expected a template name, e.g. `#[stream(template = \"chat/message.html\")]`";
const TARGET_EXAMPLE: &str = "expected an element id, e.g. `#[stream(target = \"messages\")]`";
const INSERTS_BY_EXAMPLE: &str =
    "expected `append` or `prepend`, e.g. `#[stream(inserts_by = prepend)]`";
const FIELD_KEYS: &str = "`parent`";
const PARENT_EXAMPLE: &str =
    "expected a path to the parent entity, e.g. `#[stream(parent = super::room::Entity)]`";
const PREFIX_EXAMPLE: &str = "expected a string literal, e.g. `#[stream(prefix = \"rooms\")]`";

/// A key that takes no value, like `#[stream(custom_behavior)]`.
fn flag(item: &Item, errors: &mut Errors) -> bool {
    match item.value {
        Value::Flag => true,
        _ => {
            errors.spanned(
                &item.key,
                format!("`{0}` takes no value; write `#[stream({0})]`", item.key),
            );
            false
        }
    }
}

impl StructAttrs {
    pub(crate) fn from_attrs(attrs: &[Attribute], errors: &mut Errors) -> Self {
        let mut out = Self::default();
        let mut seen = Vec::new();
        for attr in attrs {
            if attr.path().is_ident("stream") {
                for item in stream_items(attr, errors) {
                    if !first_time(&mut seen, &item.key, errors) {
                        continue;
                    }
                    match item.key.to_string().as_str() {
                        "prefix" => out.prefix = prefix(&item, errors),
                        "custom_behavior" => out.custom_behavior = flag(&item, errors),
                        "broadcasts_refreshes" => out.broadcasts_refreshes = flag(&item, errors),
                        "broadcasts" => {
                            if flag(&item, errors) {
                                out.broadcasts = Some(item.key.clone());
                            }
                        }
                        "broadcasts_to" => {
                            out.broadcasts_to =
                                broadcasts_to(&item, errors).map(|to| (item.key.clone(), to));
                        }
                        "template" => {
                            out.template =
                                name_literal(&item, TEMPLATE_EXAMPLE, "template name", errors)
                                    .map(|lit| (item.key.clone(), lit));
                        }
                        "target" => {
                            out.target = name_literal(&item, TARGET_EXAMPLE, "target", errors)
                                .map(|lit| (item.key.clone(), lit));
                        }
                        "inserts_by" => {
                            out.inserts_by = inserts_by(&item, errors)
                                .map(|prepend| (item.key.clone(), prepend));
                        }
                        "parent" => errors.spanned(
                            &item.key,
                            "`parent` goes on the field that holds the parent's key, \
                             not on the struct",
                        ),
                        other => errors.spanned(
                            &item.key,
                            format!("unknown `stream` attribute `{other}`; expected {STRUCT_KEYS}"),
                        ),
                    }
                }
            } else if attr.path().is_ident("sea_orm") {
                for item in lenient_items(attr) {
                    if item.key == "table_name" {
                        out.table_name = item.value.string().or(out.table_name);
                    }
                }
            } else if attr.path().is_ident("serde") {
                for item in lenient_items(attr) {
                    if item.key == "rename_all" {
                        let rule = item
                            .value
                            .serialize_side()
                            .and_then(|rule| RenameRule::from_name(&rule.value()));
                        out.rename_all = rule.or(out.rename_all);
                    }
                }
            }
        }
        out
    }
}

impl FieldAttrs {
    pub(crate) fn from_attrs(attrs: &[Attribute], errors: &mut Errors) -> Self {
        let mut out = Self::default();
        let mut seen = Vec::new();
        for attr in attrs {
            if attr.path().is_ident("stream") {
                for item in stream_items(attr, errors) {
                    if !first_time(&mut seen, &item.key, errors) {
                        continue;
                    }
                    match item.key.to_string().as_str() {
                        "parent" => out.parent = Some(parent(item, errors)),
                        known @ ("prefix"
                        | "custom_behavior"
                        | "broadcasts_refreshes"
                        | "broadcasts_to"
                        | "broadcasts"
                        | "template"
                        | "target"
                        | "inserts_by") => errors.spanned(
                            &item.key,
                            format!("`{known}` goes on the struct, not on a field"),
                        ),
                        other => errors.spanned(
                            &item.key,
                            format!("unknown `stream` attribute `{other}`; expected {FIELD_KEYS}"),
                        ),
                    }
                }
            } else if attr.path().is_ident("sea_orm") {
                for item in lenient_items(attr) {
                    if item.key == "primary_key" && matches!(item.value, Value::Flag) {
                        out.primary_key = true;
                    }
                }
            } else if attr.path().is_ident("serde") {
                for item in lenient_items(attr) {
                    let key = item.key.to_string();
                    match (key.as_str(), &item.value) {
                        ("rename", value) => {
                            if let Some(name) = value.serialize_side() {
                                out.rename = Some(name.value());
                            }
                        }
                        ("skip" | "skip_serializing", Value::Flag) => out.skip_serializing = true,
                        _ => {}
                    }
                }
            }
        }
        out
    }
}

fn prefix(item: &Item, errors: &mut Errors) -> Option<LitStr> {
    let Value::Eq(tokens) = &item.value else {
        errors.spanned(&item.key, PREFIX_EXAMPLE);
        return None;
    };
    let Ok(lit) = syn::parse2::<LitStr>(tokens.clone()) else {
        errors.spanned(tokens, PREFIX_EXAMPLE);
        return None;
    };
    let value = lit.value();
    if value.is_empty() {
        errors.spanned(&lit, "the stream prefix cannot be empty");
        None
    } else if value.chars().any(char::is_control) {
        errors.spanned(&lit, "the stream prefix cannot contain control characters");
        None
    } else {
        Some(lit)
    }
}

/// `= "..."`: a non-empty string without control characters; `what` names it in errors.
fn name_literal(item: &Item, example: &str, what: &str, errors: &mut Errors) -> Option<LitStr> {
    let lit = match &item.value {
        Value::Eq(tokens) => match syn::parse2::<LitStr>(tokens.clone()) {
            Ok(lit) => lit,
            Err(_) => {
                errors.spanned(tokens, example);
                return None;
            }
        },
        _ => {
            errors.spanned(&item.key, example);
            return None;
        }
    };
    let value = lit.value();
    if value.is_empty() {
        errors.spanned(&lit, format!("the {what} cannot be empty"));
        None
    } else if value.chars().any(char::is_control) {
        errors.spanned(
            &lit,
            format!("the {what} cannot contain control characters"),
        );
        None
    } else {
        Some(lit)
    }
}

fn broadcasts_to(item: &Item, errors: &mut Errors) -> Option<BroadcastsTo> {
    let Value::Eq(tokens) = &item.value else {
        errors.spanned(&item.key, BROADCASTS_TO_EXAMPLE);
        return None;
    };
    if let Ok(ident) = syn::parse2::<Ident>(tokens.clone()) {
        if ident == "parent" {
            return Some(BroadcastsTo::Parent(ident));
        }
        errors.spanned(&ident, BROADCASTS_TO_EXAMPLE);
        return None;
    }
    if syn::parse2::<LitStr>(tokens.clone()).is_ok() {
        return name_literal(item, BROADCASTS_TO_EXAMPLE, "stream name", errors)
            .map(BroadcastsTo::Named);
    }
    errors.spanned(tokens, BROADCASTS_TO_EXAMPLE);
    None
}

fn inserts_by(item: &Item, errors: &mut Errors) -> Option<bool> {
    let Value::Eq(tokens) = &item.value else {
        errors.spanned(&item.key, INSERTS_BY_EXAMPLE);
        return None;
    };
    match syn::parse2::<Ident>(tokens.clone()) {
        Ok(ident) if ident == "append" => Some(false),
        Ok(ident) if ident == "prepend" => Some(true),
        _ => {
            errors.spanned(tokens, INSERTS_BY_EXAMPLE);
            None
        }
    }
}

fn parent(item: Item, errors: &mut Errors) -> Parent {
    let entity = match &item.value {
        Value::Eq(tokens) => match syn::parse2::<Path>(tokens.clone()) {
            Ok(path) => Some(path),
            Err(_) => {
                errors.spanned(tokens, PARENT_EXAMPLE);
                None
            }
        },
        Value::Flag => {
            errors.spanned(&item.key, PARENT_EXAMPLE);
            None
        }
        Value::List(group) => {
            errors.spanned(group, PARENT_EXAMPLE);
            None
        }
        Value::Other(tokens) => {
            errors.spanned(tokens, PARENT_EXAMPLE);
            None
        }
    };
    Parent {
        key: item.key,
        entity,
    }
}

/// Records `key`; reports it and returns `false` when it was seen before.
fn first_time(seen: &mut Vec<String>, key: &Ident, errors: &mut Errors) -> bool {
    let name = key.to_string();
    if seen.contains(&name) {
        errors.spanned(key, format!("duplicate `stream` attribute `{name}`"));
        false
    } else {
        seen.push(name);
        true
    }
}

/// One `key`, `key = value` or `key(...)` of an attribute's list.
struct Item {
    key: Ident,
    value: Value,
}

enum Value {
    Flag,
    Eq(TokenStream),
    List(Group),
    /// Anything else after the key, e.g. `key "x"`.
    Other(TokenStream),
}

impl Value {
    /// `= "string"`.
    fn string(&self) -> Option<LitStr> {
        match self {
            Value::Eq(tokens) => syn::parse2(tokens.clone()).ok(),
            _ => None,
        }
    }

    /// The name serde uses when serializing: `= "x"` or `(serialize = "x", ...)`.
    fn serialize_side(&self) -> Option<LitStr> {
        match self {
            Value::List(group) => split(group.stream())
                .into_iter()
                .filter_map(Result::ok)
                .find(|item| item.key == "serialize")
                .and_then(|item| item.value.string()),
            other => other.string(),
        }
    }
}

/// The items of `#[stream(...)]`; reports every malformed one.
fn stream_items(attr: &Attribute, errors: &mut Errors) -> Vec<Item> {
    let Meta::List(list) = &attr.meta else {
        errors.spanned(
            attr,
            format!(
                "expected `#[stream(...)]` with {STRUCT_KEYS} on the struct, \
                 or {FIELD_KEYS} on a field"
            ),
        );
        return Vec::new();
    };
    split(list.tokens.clone())
        .into_iter()
        .filter_map(|item| item.map_err(|error| errors.push(error)).ok())
        .collect()
}

/// The items of another derive's attribute, skipping what does not parse.
fn lenient_items(attr: &Attribute) -> Vec<Item> {
    match &attr.meta {
        Meta::List(list) => split(list.tokens.clone())
            .into_iter()
            .filter_map(Result::ok)
            .collect(),
        _ => Vec::new(),
    }
}

/// Splits an attribute's tokens at top-level commas into items. Splitting at the token
/// level, rather than parsing each value as an expression, keeps one malformed value from
/// hiding the errors in the items after it.
fn split(tokens: TokenStream) -> Vec<syn::Result<Item>> {
    let mut items = Vec::new();
    let mut segment = Vec::new();
    for token in tokens {
        match &token {
            TokenTree::Punct(punct) if punct.as_char() == ',' => {
                if !segment.is_empty() {
                    items.push(item(std::mem::take(&mut segment)));
                }
            }
            _ => segment.push(token),
        }
    }
    if !segment.is_empty() {
        items.push(item(segment));
    }
    items
}

fn item(segment: Vec<TokenTree>) -> syn::Result<Item> {
    let mut tokens = segment.into_iter();
    let key = match tokens.next() {
        Some(TokenTree::Ident(key)) => key.unraw(),
        other => {
            return Err(syn::Error::new_spanned(
                other.into_iter().chain(tokens).collect::<TokenStream>(),
                "expected an attribute name, like `name` or `name = value`",
            ));
        }
    };
    let rest: Vec<TokenTree> = tokens.collect();
    let value = match rest.as_slice() {
        [] => Value::Flag,
        [TokenTree::Punct(eq), value @ ..] if eq.as_char() == '=' && !value.is_empty() => {
            Value::Eq(value.iter().cloned().collect())
        }
        [TokenTree::Group(group)] if group.delimiter() == Delimiter::Parenthesis => {
            Value::List(group.clone())
        }
        _ => Value::Other(rest.into_iter().collect()),
    };
    Ok(Item { key, value })
}
