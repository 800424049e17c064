//! Validation phase: turns the parsed input and its attributes into the [`Model`] that
//! code generation needs, reporting what cannot work.
//!
//! Every check records its error and carries on with a best guess, so that the generated
//! code is still a complete stub: one mistake gives one error, not a cascade of
//! "method not found" in the user's hooks.

use syn::ext::IdentExt;
use syn::{GenericArgument, Ident, LitStr, Path, PathArguments, Type};

use crate::ast::{Field, Input};
use crate::attr::{BroadcastsTo, Errors, FieldAttrs, StructAttrs};

/// Everything code generation needs to know about the `Model`.
pub(crate) struct Model<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) prefix: Prefix,
    pub(crate) custom_behavior: bool,
    pub(crate) broadcasts_refreshes: bool,
    /// `broadcasts_to` or `broadcasts`, when declared (and complete).
    pub(crate) declared: Option<Declared>,
    /// The primary key fields, in declaration order (SeaORM's key order).
    pub(crate) keys: Vec<&'a Field<'a>>,
    pub(crate) parent: Option<ParentField<'a>>,
    /// The serialized field names; `None` when a key field is never serialized, so the
    /// `turbo_subscribe` tag could not find the row's stream from its data.
    pub(crate) names: Option<Names>,
}

/// Declarative broadcasts.
pub(crate) struct Declared {
    pub(crate) to: To,
    pub(crate) template: LitStr,
    /// `None`: the entity's stream prefix.
    pub(crate) target: Option<LitStr>,
    pub(crate) prepend: bool,
}

/// Where declarative broadcasts go.
pub(crate) enum To {
    /// The parent field's stream.
    Parent,
    /// A stream by name.
    Named(LitStr),
    /// Created rows to the entity's stream, changes to the row's own.
    Own,
}

/// Where the stream prefix comes from.
pub(crate) enum Prefix {
    /// `#[stream(prefix = "...")]`, or else `#[sea_orm(table_name = "...")]`.
    Literal(LitStr),
    /// Neither: SeaORM's `EntityName::table_name` at run time.
    TableName,
}

/// The field marked `#[stream(parent = ...)]`.
pub(crate) struct ParentField<'a> {
    pub(crate) field: &'a Field<'a>,
    /// `None` when the attribute was malformed (already reported): the stub then uses the
    /// entity's own prefix.
    pub(crate) entity: Option<Path>,
    /// Whether the field is an `Option`, so the parent stream is one too.
    pub(crate) optional: bool,
}

/// The serialized names of the key and of all fields.
pub(crate) struct Names {
    pub(crate) primary_key: Vec<String>,
    pub(crate) fields: Vec<String>,
}

pub(crate) fn check<'a>(input: &'a Input<'a>, errors: &mut Errors) -> Model<'a> {
    let attrs = StructAttrs::from_attrs(input.attrs, errors);
    let fields: Vec<(&Field<'_>, FieldAttrs)> = input
        .fields
        .iter()
        .map(|field| (field, FieldAttrs::from_attrs(field.attrs, errors)))
        .collect();

    let keys: Vec<&Field<'_>> = fields
        .iter()
        .filter(|(_, attrs)| attrs.primary_key)
        .map(|(field, _)| *field)
        .collect();
    if keys.is_empty() {
        errors.spanned(
            input.ident,
            "`ModelStream` needs a field marked `#[sea_orm(primary_key)]`",
        );
    }

    let mut parent: Option<ParentField<'_>> = None;
    for (field, attrs) in &fields {
        let Some(attr) = &attrs.parent else { continue };
        if parent.is_some() {
            errors.spanned(&attr.key, "only one field can be the parent stream");
            continue;
        }
        parent = Some(ParentField {
            field,
            entity: attr.entity.clone(),
            optional: is_option(field.ty),
        });
    }

    let names = names(&fields, &attrs);
    let declared = declared(&attrs, parent.is_some(), errors);
    let prefix = match attrs.prefix.or(attrs.table_name) {
        Some(lit) => Prefix::Literal(lit),
        None => Prefix::TableName,
    };

    Model {
        ident: input.ident,
        prefix,
        custom_behavior: attrs.custom_behavior,
        broadcasts_refreshes: attrs.broadcasts_refreshes,
        declared,
        names,
        keys,
        parent,
    }
}

/// Checks the declarative broadcast attributes together.
fn declared(attrs: &StructAttrs, has_parent: bool, errors: &mut Errors) -> Option<Declared> {
    let to = match (&attrs.broadcasts_to, &attrs.broadcasts) {
        (Some(_), Some(own)) => {
            errors.spanned(
                own,
                "`broadcasts` and `broadcasts_to` cannot go together: `broadcasts` sends to \
                 the row's own stream, `broadcasts_to` to another; choose one",
            );
            return None;
        }
        (Some((key, to)), None) => Some((key, to)),
        (None, Some(key)) => Some((key, &BroadcastsTo::Own)),
        (None, None) => None,
    };
    let Some((key, to)) = to else {
        let extras = [
            attrs.template.as_ref().map(|(key, _)| key),
            attrs.target.as_ref().map(|(key, _)| key),
            attrs.inserts_by.as_ref().map(|(key, _)| key),
        ];
        for key in extras.into_iter().flatten() {
            errors.spanned(
                key,
                format!(
                    "`{key}` describes declarative broadcasts: add `broadcasts_to = parent` \
                     or `broadcasts`"
                ),
            );
        }
        return None;
    };
    let Some((_, template)) = &attrs.template else {
        errors.spanned(
            key,
            format!(
                "`{key}` needs `template = \"...\"`, the template that renders one row, \
                 e.g. `#[stream({key}, template = \"chat/message.html\")]`"
            ),
        );
        return None;
    };
    let to = match to {
        BroadcastsTo::Parent(word) => {
            if !has_parent {
                errors.spanned(
                    word,
                    "`broadcasts_to = parent` needs the field that holds the parent's key \
                     marked `#[stream(parent = path::to::Entity)]`",
                );
                return None;
            }
            To::Parent
        }
        BroadcastsTo::Named(name) => To::Named(name.clone()),
        BroadcastsTo::Own => To::Own,
    };
    Some(Declared {
        to,
        template: template.clone(),
        target: attrs.target.as_ref().map(|(_, lit)| lit.clone()),
        prepend: attrs
            .inserts_by
            .as_ref()
            .is_some_and(|(_, prepend)| *prepend),
    })
}

fn names(fields: &[(&Field<'_>, FieldAttrs)], attrs: &StructAttrs) -> Option<Names> {
    let mut names = Names {
        primary_key: Vec::new(),
        fields: Vec::new(),
    };
    for (field, field_attrs) in fields {
        if field_attrs.skip_serializing {
            if field_attrs.primary_key {
                return None;
            }
            continue;
        }
        let name = field_attrs.rename.clone().unwrap_or_else(|| {
            let rust_name = field.ident.unraw().to_string();
            match attrs.rename_all {
                Some(rule) => rule.apply(&rust_name),
                None => rust_name,
            }
        });
        if field_attrs.primary_key {
            names.primary_key.push(name.clone());
        }
        names.fields.push(name);
    }
    Some(names)
}

/// Whether `ty` is written `Option<T>`, `std::option::Option<T>` or
/// `core::option::Option<T>`. A type alias of an `Option` is not recognised: macros see
/// only syntax.
fn is_option(ty: &Type) -> bool {
    let Type::Path(path) = ty else { return false };
    if path.qself.is_some() {
        return false;
    }
    let segments: Vec<String> = path
        .path
        .segments
        .iter()
        .map(|segment| segment.ident.to_string())
        .collect();
    let spelled = match segments.as_slice() {
        [option] => option == "Option" && path.path.leading_colon.is_none(),
        [root, module, option] => {
            (root == "std" || root == "core") && module == "option" && option == "Option"
        }
        _ => false,
    };
    let Some(last) = path.path.segments.last() else {
        return false;
    };
    spelled
        && matches!(
            &last.arguments,
            PathArguments::AngleBracketed(args)
                if args.args.len() == 1
                    && matches!(args.args.first(), Some(GenericArgument::Type(_)))
        )
}

#[cfg(test)]
mod tests {
    use super::is_option;

    #[test]
    fn option_is_recognised_by_its_usual_spellings() {
        for ty in [
            "Option<i32>",
            "std::option::Option<i32>",
            "::core::option::Option<String>",
        ] {
            assert!(is_option(&syn::parse_str(ty).expect(ty)), "{ty}");
        }
        for ty in [
            "i32",
            "Vec<i32>",
            "my::Option<i32>",
            "Option",
            "<T as X>::Option<i32>",
        ] {
            assert!(!is_option(&syn::parse_str(ty).expect(ty)), "{ty}");
        }
    }
}
