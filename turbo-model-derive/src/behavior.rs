//! `#[turbo_model::active_model_behavior]`: adds turbo-model's glue to an entity's own
//! `impl ActiveModelBehavior for ActiveModel`.
//!
//! The user's `after_save`, `before_delete` and `after_delete` keep their signatures; each
//! body runs first, inside an `async move` block, so that its `return` and `?` behave as
//! they did, and its result is then handed to the glue. Missing methods get the glue
//! alone. `new`, `before_save` and anything else are left as written.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote};
use syn::{FnArg, ImplItem, ImplItemFn, Item, ItemImpl, ReturnType, parse_quote};

use crate::expand::{Glue, glue};

const USAGE: &str = "`#[turbo_model::active_model_behavior]` goes on \
                     `impl ActiveModelBehavior for ActiveModel { ... }`";

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    if !args.is_empty() {
        return Err(syn::Error::new_spanned(
            args,
            "`#[turbo_model::active_model_behavior]` takes no arguments",
        ));
    }
    let mut imp = match syn::parse2::<Item>(item)? {
        Item::Impl(imp) => imp,
        other => return Err(syn::Error::new_spanned(other, USAGE)),
    };
    check_trait(&imp)?;

    let entity = quote!(<Self as ::turbo_model::__private::sea_orm::ActiveModelTrait>::Entity);
    let model = quote!(<#entity as ::turbo_model::__private::sea_orm::EntityTrait>::Model);
    let Glue {
        after_save,
        before_delete,
        after_delete,
    } = glue(&entity, &model);
    let mut missing = vec![
        ("after_save", after_save),
        ("before_delete", before_delete),
        ("after_delete", after_delete),
    ];

    let mut errors: Option<syn::Error> = None;
    for item in &mut imp.items {
        let ImplItem::Fn(method) = item else { continue };
        let name = method.sig.ident.to_string();
        let Some(at) = missing.iter().position(|(hook, _)| *hook == name) else {
            continue;
        };
        missing.remove(at);
        if let Err(error) = wrap(method, &name, &entity) {
            match &mut errors {
                Some(first) => first.combine(error),
                None => errors = Some(error),
            }
        }
    }
    if let Some(errors) = errors {
        return Err(errors);
    }
    for (_, method) in missing {
        imp.items.push(ImplItem::Verbatim(method));
    }

    // The trait is declared with `async_trait`; its impls must use it too. Users who
    // already wrote `#[async_trait]` below this attribute keep theirs.
    let has_async_trait = imp.attrs.iter().any(|attr| {
        attr.path()
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "async_trait")
    });
    if !has_async_trait {
        imp.attrs.insert(
            0,
            parse_quote!(#[::turbo_model::__private::sea_orm::prelude::async_trait::async_trait]),
        );
    }
    let installed = installed_marker(&imp);
    let mut tokens = imp.into_token_stream();
    tokens.extend(installed);
    Ok(tokens)
}

/// Marks the impl's `ActiveModel` as running turbo-model's hooks (see the derive's
/// `custom_behavior` check).
pub(crate) fn installed_marker(imp: &ItemImpl) -> TokenStream {
    let self_ty = &imp.self_ty;
    quote! {
        #[automatically_derived]
        impl ::turbo_model::__private::BehaviorInstalled for #self_ty {}
    }
}

pub(crate) fn check_trait(imp: &ItemImpl) -> syn::Result<()> {
    let Some((bang, path, _)) = &imp.trait_ else {
        return Err(syn::Error::new_spanned(
            &imp.self_ty,
            format!("expected a trait impl; {USAGE}"),
        ));
    };
    let is_behavior = path
        .segments
        .last()
        .is_some_and(|segment| segment.ident == "ActiveModelBehavior");
    if bang.is_some() || !is_behavior {
        return Err(syn::Error::new_spanned(
            path,
            format!("expected an impl of `ActiveModelBehavior`; {USAGE}"),
        ));
    }
    Ok(())
}

/// Runs the user's body of `name`, then the glue with its result. The parameters are
/// renamed to the macro's own (hygienic) names and re-bound to the user's patterns inside
/// the body, so that a `_` pattern or a name the user chose does not matter.
fn wrap(method: &mut ImplItemFn, name: &str, entity: &TokenStream) -> syn::Result<()> {
    if method.sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(
            &method.sig,
            format!(
                "expected `async fn {name}`; if `#[async_trait]` is on this impl, \
                 put `#[turbo_model::active_model_behavior]` above it"
            ),
        ));
    }
    let ReturnType::Type(_, output) = &method.sig.output else {
        // The signature does not match the trait; rustc says so more precisely.
        return Ok(());
    };
    let output = output.clone();

    let receiver = method.sig.receiver().is_some();
    let typed_count = method.sig.inputs.len() - usize::from(receiver);
    let expected = match name {
        "after_save" => (false, 3),
        _ => (true, 1),
    };
    if (receiver, typed_count) != expected {
        // The signature does not match the trait's: leave it alone, rustc reports it.
        return Ok(());
    }

    let mut rebind = Vec::new();
    let mut args = Vec::new();
    for (i, input) in method.sig.inputs.iter_mut().enumerate() {
        let FnArg::Typed(typed) = input else { continue };
        let arg = format_ident!("__turbo_model_arg{}", i, span = Span::mixed_site());
        let pattern = std::mem::replace(&mut *typed.pat, parse_quote!(#arg));
        let ty = &typed.ty;
        rebind.push(quote!(let #pattern: #ty = #arg;));
        args.push(arg);
    }
    let body = &method.block.stmts;
    let result = format_ident!("__turbo_model_result", span = Span::mixed_site());
    let user = quote! {
        let #result = ::turbo_model::__private::typed::<#output, _>(async move {
            #(#rebind)*
            #(#body)*
        })
        .await?;
    };
    let glue = match args.as_slice() {
        [_, db, insert] => quote! {
            ::turbo_model::__private::after_save::<#entity, _>(#result, #db, #insert).await
        },
        [db] if name == "before_delete" => quote! {
            ::turbo_model::__private::before_delete(#result, #db).await
        },
        [db] => quote! {
            ::turbo_model::__private::after_delete(#result, #db).await
        },
        _ => unreachable!("the parameter count was checked above"),
    };
    method.block = parse_quote!({ #user #glue });
    Ok(())
}
