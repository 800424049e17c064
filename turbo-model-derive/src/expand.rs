//! Code generation for `#[derive(ModelStream)]`.
//!
//! Everything is wrapped in `const _: () = { ... };` and names the runtime by absolute
//! paths. `Entity` and `ActiveModel` are the names `DeriveEntityModel` gives the types
//! next to the `Model`, so they are resolved at the call site on purpose.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, Ident};

use crate::ast::Input;
use crate::attr::Errors;
use crate::valid::{self, Declared, Model, Names, ParentField, Prefix, To};

/// `#[derive(ModelStream)]`. Attribute mistakes come back as errors next to a complete
/// stub; only an input that is no struct with named fields is an `Err`.
pub(crate) fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    // `#[sea_orm::model]` copies the derive list onto the generated `ModelEx`; the
    // `Model` next to it already has everything.
    if input.ident == "ModelEx" {
        return Ok(TokenStream::new());
    }
    let input = Input::from_syn(input)?;
    let mut errors = Errors::default();
    let model = valid::check(&input, &mut errors);
    // The stub emitted next to attribute errors must not add errors of its own.
    let check_behavior = errors.is_empty();
    let errors = errors.into_compile_error();
    let generated = model_impls(&model, check_behavior);
    Ok(quote! {
        #errors
        const _: () = {
            #generated
        };
    })
}

fn model_impls(model: &Model<'_>, check_behavior: bool) -> TokenStream {
    let ident = model.ident;
    let entity = quote!(Entity);
    let prefix_body = match &model.prefix {
        Prefix::Literal(lit) => quote!(#lit),
        Prefix::TableName => quote! {
            <#entity as ::turbo_model::__private::sea_orm::EntityName>::table_name(&#entity)
        },
    };
    let prefix = quote!(<#entity as ::turbo_model::StreamEntity>::stream_prefix());
    let keys = model.keys.iter().map(|field| {
        let name = field.ident;
        quote_spanned!(field.ty.span()=> &self.#name)
    });
    let described = describe(model);

    let stream_doc = format!("The row's own stream, `{described}`.");
    let stream_of = stream_of(model, &prefix, &described);
    let parent_stream = model
        .parent
        .as_ref()
        .map(|parent| parent_stream(parent, &prefix));
    let behavior = if !model.custom_behavior {
        derived_behavior(ident)
    } else if check_behavior {
        installed_check()
    } else {
        TokenStream::new()
    };
    let registration = model
        .names
        .as_ref()
        .map(|names| registration(names, &model.keys));
    let refreshes = model.broadcasts_refreshes.then(|| refreshes(model));
    let declared = model
        .declared
        .as_ref()
        .map(|declared| declared_broadcasts(model, declared));
    let dom_id_doc = format!(
        "The id of the element that shows the row: `{}` (see [`turbo_model::dom_id`]).",
        described.replace([':', ','], "_")
    );

    quote! {
        #[automatically_derived]
        impl ::turbo_model::StreamEntity for #entity {
            fn stream_prefix() -> &'static str {
                #prefix_body
            }
        }

        #[automatically_derived]
        impl ::turbo_model::StreamModel for #ident {
            fn stream(&self) -> ::turbo_model::Stream {
                ::turbo_model::__private::row_stream(#prefix, &[#(#keys),*])
            }
        }

        #[automatically_derived]
        impl #ident {
            #[doc = #stream_doc]
            pub fn stream(&self) -> ::turbo_model::Stream {
                <Self as ::turbo_model::StreamModel>::stream(self)
            }

            #[doc = #dom_id_doc]
            pub fn dom_id(&self) -> ::std::string::String {
                <Self as ::turbo_model::StreamModel>::dom_id(self)
            }

            #parent_stream
        }

        #stream_of
        #behavior
        #registration
        #refreshes
        #declared
    }
}

/// `#[stream(broadcasts_to = ...)]` and `#[stream(broadcasts)]`: a hook that appends (or
/// prepends) created rows, replaces updated ones and removes deleted ones.
fn declared_broadcasts(model: &Model<'_>, declared: &Declared) -> TokenStream {
    let ident = model.ident;
    let template = &declared.template;
    let prefix = quote!(<Entity as ::turbo_model::StreamEntity>::stream_prefix());
    let target = match &declared.target {
        Some(lit) => quote!(#lit),
        None => prefix.clone(),
    };
    let prepend = declared.prepend;
    let some = |stream: TokenStream| quote!(::core::option::Option::Some(#stream));
    let (inserts, changes) = match &declared.to {
        To::Parent => {
            let parent = match &model.parent {
                Some(parent) if parent.optional => quote!(model.parent_stream()),
                _ => some(quote!(model.parent_stream())),
            };
            (parent.clone(), parent)
        }
        To::Named(name) => {
            let stream = some(quote!(::turbo_model::__private::collection_stream(#name)));
            (stream.clone(), stream)
        }
        To::Own => (
            some(quote!(::turbo_model::__private::collection_stream(#prefix))),
            some(quote!(model.stream())),
        ),
    };
    quote! {
        /// The hook behind `#[stream(broadcasts_to = ...)]` or `#[stream(broadcasts)]`.
        #[doc(hidden)]
        struct DeclaredBroadcasts;

        impl DeclaredBroadcasts {
            fn declared() -> ::turbo_model::__private::Declared {
                ::turbo_model::__private::Declared {
                    template: #template,
                    target: #target,
                    prepend: #prepend,
                    module: ::core::module_path!(),
                }
            }
        }

        impl ::turbo_model::Hook for DeclaredBroadcasts {
            type Entity = Entity;

            fn on_save(&self, model: &#ident, saved: ::turbo_model::Saved) -> ::turbo_model::Result<()> {
                Self::declared().saved(model, saved.created, #inserts, #changes)
            }

            fn on_delete(&self, model: &#ident) -> ::turbo_model::Result<()> {
                Self::declared().deleted(model, #changes)
            }
        }

        ::turbo_model::register!(DeclaredBroadcasts);
    }
}

/// `#[stream(broadcasts_refreshes)]`: a hook that sends a `refresh` (debounced) to the
/// parent's stream and, on create, to the entity's stream (the prefix alone, for pages
/// that list the rows), on update and delete to the row's own stream.
fn refreshes(model: &Model<'_>) -> TokenStream {
    let ident = model.ident;
    let parent = match &model.parent {
        Some(parent) if parent.optional => quote! {
            if let ::core::option::Option::Some(parent) = model.parent_stream() {
                parent.refresh().send()?;
            }
        },
        Some(_) => quote! { model.parent_stream().refresh().send()?; },
        None => TokenStream::new(),
    };
    quote! {
        /// The hook behind `#[stream(broadcasts_refreshes)]`.
        #[doc(hidden)]
        struct BroadcastsRefreshes;

        impl BroadcastsRefreshes {
            fn refresh(model: &#ident, created: bool) -> ::turbo_model::Result<()> {
                if created {
                    ::turbo_model::__private::collection_stream(
                        <Entity as ::turbo_model::StreamEntity>::stream_prefix(),
                    )
                    .refresh()
                    .send()?;
                } else {
                    model.stream().refresh().send()?;
                }
                #parent
                ::core::result::Result::Ok(())
            }
        }

        impl ::turbo_model::Hook for BroadcastsRefreshes {
            type Entity = Entity;

            fn on_save(&self, model: &#ident, saved: ::turbo_model::Saved) -> ::turbo_model::Result<()> {
                Self::refresh(model, saved.created)
            }

            fn on_delete(&self, model: &#ident) -> ::turbo_model::Result<()> {
                Self::refresh(model, false)
            }
        }

        ::turbo_model::register!(BroadcastsRefreshes);
    }
}

/// `prefix:key` for the docs, e.g. `message:<id>`.
fn describe(model: &Model<'_>) -> String {
    let prefix = match &model.prefix {
        Prefix::Literal(lit) => lit.value(),
        Prefix::TableName => "<table name>".to_owned(),
    };
    let keys: Vec<String> = model
        .keys
        .iter()
        .map(|field| format!("<{}>", field.ident))
        .collect();
    format!("{prefix}:{}", keys.join(","))
}

/// `Entity::stream_of(key)`: none without a key (already reported), since there is no
/// type to take.
fn stream_of(model: &Model<'_>, prefix: &TokenStream, described: &str) -> Option<TokenStream> {
    let doc = format!(
        "The stream of the row with this primary key, `{described}`, without loading the row."
    );
    let (pattern, ty, keys) = match model.keys.as_slice() {
        [] => return None,
        [key] => {
            let ty = key.ty;
            (quote!(key), quote!(#ty), vec![quote!(&key)])
        }
        keys => {
            let names: Vec<Ident> = (0..keys.len())
                .map(|i| Ident::new(&format!("key_{i}"), Span::call_site()))
                .collect();
            let types = keys.iter().map(|key| key.ty);
            (
                quote!((#(#names),*)),
                quote!((#(#types),*)),
                names.iter().map(|name| quote!(&#name)).collect(),
            )
        }
    };
    Some(quote! {
        #[automatically_derived]
        impl Entity {
            #[doc = #doc]
            pub fn stream_of(#pattern: #ty) -> ::turbo_model::Stream {
                ::turbo_model::__private::row_stream(#prefix, &[#(#keys),*])
            }
        }
    })
}

fn parent_stream(parent: &ParentField<'_>, own_prefix: &TokenStream) -> TokenStream {
    let field = parent.field.ident;
    let span = parent.field.ty.span();
    let (prefix, entity_doc) = match &parent.entity {
        Some(entity) => (
            quote!(<#entity as ::turbo_model::StreamEntity>::stream_prefix()),
            quote!(#entity).to_string().replace(' ', ""),
        ),
        None => (own_prefix.clone(), "the parent entity".to_owned()),
    };
    if parent.optional {
        let doc = format!(
            "The stream of the parent row (`{entity_doc}`) whose key is in `{field}`, \
             without a database query; `None` when `{field}` is `None`."
        );
        // Spanned so that a key type without `Display` is reported at the field.
        let key = quote_spanned!(span=> key);
        quote! {
            #[doc = #doc]
            pub fn parent_stream(&self) -> ::core::option::Option<::turbo_model::Stream> {
                ::core::option::Option::map(
                    ::core::option::Option::as_ref(&self.#field),
                    |key| ::turbo_model::__private::row_stream(#prefix, &[#key]),
                )
            }
        }
    } else {
        let doc = format!(
            "The stream of the parent row (`{entity_doc}`) whose key is in `{field}`, \
             without a database query."
        );
        let key = quote_spanned!(span=> &self.#field);
        quote! {
            #[doc = #doc]
            pub fn parent_stream(&self) -> ::turbo_model::Stream {
                ::turbo_model::__private::row_stream(#prefix, &[#key])
            }
        }
    }
}

/// The `ActiveModelBehavior` impl that runs the hooks, for an entity without its own.
/// With `custom_behavior`, fails the build unless the entity's own impl carries
/// `#[turbo_model::active_model_behavior]` (which implements the marker).
fn installed_check() -> TokenStream {
    quote! {
        const _: fn() = || {
            fn behavior_runs_turbo_model_hooks<T: ::turbo_model::__private::BehaviorInstalled>() {}
            behavior_runs_turbo_model_hooks::<ActiveModel>();
        };
    }
}

fn derived_behavior(model: &Ident) -> TokenStream {
    let Glue {
        after_save,
        before_delete,
        after_delete,
    } = glue(&quote!(Entity), &quote!(#model));
    quote! {
        #[::turbo_model::__private::sea_orm::prelude::async_trait::async_trait]
        #[automatically_derived]
        impl ::turbo_model::__private::sea_orm::ActiveModelBehavior for ActiveModel {
            #after_save
            #before_delete
            #after_delete
        }
    }
}

/// The three glue methods of `ActiveModelBehavior`, as `async fn`s for `async_trait`.
pub(crate) struct Glue {
    pub(crate) after_save: TokenStream,
    pub(crate) before_delete: TokenStream,
    pub(crate) after_delete: TokenStream,
}

pub(crate) fn glue(entity: &TokenStream, model: &TokenStream) -> Glue {
    let sea_orm = quote!(::turbo_model::__private::sea_orm);
    let result = |ok: TokenStream| quote!(::core::result::Result<#ok, #sea_orm::DbErr>);
    let model_result = result(model.clone());
    let self_result = result(quote!(Self));
    Glue {
        after_save: quote! {
            async fn after_save<C>(model: #model, db: &C, insert: bool) -> #model_result
            where
                C: #sea_orm::ConnectionTrait,
            {
                ::turbo_model::__private::after_save::<#entity, C>(model, db, insert).await
            }
        },
        before_delete: quote! {
            async fn before_delete<C>(self, db: &C) -> #self_result
            where
                C: #sea_orm::ConnectionTrait,
            {
                ::turbo_model::__private::before_delete(self, db).await
            }
        },
        after_delete: quote! {
            async fn after_delete<C>(self, db: &C) -> #self_result
            where
                C: #sea_orm::ConnectionTrait,
            {
                ::turbo_model::__private::after_delete(self, db).await
            }
        },
    }
}

/// The `EntityInfo` the `turbo_subscribe` tag uses to recognise rows in template data.
fn registration(names: &Names, keys: &[&crate::ast::Field<'_>]) -> Option<TokenStream> {
    if keys.is_empty() {
        return None;
    }
    let primary_key = &names.primary_key;
    let fields = &names.fields;
    Some(quote! {
        ::turbo_model::__private::inventory::submit! {
            ::turbo_model::__private::EntityInfo {
                prefix: <Entity as ::turbo_model::StreamEntity>::stream_prefix,
                module: ::core::module_path!(),
                primary_key: &[#(#primary_key),*],
                fields: &[#(#fields),*],
            }
        }
    })
}
