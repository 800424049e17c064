//! Parse phase: the shape of the derive input, before any attribute is read.
//!
//! Only a struct with named fields can be a SeaORM `Model`; anything else is rejected here
//! with no stub, since there are no fields to build one from.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{Attribute, Data, DeriveInput, Fields, Ident, Type};

/// A struct with named fields: what `DeriveEntityModel` accepts as a `Model`.
pub(crate) struct Input<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) attrs: &'a [Attribute],
    pub(crate) fields: Vec<Field<'a>>,
}

/// One named field of the `Model`.
pub(crate) struct Field<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) ty: &'a Type,
    pub(crate) attrs: &'a [Attribute],
}

impl<'a> Input<'a> {
    pub(crate) fn from_syn(input: &'a DeriveInput) -> syn::Result<Self> {
        let ident = &input.ident;
        let data = match &input.data {
            Data::Struct(data) => data,
            Data::Enum(data) => return Err(not_a_struct(&data.enum_token, ident)),
            Data::Union(data) => return Err(not_a_struct(&data.union_token, ident)),
        };
        let named = match &data.fields {
            Fields::Named(named) => named,
            Fields::Unnamed(_) | Fields::Unit => {
                return Err(syn::Error::new_spanned(
                    spanning(&data.struct_token, ident),
                    "`ModelStream` needs a struct with named fields, \
                     like the `Model` of a SeaORM entity",
                ));
            }
        };
        if let Some(param) = input.generics.params.first() {
            return Err(syn::Error::new_spanned(
                &input.generics,
                format!(
                    "`ModelStream` cannot be derived on a generic struct; \
                     a SeaORM `Model` has no type or lifetime parameters, found `{}`",
                    param.to_token_stream()
                ),
            ));
        }
        let fields = named
            .named
            .iter()
            .filter_map(|field| {
                Some(Field {
                    ident: field.ident.as_ref()?,
                    ty: &field.ty,
                    attrs: &field.attrs,
                })
            })
            .collect();
        Ok(Input {
            ident,
            attrs: &input.attrs,
            fields,
        })
    }
}

fn not_a_struct(keyword: &dyn ToTokens, ident: &Ident) -> syn::Error {
    syn::Error::new_spanned(
        spanning(keyword, ident),
        "`ModelStream` can only be derived on a SeaORM entity's `Model` struct",
    )
}

/// Tokens from the item keyword to its name, so that an error underlines `enum Kind`.
fn spanning(keyword: &dyn ToTokens, ident: &Ident) -> TokenStream {
    let mut tokens = keyword.to_token_stream();
    ident.to_tokens(&mut tokens);
    tokens
}
